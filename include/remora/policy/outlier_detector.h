#pragma once
// Passive outlier detection for one cluster: an endpoint that answers with
// too many consecutive 5xx (or gateway failures) is taken out of balancing
// for base_ejection_time × (times it was ejected), and comes back by itself
// when that time has passed. At most max_ejection_percent of the cluster is
// ejected at once, so a bad deploy that fails everywhere degrades to
// "errors" rather than "no endpoints at all".
//
// Shared by all workers rather than per worker: a worker sees only a
// fraction of the traffic, so per-worker counters would need workers ×
// threshold failures to eject, each worker would eject at a different
// moment, the percent cap would hold only per worker, and /clusters could
// not show one answer. Counters are per-endpoint atomics (one cache line
// each); an ejection decision scans the cluster under a try-flag that is
// never waited on (a caller that finds it taken skips, and the next failure
// tries again), so the cap is exact and the request path never blocks.
// Expiry is by time alone: no timer, no main-thread sweep.
//
// The per-endpoint state (OutlierState) lives with the endpoint, keyed by
// cluster and address, so it survives reloads and endpoint-set changes
// without being copied; the detector holds the options and the try-flag.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

namespace remora::policy {

enum class Outcome : uint8_t {
  kSuccess,         // any response below 500 (a 4xx is the client's fault)
  kServerError,     // 5xx other than 502/503/504
  kGatewayFailure,  // 502/503/504, and failures remora saw itself: connect
                    // failure, reset before the response, upstream timeout
};

constexpr Outcome outcome_of_status(unsigned status) {
  if (status == 502 || status == 503 || status == 504) return Outcome::kGatewayFailure;
  return status >= 500 ? Outcome::kServerError : Outcome::kSuccess;
}

struct OutlierDetectionOptions {
  uint32_t consecutive_5xx = 5;              // 0 = rule off; gateway failures count too
  uint32_t consecutive_gateway_failure = 0;  // 0 = rule off
  std::chrono::nanoseconds base_ejection_time{std::chrono::seconds(30)};
  std::chrono::nanoseconds max_ejection_time{std::chrono::seconds(300)};
  uint32_t max_ejection_percent = 10;
  bool operator==(const OutlierDetectionOptions&) const = default;
};

// One endpoint's counters, on a cache line of its own.
class alignas(64) OutlierState {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  bool is_ejected(TimePoint now) const noexcept {
    return ejected_until_.load(std::memory_order_relaxed) > ns(now);
  }
  uint32_t times_ejected() const noexcept { return times_ejected_.load(std::memory_order_relaxed); }
  // When the last ejection ends (or ended); epoch if never ejected.
  TimePoint ejected_until() const noexcept {
    return TimePoint(std::chrono::duration_cast<TimePoint::duration>(
        std::chrono::nanoseconds(ejected_until_.load(std::memory_order_relaxed))));
  }

  static int64_t ns(TimePoint t) noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }

 private:
  friend class OutlierDetector;
  std::atomic<uint32_t> consecutive_5xx_{0};
  std::atomic<uint32_t> consecutive_gateway_{0};
  std::atomic<uint32_t> times_ejected_{0};  // the multiplier; decays while healthy
  std::atomic<int64_t> ejected_until_{0};   // steady-clock ns; 0 = never ejected
};

class OutlierDetector {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit OutlierDetector(OutlierDetectionOptions options) : options_(options) {}

  // One finished attempt on `endpoint`, one of `cluster` (all of the
  // cluster's endpoints: the cap counts them). True when this outcome
  // ejected it. Outcomes arriving while it is ejected (requests that were
  // in flight) are ignored, so they cannot eject it again the moment it
  // returns.
  bool record(OutlierState& endpoint, Outcome outcome, std::span<const OutlierState* const> cluster,
              TimePoint now) noexcept;

  static size_t ejected_count(std::span<const OutlierState* const> cluster, TimePoint now) noexcept;
  // How many of `cluster_size` endpoints may be out at once: the percent,
  // but at least one (as Envoy does), so small clusters can eject too; a
  // cluster left with no usable endpoint balances over all (panic mode).
  size_t max_ejected(size_t cluster_size) const noexcept;

  const OutlierDetectionOptions& options() const { return options_; }

 private:
  static uint32_t bump(std::atomic<uint32_t>& counter) noexcept {
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  // Writes only when needed: most responses are successes, and a store to
  // a shared line on each would bounce it between cores.
  static void reset(std::atomic<uint32_t>& counter) noexcept {
    if (counter.load(std::memory_order_relaxed) != 0) counter.store(0, std::memory_order_relaxed);
  }
  bool try_eject(OutlierState& slot, std::span<const OutlierState* const> cluster,
                 int64_t now) noexcept;
  std::chrono::nanoseconds ejection_time(uint32_t times) const noexcept;

  OutlierDetectionOptions options_;
  std::atomic_flag deciding_;  // C++20: starts clear
};

}  // namespace remora::policy
