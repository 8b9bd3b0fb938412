#pragma once
// One worker's runtime view of a cluster: its endpoints (with their pools) and
// the load balancer's cursor. Survives config reloads while the cluster name
// stays, so pools and balancing state are kept.
#include <cstdint>
#include <memory>
#include <vector>

#include "remora/upstream/cluster_spec.h"
#include "remora/upstream/endpoint.h"

namespace remora::upstream {

class Cluster {
 public:
  explicit Cluster(std::shared_ptr<const ClusterSpec> spec) : spec_(std::move(spec)) {}

  const ClusterSpec& spec() const { return *spec_; }
  void set_spec(std::shared_ptr<const ClusterSpec> spec) { spec_ = std::move(spec); }

  // Replaces the endpoint set, keeping the pools of endpoints that stay.
  void set_endpoints(const std::vector<EndpointAddress>& addresses);
  const std::vector<std::shared_ptr<UpstreamEndpoint>>& endpoints() const { return endpoints_; }

  // The endpoint for the next request, or null when the cluster has none.
  std::shared_ptr<UpstreamEndpoint> pick(uint64_t random);
  // For a retry: another endpoint than `avoid` where the cluster has one
  // (a few picks), else whatever pick() gives; null when it has none.
  std::shared_ptr<UpstreamEndpoint> pick_other(const UpstreamEndpoint* avoid, uint64_t random);

  void sweep_idle(std::chrono::steady_clock::time_point now);
  void close_idle();

 private:
  std::shared_ptr<const ClusterSpec> spec_;
  std::vector<std::shared_ptr<UpstreamEndpoint>> endpoints_;
  size_t next_ = 0;  // round-robin cursor
};

}  // namespace remora::upstream
