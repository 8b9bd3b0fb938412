#pragma once
// Local rate limit shared by all workers: `rate` tokens per second with a
// bucket of `burst`. Implemented as GCRA (the generic cell rate algorithm):
// the whole state is one "theoretical arrival time", so a take is one
// compare-exchange on one atomic, exact under any interleaving, and there is
// no refill timer. Over any span of time T the bucket grants at most
// burst + rate·T tokens, even when callers' `now` values arrive out of order.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>

namespace remora::policy {

class TokenBucket {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // A rate that is not positive grants nothing; a burst below 1 counts as 1.
  TokenBucket(double rate_per_second, uint32_t burst);

  bool try_take(TimePoint now) noexcept {
    const int64_t t =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    int64_t tat = tat_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t next = std::max(tat, t) + interval_;
      if (next - t > tolerance_) return false;
      if (tat_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) return true;
    }
  }

  std::chrono::nanoseconds interval() const { return std::chrono::nanoseconds(interval_); }

 private:
  int64_t interval_;   // ns per token
  int64_t tolerance_;  // interval · burst: how far ahead of now the arrival time may run
  std::atomic<int64_t> tat_{std::numeric_limits<int64_t>::min() / 2};
};

}  // namespace remora::policy
