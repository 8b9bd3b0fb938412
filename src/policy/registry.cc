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

std::shared_ptr<OutlierDetector> Registry::outlier_detector(
    const std::string& cluster, const OutlierDetectionOptions& options) {
  std::lock_guard lock(mutex_);
  auto& detector = detectors_[cluster];
  if (!detector || detector->options() != options)
    detector = std::make_shared<OutlierDetector>(options);
  return detector;
}

std::shared_ptr<RetryBudget> Registry::retry_budget(const std::string& key,
                                                    uint32_t budget_percent) {
  std::lock_guard lock(mutex_);
  auto& [percent, budget] = budgets_[key];
  if (!budget || percent != budget_percent) {
    RetryBudgetOptions options;
    options.budget_percent = budget_percent;
    budget = std::make_shared<RetryBudget>(options);
    percent = budget_percent;
  }
  return budget;
}

}  // namespace remora::policy
