#pragma once
// The route's policies a request meets before it goes upstream, in DESIGN
// §1's order: the local rate limit, then fault injection (a delay, then an
// abort). The cluster's circuit breaker comes after them, where the
// exchange starts, so that a delayed request holds no breaker slot.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "remora/http/header_list.h"
#include "remora/policy/circuit_breaker.h"
#include "remora/router/route.h"
#include "remora/upstream/cluster_spec.h"

namespace remora::proxy {

struct RouteVerdict {
  bool rate_limited = false;
  std::chrono::milliseconds delay{0};  // wait this long first (fault delay)
  bool abort = false;                  // then answer the route's fault abort
};

// Counts what it decides in route.policy_stats.
RouteVerdict apply_route_policies(const router::Route& route, const http::HeaderList& headers,
                                  uint64_t random, std::chrono::steady_clock::time_point now);

// A retry the policy already allows: true when the route's budget and the
// cluster breaker's max_retries have room. Takes the breaker slot into
// `retry_slot` (once per request) and counts the retry or the refusal.
bool take_retry(const router::Route& route, const router::RouteTarget& target,
                const upstream::ClusterSpec& cluster, policy::CircuitBreaker::Guard& retry_slot,
                std::chrono::steady_clock::time_point now);

// An upstream's Retry-After, in seconds (an HTTP date is not honoured: 0).
std::chrono::milliseconds retry_after_value(std::string_view value);

// How long the request may take, retries included: the route's timeout,
// shortened (never lengthened) by the client's own deadline, `grpc-timeout`
// (gRPC) or `x-remora-timeout-ms` (any request, in milliseconds).
std::chrono::milliseconds request_timeout(const router::Route& route,
                                          const http::HeaderList& headers);

// What ring_hash and maglev balance a request by: the hash of the
// cluster's hash header (none when absent: balanced at random) or of the
// client address. None for the other balancers.
std::optional<uint64_t> balance_key(const upstream::ClusterSpec& cluster,
                                    const http::HeaderList& headers, std::string_view client_ip);

}  // namespace remora::proxy
