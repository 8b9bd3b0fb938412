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

}  // namespace remora::proxy
