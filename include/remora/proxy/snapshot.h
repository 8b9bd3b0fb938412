#pragma once
// The compiled, immutable form of a config: what the request path reads.
// Built on the main thread, shared with every worker by shared_ptr; a request
// keeps the snapshot it started with, so a reload never changes it mid-way.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "remora/config/diagnostic.h"
#include "remora/config/v1/config.pb.h"
#include "remora/net/address.h"
#include "remora/router/route_table.h"
#include "remora/upstream/cluster_spec.h"

namespace remora::observe {
class AccessLog;
class Metrics;
struct ListenerSeries;
struct RequestSeries;
}  // namespace remora::observe

namespace remora::policy {
class Registry;
}

namespace remora::proxy {

struct ListenerLimits {
  size_t max_header_bytes = 60 * 1024;
  size_t max_headers = 100;
  size_t max_target_bytes = 16 * 1024;
  std::chrono::milliseconds header_read_timeout{10'000};
  std::chrono::milliseconds idle_timeout{3'600'000};
  std::chrono::milliseconds stream_idle_timeout{300'000};
  uint32_t max_concurrent_streams = 100;
  uint32_t stream_reset_burst = 1000;
  uint32_t stream_resets_per_second = 33;
  size_t max_connections = 10'000;
};

enum class ListenerProtocol { kAuto, kHttp1, kHttp2 };

struct ListenerSpec {
  std::string name;
  ListenerProtocol protocol = ListenerProtocol::kAuto;
  net::Endpoint address;
  size_t route_table = 0;  // index into Snapshot::route_tables
  ListenerLimits limits;
  observe::ListenerSeries* stats = nullptr;
  observe::RequestSeries* unrouted = nullptr;  // requests no route matched
};

struct AccessLogSpec {
  std::string path;  // empty: off
  bool json = false;
};

struct Snapshot {
  std::shared_ptr<const config::v1::Config> config;
  unsigned workers = 1;
  std::vector<ListenerSpec> listeners;
  std::vector<router::RouteTable> route_tables;
  std::vector<std::shared_ptr<const upstream::ClusterSpec>> clusters;
  net::Endpoint admin_address;
  std::chrono::milliseconds drain_timeout{15'000};
  size_t max_connections = 50'000;
  AccessLogSpec access_log;
  std::shared_ptr<observe::AccessLog> access_log_sink;  // set by the server; null: off
  std::string log_level = "info";
};

struct CompileResult {
  std::shared_ptr<Snapshot> snapshot;  // null when errors is not empty
  std::vector<config::Diagnostic> errors;
};

// `config` must have passed config::validate(). Metrics series and shared
// policy state (rate limits, breakers) are created, or found again on
// reload, here, off the request path. Without `policies` the state is fresh.
CompileResult compile_snapshot(std::shared_ptr<const config::v1::Config> config,
                               observe::Metrics& metrics, policy::Registry* policies = nullptr);

}  // namespace remora::proxy
