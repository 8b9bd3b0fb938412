#pragma once
// Policy state that all workers share and that outlives a config reload:
// a route's token bucket, a cluster's circuit breaker and outlier detector. Created on the main
// thread while a snapshot is compiled, found again by name on reload (so a
// reload neither refills a rate limit nor forgets what is in flight), read
// lock-free by the workers.
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "remora/policy/circuit_breaker.h"
#include "remora/policy/outlier_detector.h"
#include "remora/policy/retry_budget.h"
#include "remora/policy/token_bucket.h"

namespace remora::policy {

class Registry {
 public:
  // The same key and parameters give the same bucket; changed ones a new, full one.
  std::shared_ptr<TokenBucket> token_bucket(const std::string& key, double rate, uint32_t burst);
  // One breaker per cluster name for the life of the process; limits updated.
  std::shared_ptr<CircuitBreaker> circuit_breaker(const std::string& cluster,
                                                  const CircuitBreakerLimits& limits);
  // The same cluster and options give the same detector (its try-flag is
  // what makes the ejection cap exact across workers); the endpoints'
  // counters live with the endpoints, so new options lose nothing.
  std::shared_ptr<OutlierDetector> outlier_detector(const std::string& cluster,
                                                    const OutlierDetectionOptions& options);
  // The same key and percent give the same budget (its recent history kept).
  std::shared_ptr<RetryBudget> retry_budget(const std::string& key, uint32_t budget_percent);

 private:
  std::mutex mutex_;  // compile (main thread) against compile (validate): never the request path
  std::map<std::string, std::tuple<double, uint32_t, std::shared_ptr<TokenBucket>>> buckets_;
  std::map<std::string, std::shared_ptr<CircuitBreaker>> breakers_;
  std::map<std::string, std::pair<uint32_t, std::shared_ptr<RetryBudget>>> budgets_;
  std::map<std::string, std::shared_ptr<OutlierDetector>> detectors_;
};

}  // namespace remora::policy
