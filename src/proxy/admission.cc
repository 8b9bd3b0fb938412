#include "remora/proxy/admission.h"

#include "remora/observe/metrics.h"

namespace remora::proxy {

RouteVerdict apply_route_policies(const router::Route& route, const http::HeaderList& headers,
                                  uint64_t random, std::chrono::steady_clock::time_point now) {
  RouteVerdict verdict;
  if (route.rate_limit && !route.rate_limit->try_take(now)) {
    verdict.rate_limited = true;
    if (route.policy_stats) route.policy_stats->rate_limited.add();
    return verdict;
  }
  const auto& fault = route.fault;
  if (!fault.any() || (!fault.header.empty() && !headers.find(fault.header))) return verdict;
  auto decision = fault.decide(random);
  verdict.delay = decision.delay;
  verdict.abort = decision.abort;
  if (route.policy_stats) {
    if (decision.delay.count() > 0) route.policy_stats->fault_delays.add();
    if (decision.abort) route.policy_stats->fault_aborts.add();
  }
  return verdict;
}

bool take_retry(const router::Route& route, const router::RouteTarget& target,
                const upstream::ClusterSpec& cluster, policy::CircuitBreaker::Guard& retry_slot,
                std::chrono::steady_clock::time_point now) {
  auto* stats = route.policy_stats;
  if (target.retry_budget && !target.retry_budget->try_acquire_retry(now)) {
    if (stats) stats->retry_budget_exhausted.add();
    return false;
  }
  if (cluster.breaker && !retry_slot &&
      !(retry_slot = cluster.breaker->try_acquire(policy::Resource::kRetries)))
    return false;
  if (stats) stats->retries.add();
  return true;
}

}  // namespace remora::proxy
