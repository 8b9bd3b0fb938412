#include "remora/observe/metrics.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include "remora/policy/circuit_breaker.h"
#include "remora/version.h"

namespace remora::observe {

void DurationHistogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].add();
  count_.add();
  sum_us_.add(static_cast<uint64_t>(seconds * 1e6));
}

std::array<uint64_t, DurationHistogram::kBounds.size() + 1> DurationHistogram::bucket_counts()
    const {
  std::array<uint64_t, kBounds.size() + 1> counts{};
  for (size_t i = 0; i < counts.size(); ++i) counts[i] = buckets_[i].value();
  return counts;
}

Counter& ListenerSeries::rejected_for(std::string_view reason) {
  auto it = rejected.find(reason);
  return it != rejected.end() ? it->second : rejected.find("bad_request")->second;
}

Metrics::Metrics() = default;

RequestSeries& Metrics::requests(const std::string& listener, const std::string& route,
                                 const std::string& cluster) {
  std::lock_guard lock(mutex_);
  auto& slot = requests_[{listener, route, cluster}];
  if (!slot) slot = std::make_unique<RequestSeries>();
  return *slot;
}

DurationHistogram& Metrics::duration(const std::string& listener, const std::string& route) {
  std::lock_guard lock(mutex_);
  auto& slot = durations_[{listener, route}];
  if (!slot) slot = std::make_unique<DurationHistogram>();
  return *slot;
}

ListenerSeries& Metrics::listener(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& slot = listeners_[name];
  if (!slot) {
    slot = std::make_unique<ListenerSeries>();
    for (auto reason : kRejectReasons) slot->rejected[std::string(reason)];
  }
  return *slot;
}

RouteSeries& Metrics::route(const std::string& listener, const std::string& route) {
  std::lock_guard lock(mutex_);
  auto& slot = routes_[{listener, route}];
  if (!slot) slot = std::make_unique<RouteSeries>();
  return *slot;
}

ClusterSeries& Metrics::cluster(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto& slot = clusters_[name];
  if (!slot) slot = std::make_unique<ClusterSeries>();
  return *slot;
}

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

ClientMetric labelled(std::initializer_list<std::pair<const char*, std::string>> labels) {
  ClientMetric m;
  for (auto& [name, value] : labels) m.label.push_back({name, value});
  return m;
}

}  // namespace

