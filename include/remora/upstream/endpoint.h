#pragma once
// One upstream endpoint of a cluster. EndpointStats is process-wide (atomics,
// shown by /clusters and read by least_request); UpstreamEndpoint is one
// worker's view with its own keep-alive pool.
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "remora/net/address.h"
#include "remora/policy/outlier_detector.h"
#include "remora/upstream/upstream_connection.h"

namespace remora::upstream {

// Keyed by (cluster, address) for the life of the process, so health and
// ejections survive reloads and DNS changes.
struct EndpointStats {
  std::atomic<int64_t> active_requests{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> connect_failures{0};
  policy::OutlierState outlier;  // passive: written by the workers' requests
  // Active health checking's verdict: written by the main thread's checker,
  // read by the balancers. True while the cluster has no health check.
  std::atomic<bool> healthy{true};
  // The checker's record (main thread only: the checker and /clusters).
  struct HealthRecord {
    bool checked = false;  // at least one check since the endpoint appeared
    uint32_t passes = 0;   // in a row
    uint32_t failures = 0;  // in a row
    std::string last_failure;
  } health;

  // Usable by the balancer now: healthy and not ejected.
  bool available(std::chrono::steady_clock::time_point now) const noexcept {
    return healthy.load(std::memory_order_relaxed) && !outlier.is_ejected(now);
  }
};

// Counts one request against its endpoint while it lives (least_request and
// /clusters read the count).
class ActiveRequest {
 public:
  explicit ActiveRequest(EndpointStats& stats) : stats_(stats) {
    stats_.active_requests.fetch_add(1, std::memory_order_relaxed);
    stats_.requests.fetch_add(1, std::memory_order_relaxed);
  }
  ~ActiveRequest() { stats_.active_requests.fetch_sub(1, std::memory_order_relaxed); }
  ActiveRequest(const ActiveRequest&) = delete;
  ActiveRequest& operator=(const ActiveRequest&) = delete;

 private:
  EndpointStats& stats_;
};

struct EndpointAddress;
// Endpoint sets by cluster name, as last resolved by the main thread.
using EndpointSets = std::map<std::string, std::vector<EndpointAddress>>;

struct EndpointAddress {
  net::Endpoint address;
  std::string text;    // "10.0.0.1:8080"
  std::string source;  // "static" or "dns:name:port"
  uint32_t weight = 1;  // share of traffic relative to the cluster's other endpoints
  std::shared_ptr<EndpointStats> stats;
};

class UpstreamEndpoint {
 public:
  explicit UpstreamEndpoint(EndpointAddress address) : address_(std::move(address)) {}

  const EndpointAddress& address() const { return address_; }
  // What may change for an address that stays, on a reload.
  void set_weight(uint32_t weight) { address_.weight = weight; }
  EndpointStats& stats() { return *address_.stats; }

  // A pooled connection that is still open, or null. Never returns one the
  // upstream has closed or that sat idle longer than `idle_timeout`.
  std::unique_ptr<UpstreamConnection> acquire(std::chrono::steady_clock::time_point now,
                                              std::chrono::milliseconds idle_timeout);
  void release(std::unique_ptr<UpstreamConnection> connection,
               std::chrono::steady_clock::time_point now, size_t max_idle);
  // Closes idle connections older than `idle_timeout`, or all of them.
  void sweep(std::chrono::steady_clock::time_point now, std::chrono::milliseconds idle_timeout);
  void close_idle();

  // Multiplexed HTTP/2 connections to this endpoint (clusters with protocol http2).
  std::vector<std::shared_ptr<class H2Client>> h2_clients;

 private:
  EndpointAddress address_;
  std::vector<std::unique_ptr<UpstreamConnection>> idle_;  // most recently used last
};

}  // namespace remora::upstream
