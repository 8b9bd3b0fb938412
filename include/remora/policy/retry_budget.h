#pragma once
// A cluster's retry budget, shared by all workers: retries may add at most
// `budget_percent` % of the requests seen over the last `window`, plus a
// reserve of `min_retries_per_second` × window so that a quiet service can
// still retry (Linkerd's retry budget; Envoy's retry_budget is the same
// idea). A fixed "3 attempts" alone turns an overloaded upstream into a 4×
// overloaded one; a budget bounds the extra load whatever the attempt count.
// The reserve is per window, not per second: a storm may spend it at once.
//
// Lock-free: one-second buckets in a ring, each counter one atomic packing
// (second, count). Counting a request is one fetch_add; the first caller in
// a new second reuses the bucket with one compare-exchange, so no count is
// lost to a reset. Time is passed in, so tests need no clock. Only original
// requests are recorded: a retry is not a deposit.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace remora::policy {

struct RetryBudgetOptions {
  uint32_t budget_percent = 20;
  uint32_t min_retries_per_second = 10;
  std::chrono::seconds window{10};
};

class RetryBudget {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit RetryBudget(RetryBudgetOptions options = {});

  // Once per original request (not per attempt).
  void record_request(TimePoint now) noexcept {
    const uint32_t second = second_of(now);
    auto& counter = bucket(second).requests;
    uint64_t v = counter.load(std::memory_order_relaxed);
    for (;;) {
      if (stamp(v) == second) {
        counter.fetch_add(1, std::memory_order_relaxed);
        return;
      }
      // The bucket holds a later second: this caller is a whole window late.
      if (newer(stamp(v), second)) return;
      if (counter.compare_exchange_weak(v, pack(second, 1), std::memory_order_relaxed)) return;
    }
  }

  // Takes one retry from the budget, or says no. Never grants more than the
  // budget: the retry is counted first and taken back if it overdrew.
  bool try_acquire_retry(TimePoint now) noexcept;

  uint64_t requests_in_window(TimePoint now) const noexcept;
  uint64_t retries_in_window(TimePoint now) const noexcept;
  // How many retries the window allows with the requests seen so far.
  uint64_t allowed_retries(TimePoint now) const noexcept;

  const RetryBudgetOptions& options() const { return options_; }

 private:
  struct alignas(64) Bucket {
    std::atomic<uint64_t> requests{0};  // (second << 32) | count
    std::atomic<uint64_t> retries{0};
  };

  static uint32_t second_of(TimePoint now) noexcept {
    return static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count());
  }
  static uint32_t stamp(uint64_t v) noexcept { return static_cast<uint32_t>(v >> 32); }
  static uint32_t count(uint64_t v) noexcept { return static_cast<uint32_t>(v); }
  static uint64_t pack(uint32_t second, uint32_t n) noexcept {
    return (uint64_t{second} << 32) | n;
  }
  // `a` is a later second than `b` (modulo 2^32).
  static bool newer(uint32_t a, uint32_t b) noexcept { return static_cast<int32_t>(a - b) > 0; }

  Bucket& bucket(uint32_t second) noexcept { return buckets_[second % buckets_count_]; }
  uint64_t sum(std::atomic<uint64_t> Bucket::*counter, uint32_t second) const noexcept;

  RetryBudgetOptions options_;
  uint32_t buckets_count_;
  std::unique_ptr<Bucket[]> buckets_;
};

}  // namespace remora::policy
