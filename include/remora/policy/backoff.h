#pragma once
// Delay before a retry: exponential backoff with "full jitter" (AWS
// Architecture Blog, "Exponential Backoff And Jitter"). Drawing the whole
// delay at random, rather than adding a little jitter to a fixed curve,
// spreads the retries of many clients that failed at the same moment, so
// they do not hit the upstream again in lockstep.
#include <chrono>
#include <cstdint>

namespace remora::policy {

struct Backoff {
  std::chrono::nanoseconds base{std::chrono::milliseconds(25)};
  std::chrono::nanoseconds max{std::chrono::milliseconds(250)};

  // min(max, base · 2^attempt), without overflow for any attempt.
  constexpr std::chrono::nanoseconds cap(unsigned attempt) const {
    using std::chrono::nanoseconds;
    if (base <= nanoseconds::zero() || max <= nanoseconds::zero()) return nanoseconds::zero();
    if (base >= max || attempt >= 63 || base.count() > (max.count() >> attempt)) return max;
    return nanoseconds(base.count() << attempt);
  }

  // `attempt` counts the retries already made (0 before the first retry);
  // `random` is any uniformly distributed 64-bit value. Uniform in
  // [0, cap(attempt)]; the modulo bias is below 2^-30 for caps under 1 s.
  constexpr std::chrono::nanoseconds delay(unsigned attempt, uint64_t random) const {
    const uint64_t limit = static_cast<uint64_t>(cap(attempt).count());
    return std::chrono::nanoseconds(static_cast<int64_t>(random % (limit + 1)));
  }
};

}  // namespace remora::policy
