#include "remora/policy/retry_budget.h"

#include <algorithm>

namespace remora::policy {

RetryBudget::RetryBudget(RetryBudgetOptions options)
    : options_(options),
      buckets_count_(static_cast<uint32_t>(std::clamp<int64_t>(options.window.count(), 1, 3600))),
      buckets_(std::make_unique<Bucket[]>(buckets_count_)) {}

uint64_t RetryBudget::sum(std::atomic<uint64_t> Bucket::*counter, uint32_t second) const noexcept {
  uint64_t total = 0;
  for (uint32_t i = 0; i < buckets_count_; ++i) {
    const uint64_t v = (buckets_[i].*counter).load(std::memory_order_relaxed);
    if (static_cast<uint32_t>(second - stamp(v)) < buckets_count_) total += count(v);
  }
  return total;
}

uint64_t RetryBudget::requests_in_window(TimePoint now) const noexcept {
  return sum(&Bucket::requests, second_of(now));
}

uint64_t RetryBudget::retries_in_window(TimePoint now) const noexcept {
  return sum(&Bucket::retries, second_of(now));
}

uint64_t RetryBudget::allowed_retries(TimePoint now) const noexcept {
  return uint64_t{options_.min_retries_per_second} * buckets_count_ +
         requests_in_window(now) * options_.budget_percent / 100;
}

bool RetryBudget::try_acquire_retry(TimePoint now) noexcept {
  const uint32_t second = second_of(now);
  auto& counter = bucket(second).retries;
  uint64_t v = counter.load(std::memory_order_relaxed);
  for (;;) {
    if (newer(stamp(v), second)) return false;
    const uint64_t next = stamp(v) == second ? v + 1 : pack(second, 1);
    if (counter.compare_exchange_weak(v, next, std::memory_order_relaxed)) break;
  }
  // Our retry is in the count now: concurrent callers each see the others'
  // retries, so together they cannot overdraw (at worst they all back off).
  if (retries_in_window(now) <= allowed_retries(now)) return true;
  v = counter.load(std::memory_order_relaxed);
  while (stamp(v) == second && count(v) > 0 &&
         !counter.compare_exchange_weak(v, v - 1, std::memory_order_relaxed)) {
  }
  return false;
}

}  // namespace remora::policy
