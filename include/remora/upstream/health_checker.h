#pragma once
// Active health checking: one checker per proxy, on the main thread (not
// one per worker, which would multiply the probes by the worker count).
// Each endpoint of a cluster with a health_check is probed every interval
// (plus up to `jitter`, so a fleet's probes do not align): an HTTP GET of
// the path (HTTP/1.1, or h2c on an http2 cluster) answered with an expected
// status, or grpc.health.v1.Health/Check answered SERVING. The verdict is
// EndpointStats::healthy, which the workers' balancers read.
//
// As in Envoy, an endpoint that was never checked starts unhealthy and its
// first passed check makes it healthy; after that it takes
// healthy_threshold passes in a row to come back and unhealthy_threshold
// failures in a row to leave. A cluster whose endpoints are all unhealthy
// balances over all of them (panic mode, see Cluster::pick).
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "remora/net/executor.h"

#include "remora/upstream/cluster_spec.h"
#include "remora/upstream/endpoint.h"

namespace remora::upstream {

// One check's result: passed, or why not ("status 503", "timeout", ...).
struct HealthCheckResult {
  bool passed = false;
  std::string failure;
};

class HealthChecker {
 public:
  explicit HealthChecker(boost::asio::io_context& io) : io_(io) {}
  ~HealthChecker() { stop(); }
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Probes what `clusters` and `endpoints` now say: starts probes for new
  // endpoints (or changed checks), stops those of endpoints that left, and
  // marks the endpoints of clusters without a check healthy.
  void update(const std::vector<std::shared_ptr<const ClusterSpec>>& clusters,
              const EndpointSets& endpoints);
  void stop();

 private:
  struct Probe;
  boost::asio::io_context& io_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Probe>> probes_;
};

// One check of one endpoint (exposed for the tests).
net::Awaitable<HealthCheckResult> check_once(const ClusterSpec& cluster,
                                             const HealthCheckSpec& check,
                                             const net::Endpoint& endpoint);

}  // namespace remora::upstream
