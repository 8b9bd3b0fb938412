#pragma once
// A cluster as the config describes it (immutable, part of a Snapshot).
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "remora/net/address.h"
#include "remora/policy/circuit_breaker.h"
#include "remora/policy/outlier_detector.h"

namespace remora::observe {
struct ClusterSeries;
}

namespace remora::upstream {

enum class LbPolicy { kRoundRobin, kLeastRequest, kRandom, kRingHash, kMaglev };

// What ring_hash and maglev hash: a request header's value, or the client's address.
struct LbHashKey {
  std::string header;  // lower case; empty = the client address
};

// Active health checking of each endpoint (one checker per proxy, on the main thread).
struct HealthCheckSpec {
  std::string path;  // HTTP GET (HTTP/1.1, or h2c on an http2 cluster)
  bool grpc = false;  // grpc.health.v1.Health/Check over h2c instead
  std::string grpc_service;
  std::chrono::milliseconds interval{5000};
  std::chrono::milliseconds timeout{1000};
  std::chrono::milliseconds jitter{0};
  uint32_t healthy_threshold = 2;
  uint32_t unhealthy_threshold = 3;
  std::vector<unsigned> expected_statuses{200};
  bool operator==(const HealthCheckSpec&) const = default;
};

struct ClusterSpec {
  std::string name;
  LbPolicy lb = LbPolicy::kRoundRobin;
  bool http2 = false;  // multiplexed h2c to the endpoints (else HTTP/1.1 keep-alive)
  template <class Address>
  struct Weighted {
    Address address;
    uint32_t weight = 1;  // share of traffic relative to the other endpoints
  };
  std::vector<Weighted<net::Endpoint>> static_endpoints;
  std::vector<Weighted<net::DnsName>> dns_names;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds dns_refresh{5000};
  std::chrono::milliseconds pool_idle_timeout{60000};
  size_t pool_max_idle = 64;
  std::chrono::milliseconds keepalive_interval{30000};  // h2: PING after this much silence
  std::chrono::milliseconds keepalive_timeout{10000};   // h2: no PING ACK by then → close
  LbHashKey hash_key;
  observe::ClusterSeries* stats = nullptr;
  std::shared_ptr<policy::CircuitBreaker> breaker;  // shared by all workers and reloads
  std::shared_ptr<policy::OutlierDetector> outlier;  // null when disabled
  std::optional<HealthCheckSpec> health_check;
};

}  // namespace remora::upstream
