#include "remora/proxy/snapshot.h"

#include <algorithm>
#include <cctype>
#include <thread>

#include "remora/config/address.h"
#include "remora/observe/metrics.h"
#include "remora/policy/registry.h"

namespace remora::proxy {
namespace {

namespace v1 = config::v1;
using std::chrono::milliseconds;

milliseconds to_ms(const google::protobuf::Duration& d, milliseconds fallback) {
  if (d.seconds() == 0 && d.nanos() == 0) return fallback;
  return milliseconds(d.seconds() * 1000 + d.nanos() / 1'000'000);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

http::HeaderMutation compile_mutation(const v1::HeaderMutation& m) {
  http::HeaderMutation out;
  for (const auto& [name, value] : m.add()) out.add.emplace_back(lower(name), value);
  std::sort(out.add.begin(), out.add.end());  // proto maps have no order; make output stable
  for (const auto& name : m.remove()) out.remove.push_back(lower(name));
  return out;
}

class Compiler {
 public:
  Compiler(std::shared_ptr<const v1::Config> config, observe::Metrics& metrics,
           policy::Registry* policies)
      : config_(std::move(config)), metrics_(metrics), policies_(policies ? *policies : own_) {}

  CompileResult run() {
    auto snap = std::make_shared<Snapshot>();
    snap->config = config_;
    const auto& c = *config_;
    snap->workers = c.workers() ? c.workers() : std::max(1u, std::thread::hardware_concurrency());
    snap->drain_timeout = to_ms(c.drain_timeout(), milliseconds(15'000));
    if (c.max_connections()) snap->max_connections = c.max_connections();
    auto admin =
        net::parse_endpoint(c.admin().address().empty() ? "127.0.0.1:9901" : c.admin().address());
    if (!admin)
      error("admin.address", "not a host:port address");
    else
      snap->admin_address = *admin;
    snap->access_log.path = c.observability().access_log().path();
    snap->access_log.json = c.observability().access_log().format() == v1::AccessLog::JSON;
    if (!c.observability().log_level().empty()) snap->log_level = c.observability().log_level();

    for (int i = 0; i < c.clusters_size(); ++i) snap->clusters.push_back(cluster(i));
    for (int j = 0; j < c.listeners_size(); ++j) {
      int table = -1;
      for (int i = 0; i < c.route_tables_size(); ++i)
        if (c.route_tables(i).name() == c.listeners(j).route_table()) table = i;
      if (table < 0) {
        error("listeners[" + std::to_string(j) + "].route_table", "no such route table");
        continue;
      }
      snap->route_tables.push_back(route_table(table, c.listeners(j).name()));
      snap->listeners.push_back(listener(j, snap->route_tables.size() - 1));
    }

    CompileResult result;
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.snapshot = std::move(snap);
    return result;
  }


 private:
  void error(std::string path, std::string message) {
    errors_.push_back({"", 0, 0, std::move(path), std::move(message)});
  }

  std::shared_ptr<const upstream::ClusterSpec> cluster(int index) {
    const auto& in = config_->clusters(index);
    auto path = "clusters[" + std::to_string(index) + "]";
    auto out = std::make_shared<upstream::ClusterSpec>();
    out->name = in.name();
    switch (in.lb()) {
      case v1::Cluster::ROUND_ROBIN:
        out->lb = upstream::LbPolicy::kRoundRobin;
        break;
      case v1::Cluster::LEAST_REQUEST:
        out->lb = upstream::LbPolicy::kLeastRequest;
        break;
      case v1::Cluster::RANDOM:
        out->lb = upstream::LbPolicy::kRandom;
        break;
      case v1::Cluster::RING_HASH:
        out->lb = upstream::LbPolicy::kRingHash;
        break;
      case v1::Cluster::MAGLEV:
        out->lb = upstream::LbPolicy::kMaglev;
        break;
      default:
        break;
    }
    out->hash_key.header = lower(in.hash().header());
    out->http2 = in.protocol() == v1::Cluster::HTTP2;
    for (int e = 0; e < in.endpoints_size(); ++e) {
      // The validator's parser (the weight), then the runtime's (the address).
      const auto parsed = config::parse_endpoint(in.endpoints(e));
      const std::string text = parsed.value.to_string();
      if (!parsed.ok())
        error(path + ".endpoints[" + std::to_string(e) + "]", parsed.error);
      else if (auto endpoint = net::parse_endpoint(text))
        out->static_endpoints.push_back({*endpoint, parsed.value.weight});
      else if (auto name = net::parse_dns_name(text))
        out->dns_names.push_back({*name, parsed.value.weight});
      else
        error(path + ".endpoints[" + std::to_string(e) + "]", "not ip:port or dns:name:port");
    }
    out->connect_timeout = to_ms(in.connect_timeout(), milliseconds(5000));
    out->dns_refresh = to_ms(in.dns_refresh(), milliseconds(5000));
    out->pool_idle_timeout = to_ms(in.pool().idle_timeout(), milliseconds(60'000));
    if (in.pool().max_idle()) out->pool_max_idle = in.pool().max_idle();
    out->keepalive_interval = to_ms(in.pool().keepalive_interval(), milliseconds(30'000));
    out->keepalive_timeout = to_ms(in.pool().keepalive_timeout(), milliseconds(10'000));
    out->stats = &metrics_.cluster(in.name());
    const auto& cb = in.circuit_breaker();
    policy::CircuitBreakerLimits limits;  // DESIGN §6 defaults where unset
    if (cb.max_connections()) limits.max_connections = cb.max_connections();
    if (cb.max_pending()) limits.max_pending = cb.max_pending();
    if (cb.max_requests()) limits.max_requests = cb.max_requests();
    if (cb.max_retries()) limits.max_retries = cb.max_retries();
    out->breaker = policies_.circuit_breaker(in.name(), limits);
    out->stats->breaker = out->breaker.get();
    if (const auto& od = in.outlier_detection(); !od.disabled()) {
      policy::OutlierDetectionOptions options;  // DESIGN §6 defaults where unset
      if (od.consecutive_5xx()) options.consecutive_5xx = od.consecutive_5xx();
      options.consecutive_gateway_failure = od.consecutive_gateway_failure();
      options.base_ejection_time = to_ms(od.base_ejection_time(), milliseconds(30'000));
      options.max_ejection_time = to_ms(od.max_ejection_time(), milliseconds(300'000));
      if (od.max_ejection_percent()) options.max_ejection_percent = od.max_ejection_percent();
      out->outlier = policies_.outlier_detector(in.name(), options);
    }
    if (in.has_health_check()) {
      const auto& hc = in.health_check();
      upstream::HealthCheckSpec check;
      check.path = hc.path();
      check.grpc = hc.has_grpc();
      check.grpc_service = hc.grpc().service();
      check.interval = to_ms(hc.interval(), milliseconds(5000));
      check.timeout = to_ms(hc.timeout(), milliseconds(1000));
      check.jitter = to_ms(hc.jitter(), milliseconds(0));
      if (hc.healthy_threshold()) check.healthy_threshold = hc.healthy_threshold();
      if (hc.unhealthy_threshold()) check.unhealthy_threshold = hc.unhealthy_threshold();
      if (hc.expected_statuses_size() > 0)
        check.expected_statuses.assign(hc.expected_statuses().begin(),
                                       hc.expected_statuses().end());
      out->health_check = std::move(check);
    }
    return out;
  }

  static policy::RetryPolicy retry_policy(const v1::RetryPolicy& in) {
    policy::RetryPolicy out;
    out.attempts = in.attempts() ? in.attempts() : 2;
    out.per_try_timeout = to_ms(in.per_try_timeout(), milliseconds(0));
    if (in.on_size() == 0) out.on_connect_failure = out.on_reset = true;
    for (const auto& on : in.on()) {
      if (on == "5xx") out.on_5xx = true;
      else if (on == "gateway-error") out.on_gateway_error = true;
      else if (on == "reset") out.on_reset = true;
      else if (on == "connect-failure") out.on_connect_failure = true;
      else if (on == "retriable-status-codes") out.on_status_codes = true;
      else if (on == "cancelled") out.grpc_statuses |= 1u << 1;
      else if (on == "deadline-exceeded") out.grpc_statuses |= 1u << 4;
      else if (on == "resource-exhausted") out.grpc_statuses |= 1u << 8;
      else if (on == "unavailable") out.grpc_statuses |= 1u << 14;
    }
    out.status_codes.assign(in.retriable_status_codes().begin(), in.retriable_status_codes().end());
    out.backoff.base = to_ms(in.backoff().base(), milliseconds(25));
    out.backoff.max = std::max<std::chrono::nanoseconds>(
        out.backoff.base, to_ms(in.backoff().max(), milliseconds(250)));
    if (in.buffer_limit()) out.buffer_limit = in.buffer_limit();
    out.non_idempotent = in.retry_non_idempotent();
    return out;
  }

  size_t cluster_index(const std::string& name) const {
    for (int i = 0; i < config_->clusters_size(); ++i)
      if (config_->clusters(i).name() == name) return static_cast<size_t>(i);
    return 0;  // validate() guarantees the reference exists
  }

  // A route table is compiled once per listener using it, since the
  // listener is part of each route's metric labels.
  router::RouteTable route_table(int index, const std::string& listener_name) {
    const auto& in = config_->route_tables(index);
    router::RouteTable out;
    out.name = in.name();
    for (int r = 0; r < in.routes_size(); ++r) {
      const auto& route = in.routes(r);
      auto path = "route_tables[" + std::to_string(index) + "].routes[" + std::to_string(r) + "]";
      router::Route compiled;
      compiled.name = route.name().empty() ? in.name() + "/" + std::to_string(r) : route.name();
      compiled.prefix = route.match().prefix();
      compiled.path = route.match().path();
      compiled.host = lower(route.match().host());
      if (compiled.host.starts_with("*.")) {
        compiled.host_wildcard = true;
        compiled.host.erase(0, 1);
      }
      std::vector<std::pair<std::string, v1::HeaderMatch>> headers(route.match().headers().begin(),
                                                                   route.match().headers().end());
      std::sort(headers.begin(), headers.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (const auto& [name, match] : headers) {
        router::HeaderMatcher m;
        m.name = lower(name);
        if (match.present()) {
          m.kind = router::HeaderMatcher::Kind::kPresent;
        } else if (!match.regex().empty()) {
          m.kind = router::HeaderMatcher::Kind::kRegex;
          try {
            m.regex = std::regex(match.regex(), std::regex::ECMAScript | std::regex::optimize);
          } catch (const std::regex_error& e) {
            error(path + ".match.headers." + name, std::string("bad regex: ") + e.what());
          }
        } else {
          m.value = match.exact();
        }
        compiled.headers.push_back(std::move(m));
      }
      auto add_target = [&](const std::string& cluster, uint32_t weight) {
        compiled.targets.push_back({cluster_index(cluster), weight,
                                    &metrics_.requests(listener_name, compiled.name, cluster),
                                    nullptr});
        compiled.total_weight += weight;
      };
      if (!route.cluster().empty()) add_target(route.cluster(), 1);
      for (const auto& split : route.split()) add_target(split.cluster(), split.weight());
      if (compiled.targets.empty()) error(path, "no cluster");
      compiled.rewrite = !route.rewrite_prefix().empty();
      compiled.rewrite_prefix = route.rewrite_prefix();
      compiled.timeout = to_ms(route.timeout(), milliseconds(15'000));
      compiled.request_headers = compile_mutation(route.request_headers());
      compiled.response_headers = compile_mutation(route.response_headers());
      compiled.duration = &metrics_.duration(listener_name, compiled.name);
      compiled.policy_stats = &metrics_.route(listener_name, compiled.name);
      if (route.has_retry()) {
        compiled.retry = retry_policy(route.retry());
        if (compiled.retry.enabled()) {
          const uint32_t percent = route.retry().budget_percent() ? route.retry().budget_percent() : 20;
          for (auto& target : compiled.targets)
            target.retry_budget = policies_.retry_budget(
                listener_name + "\n" + compiled.name + "\n" +
                    config_->clusters(static_cast<int>(target.cluster)).name(),
                percent);
        }
      }
      if (route.has_rate_limit()) {
        const auto& rl = route.rate_limit();
        // Unset burst: one second's worth.
        uint32_t burst = rl.burst() ? rl.burst() : static_cast<uint32_t>(std::max(1.0, rl.rate()));
        compiled.rate_limit =
            policies_.token_bucket(listener_name + "\n" + compiled.name, rl.rate(), burst);
      }
      if (route.has_fault()) {
        const auto& f = route.fault();
        compiled.fault.header = lower(f.header());
        compiled.fault.delay = to_ms(f.delay().duration(), milliseconds(0));
        compiled.fault.delay_percent = f.has_delay() ? f.delay().percent() : 0;
        compiled.fault.abort_status = f.abort().status();
        compiled.fault.abort_grpc_status = f.abort().grpc_status();
        compiled.fault.abort_percent = f.has_abort() ? f.abort().percent() : 0;
      }
      out.routes.push_back(std::move(compiled));
    }
    out.build_index();
    return out;
  }

  ListenerSpec listener(int index, size_t table_index) {
    const auto& in = config_->listeners(index);
    auto path = "listeners[" + std::to_string(index) + "]";
    ListenerSpec out;
    out.name = in.name();
    if (auto address = net::parse_endpoint(in.address()))
      out.address = *address;
    else
      error(path + ".address", "not a host:port address");
    out.protocol = in.protocol() == v1::Listener::HTTP1   ? ListenerProtocol::kHttp1
                   : in.protocol() == v1::Listener::HTTP2 ? ListenerProtocol::kHttp2
                                                          : ListenerProtocol::kAuto;
    out.route_table = table_index;
    const auto& l = in.limits();
    if (l.max_request_header_bytes()) out.limits.max_header_bytes = l.max_request_header_bytes();
    if (l.max_request_headers()) out.limits.max_headers = l.max_request_headers();
    if (l.max_request_target_bytes()) out.limits.max_target_bytes = l.max_request_target_bytes();
    out.limits.header_read_timeout = to_ms(l.header_read_timeout(), milliseconds(10'000));
    out.limits.idle_timeout = to_ms(l.idle_timeout(), milliseconds(3'600'000));
    out.limits.stream_idle_timeout = to_ms(l.stream_idle_timeout(), milliseconds(300'000));
    if (l.max_concurrent_streams()) out.limits.max_concurrent_streams = l.max_concurrent_streams();
    if (l.stream_reset_burst()) out.limits.stream_reset_burst = l.stream_reset_burst();
    if (l.stream_resets_per_second())
      out.limits.stream_resets_per_second = l.stream_resets_per_second();
    if (l.max_connections()) out.limits.max_connections = l.max_connections();
    out.stats = &metrics_.listener(in.name());
    out.unrouted = &metrics_.requests(in.name(), "", "");
    return out;
  }

  std::shared_ptr<const v1::Config> config_;
  observe::Metrics& metrics_;
  policy::Registry own_;  // when the caller keeps none (validate, benchmarks)
  policy::Registry& policies_;
  std::vector<config::Diagnostic> errors_;
};

}  // namespace

CompileResult compile_snapshot(std::shared_ptr<const config::v1::Config> config,
                               observe::Metrics& metrics, policy::Registry* policies) {
  return Compiler(std::move(config), metrics, policies).run();
}

}  // namespace remora::proxy
