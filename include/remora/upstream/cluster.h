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
  std::shared_ptr<UpstreamEndpoint> pick(uint64_t random, std::optional<uint64_t> hash) {
    return choose(random, hash ? &*hash : nullptr);
  }
  // Without a key. An overload rather than a default argument: GCC builds an
  // empty std::optional argument in memory a byte at a time and reads it
  // back whole, a store-forwarding stall that costs more than the pick.
  std::shared_ptr<UpstreamEndpoint> pick(uint64_t random) { return choose(random, nullptr); }
  // For a retry: another usable endpoint than `avoid` where the cluster has
  // one, else whatever pick() gives; null when it has none.
  std::shared_ptr<UpstreamEndpoint> pick_other(const UpstreamEndpoint* avoid, uint64_t random);

  // One finished try on `endpoint`, for outlier detection.
  void record(UpstreamEndpoint& endpoint, policy::Outcome outcome);

  void sweep_idle(Clock::time_point now);
  void close_idle();

 private:
  std::shared_ptr<UpstreamEndpoint> choose(uint64_t random, const uint64_t* key);
  size_t balance(uint64_t random, const uint64_t* key);
  size_t weighted_round_robin();
  size_t random_index(uint64_t random) const;  // weighted
  // Where the balancer's choice is out (the rare path, kept out of choose()).
  std::shared_ptr<UpstreamEndpoint> stand_in(size_t chosen, uint64_t seed);
  // Healthy and not ejected. The clock costs more than the rest of a pick,
  // so an ejection is first compared with a time already seen: one that
  // ended (or never began) before it needs no clock. Only an endpoint whose
  // ejection may still run reads the clock, at most once per pick.
  bool usable(size_t i) {
    const EndpointStats& stats = *stats_[i];
    if (!stats.healthy.load(std::memory_order_relaxed)) return false;
    const auto until = stats.outlier.ejected_until();
    return until <= seen_ || ended(until);
  }
  bool ended(Clock::time_point until);  // usable()'s clock read

  std::shared_ptr<const ClusterSpec> spec_;
  std::vector<std::shared_ptr<UpstreamEndpoint>> endpoints_;
  std::vector<EndpointStats*> stats_;                        // endpoints_' own, in order
  std::vector<const policy::OutlierState*> outlier_states_;  // endpoints_' own, in order
  std::unique_ptr<RingHash> ring_;  // lb ring_hash
  std::unique_ptr<Maglev> maglev_;  // lb maglev
  size_t next_ = 0;                 // round-robin cursor (all weights equal)
  Clock::time_point seen_{};        // the latest clock read (now is not before it)
  bool seen_is_now_ = false;        // seen_ was read during the current pick
  // Unequal weights: smooth weighted round robin's current weights (as
  // nginx), and the running sums of the weights for a weighted random draw.
  bool weighted_ = false;
  std::vector<int64_t> current_;
  std::vector<uint64_t> cumulative_;
};

}  // namespace remora::upstream
