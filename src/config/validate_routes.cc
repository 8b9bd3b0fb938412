// Semantic rules for route tables and routes: references to clusters, the
// match, retry and fault policies, header mutations.
#include <algorithm>
#include <map>
#include <regex>
#include <unordered_set>

#include "checker.h"
#include "remora/config/address.h"

namespace remora::config::detail {
namespace {

constexpr unsigned kMaxAttempts = 10;

const std::vector<std::string>& retry_conditions() {
  static const std::vector<std::string> kConditions = {"5xx",
                                                       "gateway-error",
                                                       "reset",
                                                       "connect-failure",
                                                       "retriable-status-codes",
                                                       "unavailable",
                                                       "cancelled",
                                                       "deadline-exceeded",
                                                       "resource-exhausted"};
  return kConditions;
}

struct RouteContext {
  const std::vector<std::string>& clusters;  // in file order, for "did you mean"
  // The same names for lookups: every route names a cluster, and a config
  // can have thousands of both.
  const std::unordered_set<std::string_view>& cluster_names;
  Checker& check;
};

void check_cluster_reference(const std::string& name, const std::string& path, RouteContext& ctx) {
  if (!ctx.cluster_names.contains(name)) {
    ctx.check.error(path, "unknown cluster " + quoted(name) + did_you_mean(name, ctx.clusters));
  }
}

bool is_host_pattern(std::string_view host) {
  if (host.starts_with("*.")) host.remove_prefix(2);
  return is_hostname(host);
}

void check_header_matcher(const std::string& name, const v1::HeaderMatch& matcher,
                          const std::string& path, Checker& check) {
  if (!is_header_name(name)) check.error(path, "invalid header name " + quoted(name));
  int set = (matcher.exact().empty() ? 0 : 1) + (matcher.regex().empty() ? 0 : 1) +
            (matcher.present() ? 1 : 0);
  if (set != 1) {
    check.error(path, "a header matcher needs exactly one of exact, regex, present");
  }
  if (!matcher.regex().empty()) {
    try {
      std::regex compiled(matcher.regex(), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      check.error(field_path(path, "regex"),
                  "invalid regex " + quoted(matcher.regex()) + ": " + e.what());
    }
  }
}

void check_match(const v1::RouteMatch& match, const std::string& path, Checker& check) {
  if (!match.prefix().empty() && match.prefix().front() != '/') {
    check.error(field_path(path, "prefix"), "must start with \"/\", got " + quoted(match.prefix()));
  }
  if (!match.path().empty() && match.path().front() != '/') {
    check.error(field_path(path, "path"), "must start with \"/\", got " + quoted(match.path()));
  }
  if (!match.prefix().empty() && !match.path().empty()) {
    check.error(path, "set prefix or path, not both");
  }
  if (!match.host().empty() && !is_host_pattern(match.host())) {
    check.error(field_path(path, "host"), "invalid host " + quoted(match.host()) +
                                              ": expected a hostname or *.suffix, without a port");
  }
  // Sorted so that validate() without positions lists them in a stable order.
  std::map<std::string, const v1::HeaderMatch*> headers;
  for (const auto& [name, matcher] : match.headers()) headers.emplace(name, &matcher);
  for (const auto& [name, matcher] : headers) {
    check_header_matcher(name, *matcher, key_path(field_path(path, "headers"), name), check);
  }
}

void check_split(const v1::Route& route, const std::string& path, RouteContext& ctx) {
  std::uint64_t total = 0;
  for (int i = 0; i < route.split_size(); ++i) {
    const v1::WeightedCluster& entry = route.split(i);
    std::string entry_path = index_path(field_path(path, "split"), static_cast<std::size_t>(i));
    if (entry.cluster().empty()) {
      ctx.check.error(field_path(entry_path, "cluster"), "a split entry needs a cluster");
    } else {
      check_cluster_reference(entry.cluster(), field_path(entry_path, "cluster"), ctx);
    }
    if (entry.weight() == 0)
      ctx.check.error(field_path(entry_path, "weight"), "must be greater than 0");
    total += entry.weight();
  }
  if (total > UINT32_MAX) {
    ctx.check.error(field_path(path, "split"), "weights add up to more than 4294967295");
  }
}

void check_retry(const v1::RetryPolicy& retry, const std::string& path, Checker& check) {
  if (retry.attempts() > kMaxAttempts) {
    check.error(field_path(path, "attempts"), "must be at most " + std::to_string(kMaxAttempts) +
                                                  " (1 = no retry), got " +
                                                  std::to_string(retry.attempts()));
  }
  const auto& known = retry_conditions();
  bool wants_status_codes = false;
  for (int i = 0; i < retry.on_size(); ++i) {
    const std::string& condition = retry.on(i);
    if (condition == "retriable-status-codes") wants_status_codes = true;
    if (std::find(known.begin(), known.end(), condition) == known.end()) {
      check.error(index_path(field_path(path, "on"), static_cast<std::size_t>(i)),
                  "unknown retry condition " + quoted(condition) + did_you_mean(condition, known) +
                      ": expected one of " + join(known));
    }
  }
  if (wants_status_codes && retry.retriable_status_codes().empty()) {
    check.error(field_path(path, "retriable_status_codes"),
                "required when on includes retriable-status-codes");
  }
  for (int i = 0; i < retry.retriable_status_codes_size(); ++i) {
    std::uint32_t code = retry.retriable_status_codes(i);
    if (code < 100 || code > 599) {
      check.error(
          index_path(field_path(path, "retriable_status_codes"), static_cast<std::size_t>(i)),
          "must be an HTTP status from 100 to 599, got " + std::to_string(code));
    }
  }
  if (std::string why = out_of_range(retry.budget_percent(), 0, 100); !why.empty()) {
    check.error(field_path(path, "budget_percent"), why);
  }
  const v1::Backoff& backoff = retry.backoff();
  if (backoff.has_base() && backoff.has_max()) {
    auto nanos = [](const google::protobuf::Duration& d) {
      return static_cast<__int128>(d.seconds()) * 1'000'000'000 + d.nanos();
    };
    if (nanos(backoff.max()) < nanos(backoff.base())) {
      check.error(field_path(path, "backoff.max"), "must not be less than backoff.base");
    }
  }
}

void check_fault(const v1::FaultPolicy& fault, const std::string& path, Checker& check) {
  if (!fault.has_delay() && !fault.has_abort()) {
    check.error(path, "a fault needs a delay or an abort");
  }
  if (fault.has_delay()) {
    std::string delay = field_path(path, "delay");
    if (!fault.delay().has_duration()) {
      check.error(field_path(delay, "duration"), "a delay needs a duration");
    }
    if (std::string why = out_of_range(fault.delay().percent(), 0, 100); !why.empty()) {
      check.error(field_path(delay, "percent"), why);
    }
  }
  if (fault.has_abort()) {
    const v1::FaultAbort& abort = fault.abort();
    std::string abort_path = field_path(path, "abort");
    if (abort.status() == 0 && abort.grpc_status() == 0) {
      check.error(abort_path, "an abort needs a status (200..599) or a grpc_status (1..16)");
    }
    if (abort.status() != 0 && (abort.status() < 200 || abort.status() > 599)) {
      check.error(field_path(abort_path, "status"),
                  "must be between 200 and 599, got " + std::to_string(abort.status()));
    }
    if (abort.grpc_status() > 16) {
      check.error(field_path(abort_path, "grpc_status"),
                  "must be between 1 and 16, got " + std::to_string(abort.grpc_status()));
    }
    if (std::string why = out_of_range(abort.percent(), 0, 100); !why.empty()) {
      check.error(field_path(abort_path, "percent"), why);
    }
  }
  if (!fault.header().empty() && !is_header_name(fault.header())) {
    check.error(field_path(path, "header"), "invalid header name " + quoted(fault.header()));
  }
}

void check_mutation(const v1::HeaderMutation& mutation, const std::string& path, Checker& check) {
  std::map<std::string, std::string> add(mutation.add().begin(), mutation.add().end());
  for (const auto& [name, value] : add) {
    std::string entry = key_path(field_path(path, "add"), name);
    if (!is_header_name(name)) check.error(entry, "invalid header name " + quoted(name));
    if (!is_header_value(value)) {
      check.error(entry, "a header value cannot contain CR, LF or NUL");
    }
  }
  for (int i = 0; i < mutation.remove_size(); ++i) {
    if (!is_header_name(mutation.remove(i))) {
      check.error(index_path(field_path(path, "remove"), static_cast<std::size_t>(i)),
                  "invalid header name " + quoted(mutation.remove(i)));
    }
  }
}

void check_route(const v1::Route& route, const std::string& path, RouteContext& ctx) {
  Checker& check = ctx.check;
  bool has_cluster = !route.cluster().empty();
  bool has_split = !route.split().empty();
  if (has_cluster && has_split) {
    check.error(path, "a route has either cluster or split, not both");
  } else if (!has_cluster && !has_split) {
    check.error(path, "a route needs a cluster or a split");
  }
  if (has_cluster) check_cluster_reference(route.cluster(), field_path(path, "cluster"), ctx);
  check_split(route, path, ctx);
  if (route.has_match()) check_match(route.match(), field_path(path, "match"), check);
  if (!route.rewrite_prefix().empty() && route.rewrite_prefix().front() != '/') {
    check.error(field_path(path, "rewrite_prefix"),
                "must start with \"/\", got " + quoted(route.rewrite_prefix()));
  }
  if (route.has_retry()) check_retry(route.retry(), field_path(path, "retry"), check);
  if (route.has_fault()) check_fault(route.fault(), field_path(path, "fault"), check);
  check_mutation(route.request_headers(), field_path(path, "request_headers"), check);
  check_mutation(route.response_headers(), field_path(path, "response_headers"), check);
  if (route.has_rate_limit() && !(route.rate_limit().rate() > 0)) {
    check.error(field_path(path, "rate_limit.rate"),
                "must be greater than 0 (requests per second), got " +
                    format_number(route.rate_limit().rate()));
  }
}

}  // namespace

void check_route_tables(const v1::Config& config, Checker& check) {
  check_unique_names(config.route_tables(), "route_tables", "route table", check);
  std::vector<std::string> clusters;
  for (const auto& cluster : config.clusters()) clusters.push_back(cluster.name());
  std::unordered_set<std::string_view> cluster_names(clusters.begin(), clusters.end());
  RouteContext ctx{clusters, cluster_names, check};

  for (int t = 0; t < config.route_tables_size(); ++t) {
    const v1::RouteTable& table = config.route_tables(t);
    std::string table_path = index_path("route_tables", static_cast<std::size_t>(t));
    std::string routes_path = field_path(table_path, "routes");
    // Route names label metrics; two routes with one name would share them.
    std::unordered_map<std::string, int> names;
    for (int r = 0; r < table.routes_size(); ++r) {
      const v1::Route& route = table.routes(r);
      std::string path = index_path(routes_path, static_cast<std::size_t>(r));
      if (!route.name().empty()) {
        if (auto [it, inserted] = names.emplace(route.name(), r); !inserted) {
          check.error(field_path(path, "name"),
                      "duplicate route name " + quoted(route.name()) + " (also " +
                          index_path(routes_path, static_cast<std::size_t>(it->second)) + ")");
        }
      }
      check_route(route, path, ctx);
    }
  }
}

}  // namespace remora::config::detail
