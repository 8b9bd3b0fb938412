#include "remora/policy/outlier_detector.h"

#include <algorithm>

namespace remora::policy {

OutlierDetector::OutlierDetector(OutlierDetectionOptions options, size_t endpoints)
    : options_(options), size_(endpoints), slots_(std::make_unique<Slot[]>(endpoints)) {}

bool OutlierDetector::record(size_t endpoint, Outcome outcome, TimePoint now) noexcept {
  if (endpoint >= size_) return false;
  Slot& slot = slots_[endpoint];
  const int64_t t = ns(now);
  if (slot.ejected_until.load(std::memory_order_relaxed) > t) return false;

  bool trip = false;
  switch (outcome) {
    case Outcome::kSuccess:
      reset(slot.consecutive_5xx);
      reset(slot.consecutive_gateway);
      return false;
    case Outcome::kServerError:
      reset(slot.consecutive_gateway);
      trip =
          options_.consecutive_5xx != 0 && bump(slot.consecutive_5xx) >= options_.consecutive_5xx;
      break;
    case Outcome::kGatewayFailure: {
      const uint32_t errors = bump(slot.consecutive_5xx);
      const uint32_t gateway = bump(slot.consecutive_gateway);
      trip = (options_.consecutive_5xx != 0 && errors >= options_.consecutive_5xx) ||
             (options_.consecutive_gateway_failure != 0 &&
              gateway >= options_.consecutive_gateway_failure);
      break;
    }
  }
  return trip && try_eject(slot, t);
}

bool OutlierDetector::try_eject(Slot& slot, int64_t now) noexcept {
  if (options_.base_ejection_time <= std::chrono::nanoseconds::zero()) return false;
  // Another worker is deciding: skip. The counters stay over the threshold,
  // so the endpoint's next failure asks again.
  if (deciding_.test_and_set(std::memory_order_acquire)) return false;

  bool ejected = false;
  const int64_t previous_until = slot.ejected_until.load(std::memory_order_relaxed);
  // Strictly at most max_ejection_percent: with the default 10 %, a cluster
  // of fewer than 10 endpoints never ejects (Envoy would eject one).
  if (previous_until <= now &&
      (count_ejected(now) + 1) * 100 <= uint64_t{options_.max_ejection_percent} * size_) {
    // The multiplier drops by one for each base_ejection_time the endpoint
    // stayed in since it last came back, so only one that fails again soon
    // is kept out longer and longer.
    uint32_t times = slot.times_ejected.load(std::memory_order_relaxed);
    if (previous_until != 0) {
      const int64_t healthy_periods = (now - previous_until) / options_.base_ejection_time.count();
      times = healthy_periods >= times ? 0 : times - static_cast<uint32_t>(healthy_periods);
    }
    if (times < UINT32_MAX) ++times;
    slot.times_ejected.store(times, std::memory_order_relaxed);
    slot.ejected_until.store(now + ejection_time(times).count(), std::memory_order_relaxed);
    slot.consecutive_5xx.store(0, std::memory_order_relaxed);
    slot.consecutive_gateway.store(0, std::memory_order_relaxed);
    ejected = true;
  }
  deciding_.clear(std::memory_order_release);
  return ejected;
}

std::chrono::nanoseconds OutlierDetector::ejection_time(uint32_t times) const noexcept {
  const auto base = options_.base_ejection_time;
  const auto max = std::max(options_.max_ejection_time, base);
  if (base.count() > max.count() / times) return max;
  return std::min(base * times, max);
}

size_t OutlierDetector::count_ejected(int64_t t) const noexcept {
  size_t n = 0;
  for (size_t i = 0; i < size_; ++i)
    n += slots_[i].ejected_until.load(std::memory_order_relaxed) > t;
  return n;
}

uint32_t OutlierDetector::times_ejected(size_t endpoint) const noexcept {
  return endpoint < size_ ? slots_[endpoint].times_ejected.load(std::memory_order_relaxed) : 0;
}

OutlierDetector::TimePoint OutlierDetector::ejected_until(size_t endpoint) const noexcept {
  const int64_t until =
      endpoint < size_ ? slots_[endpoint].ejected_until.load(std::memory_order_relaxed) : 0;
  return TimePoint(
      std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(until)));
}

void OutlierDetector::adopt(size_t endpoint, const OutlierDetector& from,
                            size_t from_endpoint) noexcept {
  if (endpoint >= size_ || from_endpoint >= from.size_) return;
  const Slot& source = from.slots_[from_endpoint];
  Slot& slot = slots_[endpoint];
  auto copy = [](auto& to, const auto& of) {
    to.store(of.load(std::memory_order_relaxed), std::memory_order_relaxed);
  };
  copy(slot.consecutive_5xx, source.consecutive_5xx);
  copy(slot.consecutive_gateway, source.consecutive_gateway);
  copy(slot.times_ejected, source.times_ejected);
  copy(slot.ejected_until, source.ejected_until);
}

}  // namespace remora::policy
