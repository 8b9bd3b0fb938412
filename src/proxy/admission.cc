#include "remora/proxy/admission.h"

#include <algorithm>
#include <charconv>

#include "remora/observe/metrics.h"
#include "remora/proxy/grpc.h"
#include "remora/upstream/hash_ring.h"

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
  // The breaker first: a retry it refuses must not spend the budget.
  const bool first_retry = !retry_slot;
  if (cluster.breaker && first_retry &&
      !(retry_slot = cluster.breaker->try_acquire(policy::Resource::kRetries))) {
    if (stats) stats->retry_overflow.add();
    return false;
  }
  if (target.retry_budget && !target.retry_budget->try_acquire_retry(now)) {
    if (first_retry) retry_slot.release();  // no retry after all: the slot is someone else's
    if (stats) stats->retry_budget_exhausted.add();
    return false;
  }
  if (stats) stats->retries.add();
  return true;
}

std::chrono::milliseconds retry_after_value(std::string_view value) {
  uint64_t seconds = 0;
  if (value.empty() || value.size() > 6) return {};
  for (char c : value) {
    if (c < '0' || c > '9') return {};
    seconds = seconds * 10 + static_cast<uint64_t>(c - '0');
  }
  return std::chrono::seconds(seconds);
}

std::chrono::milliseconds request_timeout(const router::Route& route,
                                          const http::HeaderList& headers) {
  auto timeout = route.timeout;
  if (const auto* grpc = headers.find("grpc-timeout"))
    if (auto t = parse_grpc_timeout(grpc->value)) timeout = std::min(timeout, *t);
  if (const auto* ms = headers.find("x-remora-timeout-ms")) {
    uint64_t value = 0;
    const auto* end = ms->value.data() + ms->value.size();
    if (auto [at, ec] = std::from_chars(ms->value.data(), end, value); ec == std::errc() && at == end)
      timeout = std::min<std::chrono::milliseconds>(timeout, std::chrono::milliseconds(value));
  }
  return timeout;
}

std::optional<uint64_t> balance_key(const upstream::ClusterSpec& cluster,
                                    const http::HeaderList& headers, std::string_view client_ip) {
  if (cluster.lb != upstream::LbPolicy::kRingHash && cluster.lb != upstream::LbPolicy::kMaglev)
    return std::nullopt;
  if (cluster.hash_key.header.empty()) return upstream::hash64(client_ip);
  if (const auto* field = headers.find(cluster.hash_key.header))
    return upstream::hash64(field->value);
  return std::nullopt;
}

}  // namespace remora::proxy