std::string Metrics::render() const {
  std::vector<MetricFamily> out;
  std::lock_guard lock(mutex_);

  auto build = family("remora_build_info", "remora build information.", MetricType::Gauge);
  auto info = labelled({{"version", kVersion}, {"revision", kRevision}});
  info.gauge.value = 1;
  build.metric.push_back(info);
  out.push_back(std::move(build));

  auto requests = family(
      "remora_requests_total",
      "Downstream requests by listener, route, cluster, protocol and status class.",
      MetricType::Counter);
  auto grpc = family("remora_grpc_requests_total",
                     "gRPC calls by listener, route, cluster and grpc-status (codes seen).",
                     MetricType::Counter);
  static constexpr const char* kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  for (auto& [key, series] : requests_) {
    for (size_t p = 0; p < kProtocolNames.size(); ++p) {
      for (size_t c = 0; c < 5; ++c) {
        auto m = labelled({{"listener", std::get<0>(key)},
                           {"route", std::get<1>(key)},
                           {"cluster", std::get<2>(key)},
                           {"protocol", std::string(kProtocolNames[p])},
                           {"status_class", kClasses[c]}});
        m.counter.value = static_cast<double>(series->by_status_class[p][c].value());
        requests.metric.push_back(std::move(m));
      }
    }
    for (size_t code = 0; code < kGrpcStatuses; ++code) {
      auto n = series->by_grpc_status[code].value();
      if (n == 0) continue;  // most routes carry no gRPC: 17 zero series each would be noise
      auto m = labelled({{"listener", std::get<0>(key)},
                         {"route", std::get<1>(key)},
                         {"cluster", std::get<2>(key)},
                         {"grpc_status", std::to_string(code)}});
      m.counter.value = static_cast<double>(n);
      grpc.metric.push_back(std::move(m));
    }
  }
  out.push_back(std::move(requests));
  out.push_back(std::move(grpc));

  auto durations = family("remora_request_duration_seconds",
                          "Time from the request head to the end of the response.",
                          MetricType::Histogram);
  for (auto& [key, histogram] : durations_) {
    auto m = labelled({{"listener", key.first}, {"route", key.second}});
    auto counts = histogram->bucket_counts();
    uint64_t cumulative = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i];
      prometheus::ClientMetric::Bucket bucket;
      bucket.cumulative_count = cumulative;
      bucket.upper_bound = i < DurationHistogram::kBounds.size()
                               ? DurationHistogram::kBounds[i]
                               : std::numeric_limits<double>::infinity();
      m.histogram.bucket.push_back(bucket);
    }
    m.histogram.sample_count = cumulative;
    m.histogram.sample_sum = histogram->sum_seconds();
    durations.metric.push_back(std::move(m));
  }
  out.push_back(std::move(durations));

  auto downstream = family("remora_downstream_connections_active",
                           "Open downstream connections per listener.", MetricType::Gauge);
  auto rejected = family("remora_downstream_rejected_total",
                         "Downstream requests refused before routing, by reason.",
                         MetricType::Counter);
  auto defences = family("remora_h2_defence_total",
                         "HTTP/2 streams or connections ended by a defence or timeout.",
                         MetricType::Counter);
  for (auto& [name, series] : listeners_) {
    for (size_t d = 0; d < kH2DefenceNames.size(); ++d) {
      auto m = labelled({{"listener", name}, {"defence", std::string(kH2DefenceNames[d])}});
      m.counter.value = static_cast<double>(series->h2_defences[d].value());
      defences.metric.push_back(std::move(m));
    }
    auto m = labelled({{"listener", name}});
    m.gauge.value = static_cast<double>(series->active_connections.value());
    downstream.metric.push_back(std::move(m));
    for (auto& [reason, counter] : series->rejected) {
      auto r = labelled({{"listener", name}, {"reason", reason}});
      r.counter.value = static_cast<double>(counter.value());
      rejected.metric.push_back(std::move(r));
    }
  }
  out.push_back(std::move(downstream));
  out.push_back(std::move(rejected));
  out.push_back(std::move(defences));

  auto upstream = family("remora_upstream_connections_active",
                         "Open upstream connections per cluster (in use and idle).",
                         MetricType::Gauge);
  auto failures = family("remora_upstream_connect_failures_total",
                         "Upstream connection attempts that failed or timed out.",
                         MetricType::Counter);
  auto retries = family("remora_upstream_refused_stream_retries_total",
                        "HTTP/2 streams the upstream refused (GOAWAY, REFUSED_STREAM), sent again.",
                        MetricType::Counter);
  auto circuit_open = family("remora_circuit_open_total",
                             "Requests refused at once by the cluster's circuit breaker.",
                             MetricType::Counter);
  auto occupancy = family("remora_circuit_breaker_occupancy",
                          "What the cluster has outstanding, by breaker resource (all workers).",
                          MetricType::Gauge);
  auto limits = family("remora_circuit_breaker_limit", "The cluster's breaker limits.",
                       MetricType::Gauge);
  auto ejections = family("remora_outlier_ejections_total",
                          "Endpoints taken out of balancing by outlier detection.",
                          MetricType::Counter);
  auto panic = family("remora_lb_panic_total",
                      "Requests balanced over all endpoints because none was healthy and "
                      "un-ejected (panic mode).",
                      MetricType::Counter);
  auto checks = family("remora_health_checks_total", "Active health checks, by result.",
                       MetricType::Counter);
  auto panic_now = family("remora_upstream_panic",
                          "1 while no endpoint of the cluster is available, so requests are "
                          "balanced over all of them (panic mode).",
                          MetricType::Gauge);
  auto states = family("remora_upstream_endpoints",
                       "Endpoints of the cluster by state: available to the balancer, "
                       "unhealthy (active checks), ejected (outlier detection).",
                       MetricType::Gauge);
  static constexpr std::pair<policy::Resource, const char*> kResources[] = {
      {policy::Resource::kConnections, "connections"},
      {policy::Resource::kPending, "pending"},
      {policy::Resource::kRequests, "requests"},
      {policy::Resource::kRetries, "retries"}};
  for (auto& [name, series] : clusters_) {
    auto r = labelled({{"cluster", name}});
    r.counter.value = static_cast<double>(series->refused_stream_retries.value());
    retries.metric.push_back(std::move(r));
    auto o = labelled({{"cluster", name}});
    o.counter.value = static_cast<double>(series->circuit_open.value());
    circuit_open.metric.push_back(std::move(o));
    if (const auto* breaker = series->breaker) {
      for (auto [resource, label] : kResources) {
        auto used = labelled({{"cluster", name}, {"resource", label}});
        used.gauge.value = breaker->occupancy(resource);
        occupancy.metric.push_back(std::move(used));
        auto limit = labelled({{"cluster", name}, {"resource", label}});
        limit.gauge.value = breaker->limit(resource);
        limits.metric.push_back(std::move(limit));
      }
    }
    auto counted = [&](MetricFamily& into, const Counter& counter, const char* result = nullptr) {
      auto metric = result ? labelled({{"cluster", name}, {"result", result}})
                           : labelled({{"cluster", name}});
      metric.counter.value = static_cast<double>(counter.value());
      into.metric.push_back(std::move(metric));
    };
    counted(ejections, series->ejections);
    counted(panic, series->panic_picks);
    counted(checks, series->health_checks_passed, "passed");
    counted(checks, series->health_checks_failed, "failed");
    for (auto [gauge, state] : {std::pair{&series->endpoints_available, "available"},
                                {&series->endpoints_unhealthy, "unhealthy"},
                                {&series->endpoints_ejected, "ejected"}}) {
      auto metric = labelled({{"cluster", name}, {"state", state}});
      metric.gauge.value = static_cast<double>(gauge->value());
      states.metric.push_back(std::move(metric));
    }
    auto p = labelled({{"cluster", name}});
    p.gauge.value = static_cast<double>(series->panic.value());
    panic_now.metric.push_back(std::move(p));
    auto m = labelled({{"cluster", name}});
    m.gauge.value = static_cast<double>(series->active_connections.value());
    upstream.metric.push_back(std::move(m));
    auto f = labelled({{"cluster", name}});
    f.counter.value = static_cast<double>(series->connect_failures.value());
    failures.metric.push_back(std::move(f));
  }
  out.push_back(std::move(upstream));
  out.push_back(std::move(failures));
  out.push_back(std::move(retries));
  out.push_back(std::move(circuit_open));
  out.push_back(std::move(occupancy));
  out.push_back(std::move(limits));
  out.push_back(std::move(ejections));
  out.push_back(std::move(panic));
  out.push_back(std::move(checks));
  out.push_back(std::move(states));
  out.push_back(std::move(panic_now));

  auto rate_limited = family("remora_rate_limited_total",
                             "Requests refused by the route's local rate limit (429).",
                             MetricType::Counter);
  auto faults = family("remora_faults_total", "Faults injected by the route, by kind.",
                       MetricType::Counter);
  for (auto& [key, series] : routes_) {
    auto r = labelled({{"listener", key.first}, {"route", key.second}});
    r.counter.value = static_cast<double>(series->rate_limited.value());
    rate_limited.metric.push_back(std::move(r));
    auto d = labelled({{"listener", key.first}, {"route", key.second}, {"kind", "delay"}});
    d.counter.value = static_cast<double>(series->fault_delays.value());
    faults.metric.push_back(std::move(d));
    auto a = labelled({{"listener", key.first}, {"route", key.second}, {"kind", "abort"}});
    a.counter.value = static_cast<double>(series->fault_aborts.value());
    faults.metric.push_back(std::move(a));
  }
  out.push_back(std::move(rate_limited));
  out.push_back(std::move(faults));

  auto route_retries = family("remora_retries_total", "Upstream tries after the first, by route.",
                        MetricType::Counter);
  auto exhausted = family("remora_retry_budget_exhausted_total",
                          "Retries not made because the route's retry budget was spent.",
                          MetricType::Counter);
  auto overflow = family("remora_retry_overflow_total",
                         "Retries not made because the cluster breaker's max_retries was reached.",
                         MetricType::Counter);
  for (auto& [key, series] : routes_) {
    auto r = labelled({{"listener", key.first}, {"route", key.second}});
    r.counter.value = static_cast<double>(series->retries.value());
    route_retries.metric.push_back(std::move(r));
    auto e = labelled({{"listener", key.first}, {"route", key.second}});
    e.counter.value = static_cast<double>(series->retry_budget_exhausted.value());
    exhausted.metric.push_back(std::move(e));
    auto o = labelled({{"listener", key.first}, {"route", key.second}});
    o.counter.value = static_cast<double>(series->retry_overflow.value());
    overflow.metric.push_back(std::move(o));
  }
  out.push_back(std::move(route_retries));
  out.push_back(std::move(exhausted));
  out.push_back(std::move(overflow));

  auto reloads = family("remora_config_reloads_total", "Configuration reloads by result.",
                        MetricType::Counter);
  auto ok = labelled({{"result", "ok"}});
  ok.counter.value = static_cast<double>(reloads_ok.value());
  auto failed = labelled({{"result", "failed"}});
  failed.counter.value = static_cast<double>(reloads_failed.value());
  reloads.metric.push_back(ok);
  reloads.metric.push_back(failed);
  out.push_back(std::move(reloads));

  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace remora::observe
