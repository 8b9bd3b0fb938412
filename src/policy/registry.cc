#include "remora/policy/registry.h"

namespace remora::policy {

std::shared_ptr<TokenBucket> Registry::token_bucket(const std::string& key, double rate,
                                                    uint32_t burst) {
  std::lock_guard lock(mutex_);
  auto& [old_rate, old_burst, bucket] = buckets_[key];
  if (!bucket || old_rate != rate || old_burst != burst) {
    bucket = std::make_shared<TokenBucket>(rate, burst);
    old_rate = rate;
    old_burst = burst;
  }
  return bucket;
}

std::shared_ptr<CircuitBreaker> Registry::circuit_breaker(const std::string& cluster,
                                                          const CircuitBreakerLimits& limits) {
  std::lock_guard lock(mutex_);
  auto& breaker = breakers_[cluster];
  if (!breaker)
    breaker = std::make_shared<CircuitBreaker>(limits);
  else
    breaker->set_limits(limits);
  return breaker;
}

}  // namespace remora::policy
