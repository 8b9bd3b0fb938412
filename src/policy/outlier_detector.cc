#include "remora/policy/outlier_detector.h"

#include <algorithm>

namespace remora::policy {

bool OutlierDetector::record(OutlierState& slot, Outcome outcome,
                             std::span<const OutlierState* const> cluster,
                             TimePoint now) noexcept {
  const int64_t t = OutlierState::ns(now);
  if (slot.ejected_until_.load(std::memory_order_relaxed) > t) return false;

  bool trip = false;
  switch (outcome) {
    case Outcome::kSuccess:
      reset(slot.consecutive_5xx_);
      reset(slot.consecutive_gateway_);
      return false;
    case Outcome::kServerError:
      reset(slot.consecutive_gateway_);
      trip =
          options_.consecutive_5xx != 0 && bump(slot.consecutive_5xx_) >= options_.consecutive_5xx;
      break;
    case Outcome::kGatewayFailure: {
      const uint32_t errors = bump(slot.consecutive_5xx_);
      const uint32_t gateway = bump(slot.consecutive_gateway_);
      trip = (options_.consecutive_5xx != 0 && errors >= options_.consecutive_5xx) ||
             (options_.consecutive_gateway_failure != 0 &&
              gateway >= options_.consecutive_gateway_failure);
      break;
    }
  }
  return trip && try_eject(slot, cluster, t);
}

size_t OutlierDetector::max_ejected(size_t cluster_size) const noexcept {
  return std::max<size_t>(1, cluster_size * options_.max_ejection_percent / 100);
}

bool OutlierDetector::try_eject(OutlierState& slot, std::span<const OutlierState* const> cluster,
                                int64_t now) noexcept {
  if (options_.base_ejection_time <= std::chrono::nanoseconds::zero()) return false;
  // Another worker is deciding: skip. The counters stay over the threshold,
  // so the endpoint's next failure asks again.
  if (deciding_.test_and_set(std::memory_order_acquire)) return false;

  bool ejected = false;
  const int64_t previous_until = slot.ejected_until_.load(std::memory_order_relaxed);
  const TimePoint at{std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(now))};
  if (previous_until <= now && ejected_count(cluster, at) < max_ejected(cluster.size())) {
    // The multiplier drops by one for each base_ejection_time the endpoint
    // stayed in since it last came back, so only one that fails again soon
    // is kept out longer and longer.
    uint32_t times = slot.times_ejected_.load(std::memory_order_relaxed);
    if (previous_until != 0) {
      const int64_t healthy_periods = (now - previous_until) / options_.base_ejection_time.count();
      times = healthy_periods >= times ? 0 : times - static_cast<uint32_t>(healthy_periods);
    }
    if (times < UINT32_MAX) ++times;
    slot.times_ejected_.store(times, std::memory_order_relaxed);
    slot.ejected_until_.store(now + ejection_time(times).count(), std::memory_order_relaxed);
    slot.consecutive_5xx_.store(0, std::memory_order_relaxed);
    slot.consecutive_gateway_.store(0, std::memory_order_relaxed);
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

size_t OutlierDetector::ejected_count(std::span<const OutlierState* const> cluster,
                                      TimePoint now) noexcept {
  size_t n = 0;
  for (const OutlierState* state : cluster) n += state->is_ejected(now);
  return n;
}

}  // namespace remora::policy
