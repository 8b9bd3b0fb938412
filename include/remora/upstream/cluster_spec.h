#pragma once
// A cluster as the config describes it (immutable, part of a Snapshot).
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "remora/net/address.h"
#include "remora/policy/circuit_breaker.h"

namespace remora::observe {
struct ClusterSeries;
}

namespace remora::upstream {

enum class LbPolicy { kRoundRobin, kLeastRequest, kRandom, kRingHash, kMaglev };

struct ClusterSpec {
  std::string name;
  LbPolicy lb = LbPolicy::kRoundRobin;
  bool http2 = false;  // multiplexed h2c to the endpoints (else HTTP/1.1 keep-alive)
  std::vector<net::Endpoint> static_endpoints;
  std::vector<net::DnsName> dns_names;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds dns_refresh{5000};
  std::chrono::milliseconds pool_idle_timeout{60000};
  size_t pool_max_idle = 64;
  std::chrono::milliseconds keepalive_interval{30000};  // h2: PING after this much silence
  std::chrono::milliseconds keepalive_timeout{10000};   // h2: no PING ACK by then → close
  observe::ClusterSeries* stats = nullptr;
  std::shared_ptr<policy::CircuitBreaker> breaker;  // shared by all workers and reloads
};

}  // namespace remora::upstream
