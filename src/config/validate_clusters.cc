// Semantic rules for clusters: endpoints and policies.
#include <unordered_map>

#include "checker.h"
#include "remora/config/address.h"

namespace remora::config::detail {
namespace {

void check_endpoints(const v1::Cluster& cluster, const std::string& path, Checker& check) {
  std::string list = field_path(path, "endpoints");
  if (cluster.endpoints().empty()) {
    check.error(list, "a cluster needs at least one endpoint (ip:port or dns:name:port)");
    return;
  }
  std::unordered_map<std::string, int> seen;
  for (int i = 0; i < cluster.endpoints_size(); ++i) {
    const std::string& text = cluster.endpoints(i);
    std::string item = index_path(list, static_cast<std::size_t>(i));
    HostPortResult parsed = parse_endpoint(text);
    if (!parsed.ok()) {
      check.error(item, "invalid endpoint " + quoted(text) + ": " + parsed.error);
    } else if (auto [it, inserted] = seen.emplace(parsed.value.to_string(), i); !inserted) {
      // A duplicate would silently double the endpoint's share of traffic.
      check.error(item, "duplicate endpoint " + quoted(text) + " (also " +
                            index_path(list, static_cast<std::size_t>(it->second)) + ")");
    }
  }
}

void check_cluster(const v1::Cluster& cluster, const std::string& path, Checker& check) {
  check_endpoints(cluster, path, check);
  if (!v1::Cluster::Protocol_IsValid(cluster.protocol())) {
    check.error(field_path(path, "protocol"),
                "unknown protocol value " + std::to_string(cluster.protocol()));
  }
  if (!v1::Cluster::LbPolicy_IsValid(cluster.lb())) {
    check.error(field_path(path, "lb"), "unknown lb value " + std::to_string(cluster.lb()));
  }
  if (cluster.has_outlier_detection()) {
    std::uint32_t percent = cluster.outlier_detection().max_ejection_percent();
    if (std::string why = out_of_range(percent, 0, 100); !why.empty()) {
      check.error(field_path(path, "outlier_detection.max_ejection_percent"), why);
    }
  }
  const bool hashing = cluster.lb() == v1::Cluster::RING_HASH || cluster.lb() == v1::Cluster::MAGLEV;
  const auto& hash = cluster.hash();
  if (hashing && hash.header().empty() == !hash.client_address()) {
    check.error(field_path(path, "hash"),
                "ring_hash and maglev need what to hash: either hash.header or "
                "hash.client_address: true");
  } else if (!hashing && cluster.has_hash()) {
    check.error(field_path(path, "hash"), "hash is only used by lb: ring_hash and lb: maglev");
  }
  if (cluster.has_health_check()) {
    const auto& health = cluster.health_check();
    const std::string& probe = health.path();
    const std::string hc_path = field_path(path, "health_check");
    if (health.has_grpc()) {
      if (!probe.empty())
        check.error(field_path(hc_path, "path"),
                    "a gRPC health check has no path (it calls grpc.health.v1.Health/Check)");
      if (cluster.protocol() != v1::Cluster::HTTP2)
        check.error(field_path(hc_path, "grpc"), "a gRPC health check needs protocol: http2");
    } else if (probe.empty() || probe.front() != '/') {
      check.error(field_path(hc_path, "path"),
                  "a health check needs a path starting with \"/\", got " + quoted(probe));
    }
    for (int i = 0; i < health.expected_statuses_size(); ++i) {
      if (std::string why = out_of_range(health.expected_statuses(i), 100, 599); !why.empty())
        check.error(index_path(field_path(hc_path, "expected_statuses"), static_cast<std::size_t>(i)),
                    why);
    }
  }
}

}  // namespace

void check_clusters(const v1::Config& config, Checker& check) {
  check_unique_names(config.clusters(), "clusters", "cluster", check);
  for (int i = 0; i < config.clusters_size(); ++i) {
    check_cluster(config.clusters(i), index_path("clusters", static_cast<std::size_t>(i)), check);
  }
}

}  // namespace remora::config::detail
