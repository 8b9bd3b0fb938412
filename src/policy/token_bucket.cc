#include "remora/policy/token_bucket.h"

namespace remora::policy {

namespace {
// Bounds keep `next` far from overflow whatever the config says: one token
// per 10^15 ns (11.5 days) at least, a tolerance of at most ~31 years.
constexpr double kMaxIntervalNs = 1e15;
constexpr int64_t kMaxToleranceNs = int64_t{1'000'000'000} * 1'000'000'000;
}  // namespace

TokenBucket::TokenBucket(double rate_per_second, uint32_t burst) {
  if (!(rate_per_second > 0)) {  // also NaN
    interval_ = 1;
    tolerance_ = 0;  // next - t >= 1 > 0: never
    return;
  }
  const double interval = std::clamp(1e9 / rate_per_second, 1.0, kMaxIntervalNs);
  interval_ = static_cast<int64_t>(interval + 0.5);
  const int64_t tokens = std::max<int64_t>(burst, 1);
  tolerance_ = interval_ > kMaxToleranceNs / tokens ? kMaxToleranceNs : interval_ * tokens;
}

}  // namespace remora::policy
