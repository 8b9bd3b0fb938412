#pragma once
// One worker's runtime view of a cluster: its endpoints (with their pools),
// the load balancer's state and the outlier detector's view. Survives
// config reloads while the cluster name stays, so pools and balancing state
// are kept.
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "remora/upstream/cluster_spec.h"
#include "remora/upstream/endpoint.h"
#include "remora/upstream/hash_ring.h"

namespace remora::upstream {

class Cluster {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Cluster(std::shared_ptr<const ClusterSpec> spec) : spec_(std::move(spec)) {}

  const ClusterSpec& spec() const { return *spec_; }
  // Call set_endpoints() after a spec change: the hash tables follow both.
  void set_spec(std::shared_ptr<const ClusterSpec> spec) { spec_ = std::move(spec); }

  // Replaces the endpoint set, keeping the pools of endpoints that stay.
  void set_endpoints(const std::vector<EndpointAddress>& addresses);
  const std::vector<std::shared_ptr<UpstreamEndpoint>>& endpoints() const { return endpoints_; }

  // The endpoint for the next request, skipping unhealthy and ejected ones;
  // when none is usable, the balancer's choice among all (panic mode:
  // better some requests fail than all). Null when the cluster has none.
  // `hash` is the request's key for ring_hash and maglev (proxy::balance_key).
  std::shared_ptr<UpstreamEndpoint> pick(uint64_t random, std::optional<uint64_t> hash = {});
  // For a retry: another usable endpoint than `avoid` where the cluster has
  // one, else whatever pick() gives; null when it has none.
  std::shared_ptr<UpstreamEndpoint> pick_other(const UpstreamEndpoint* avoid, uint64_t random);

  // One finished try on `endpoint`, for outlier detection.
  void record(UpstreamEndpoint& endpoint, policy::Outcome outcome);

  void sweep_idle(Clock::time_point now);
  void close_idle();

 private:
  size_t balance(uint64_t random, std::optional<uint64_t> hash, Clock::time_point now);
  size_t random_index(uint64_t random) const;  // weighted
  bool usable(size_t i, Clock::time_point now) const {
    return endpoints_[i]->stats().available(now);
  }

  std::shared_ptr<const ClusterSpec> spec_;
  std::vector<std::shared_ptr<UpstreamEndpoint>> endpoints_;
  std::vector<const policy::OutlierState*> outlier_states_;  // endpoints_' own, in order
  std::unique_ptr<RingHash> ring_;  // lb ring_hash
  std::unique_ptr<Maglev> maglev_;  // lb maglev
  size_t next_ = 0;                 // round-robin cursor (all weights equal)
  // Unequal weights: smooth weighted round robin's current weights (as
  // nginx), and the running sums of the weights for a weighted random draw.
  bool weighted_ = false;
  std::vector<int64_t> current_;
  std::vector<uint64_t> cumulative_;
};

}  // namespace remora::upstream
