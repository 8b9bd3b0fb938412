#pragma once
// One compiled route: what it matches and where it sends the request.
// Built once per config snapshot; read-only on the request path.
#include <chrono>
#include <cstdint>
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"
#include "remora/policy/fault.h"
#include "remora/policy/retry.h"
#include "remora/policy/retry_budget.h"
#include "remora/policy/token_bucket.h"

namespace remora::observe {
struct RequestSeries;
struct RouteSeries;
class DurationHistogram;
}  // namespace remora::observe

namespace remora::router {

struct HeaderMatcher {
  enum class Kind { kExact, kRegex, kPresent };
  std::string name;
  Kind kind = Kind::kExact;
  std::string value;
  std::regex regex;
};

struct RouteTarget {
  size_t cluster;  // index into Snapshot::clusters
  uint32_t weight;
  observe::RequestSeries* requests = nullptr;
  // Retries of this route to this cluster, shared by all workers; null: no retry policy.
  std::shared_ptr<policy::RetryBudget> retry_budget;
};

struct Route {
  std::string name;
  // match
  std::string prefix;
  std::string path;
  std::string host;        // lower case, without a leading "*"
  bool host_wildcard = false;
  std::vector<HeaderMatcher> headers;
  // action
  std::vector<RouteTarget> targets;  // one entry for `cluster`, several for `split`
  uint32_t total_weight = 0;
  bool rewrite = false;
  std::string rewrite_prefix;
  std::chrono::milliseconds timeout{15000};
  http::HeaderMutation request_headers;
  http::HeaderMutation response_headers;
  observe::DurationHistogram* duration = nullptr;
  // policies, in DESIGN §1's order before the upstream call
  std::shared_ptr<policy::TokenBucket> rate_limit;  // shared by all workers; null: none
  policy::Fault fault;
  policy::RetryPolicy retry;
  observe::RouteSeries* policy_stats = nullptr;

  // `random` in [0, total_weight) picks a target of a split.
  const RouteTarget& pick_target(uint32_t random) const;
};

// What routing looks at in a request.
struct RouteRequest {
  std::string_view host;  // Host / :authority, port included or not
  std::string_view path;  // path and query
  const http::HeaderList& headers;
};

bool matches(const Route& route, const RouteRequest& request);

}  // namespace remora::router
