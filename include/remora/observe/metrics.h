#pragma once
// Process-wide metrics. Series are created when a config snapshot is compiled
// (main thread) and handed to the request path as stable pointers; the request
// path only does relaxed atomic adds, never a lookup or a lock. prometheus-cpp
// is used for the exposition format at scrape time (its own Histogram takes a
// mutex per observation, which the request path must not).
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

namespace remora::policy {
class CircuitBreaker;
}

namespace remora::observe {

class Counter {
 public:
  void add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void add(int64_t n) { value_.fetch_add(n, std::memory_order_relaxed); }
  void set(int64_t n) { value_.store(n, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Request durations in seconds, Prometheus' default-like buckets.
class DurationHistogram {
 public:
  static constexpr std::array<double, 12> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
  void observe(double seconds);
  // Non-cumulative counts per bucket, the last one being +Inf.
  std::array<uint64_t, kBounds.size() + 1> bucket_counts() const;
  uint64_t count() const { return count_.value(); }
  double sum_seconds() const { return static_cast<double>(sum_us_.value()) / 1e6; }

 private:
  std::array<Counter, kBounds.size() + 1> buckets_;
  Counter count_;
  Counter sum_us_;
};

// The downstream protocol a request came in on.
enum class Protocol : uint8_t { kHttp1, kHttp2 };
inline constexpr std::array<std::string_view, 2> kProtocolNames = {"http1", "http2"};

// gRPC status codes 0 (OK) .. 16 (UNAUTHENTICATED); anything else counts as 2 (UNKNOWN).
inline constexpr size_t kGrpcStatuses = 17;

// Requests of one (listener, route, cluster), by downstream protocol and
// status class 1xx..5xx; gRPC calls also by grpc-status.
struct RequestSeries {
  std::array<std::array<Counter, 5>, kProtocolNames.size()> by_status_class;
  std::array<Counter, kGrpcStatuses> by_grpc_status;
  void count_status(Protocol protocol, unsigned status) {
    if (status >= 100 && status < 600)
      by_status_class[static_cast<size_t>(protocol)][status / 100 - 1].add();
  }
  void count_grpc_status(unsigned code) { by_grpc_status[code < kGrpcStatuses ? code : 2].add(); }
};

// HTTP/2 abuse defences and timeouts, each counted when it ends a stream or
// a connection (DESIGN §6).
enum class H2Defence : uint8_t {
  kInvalidPreface,
  kFlood,  // SETTINGS / PING / RST ack floods (nghttp2's outbound-queue limits)
  kContinuationFlood,
  kEmptyFrameFlood,
  kRapidReset,
  kTooManyStreams,
  kHeaderViolation,  // malformed pseudo-headers, connection-specific fields: stream error
  kHeaderTooLarge,
  kProtocolError,  // any other connection error
  kStreamIdleTimeout,
  kIdleTimeout,
};
inline constexpr std::array<std::string_view, 11> kH2DefenceNames = {
    "invalid_preface", "flood",          "continuation_flood", "empty_frame_flood",
    "rapid_reset",     "too_many_streams", "header_violation", "header_too_large",
    "protocol_error",  "stream_idle_timeout", "idle_timeout"};

struct ListenerSeries {
  Gauge active_connections;
  std::map<std::string, Counter, std::less<>> rejected;  // reason → count; keys fixed at creation
  Counter& rejected_for(std::string_view reason);
  std::array<Counter, kH2DefenceNames.size()> h2_defences;
  void count(H2Defence defence) { h2_defences[static_cast<size_t>(defence)].add(); }
};

struct ClusterSeries {
  Gauge active_connections;
  Counter connect_failures;
  Counter refused_stream_retries;  // h2 streams the upstream refused, sent again
  Counter circuit_open;            // requests refused by the breaker
  Counter ejections;               // outlier detection took an endpoint out
  Counter panic_picks;             // requests balanced over all: none was usable
  Counter health_checks_passed;
  Counter health_checks_failed;
  // Endpoints by state, set by the main thread just before each scrape.
  Gauge endpoints_available;
  Gauge endpoints_unhealthy;  // failing active health checks
  Gauge endpoints_ejected;    // healthy, but ejected by outlier detection
  Gauge panic;                // 1 when none is available: balanced over all
  const policy::CircuitBreaker* breaker = nullptr;  // its occupancy is exported
};

// What a route's policies did, per (listener, route).
struct RouteSeries {
  Counter rate_limited;
  Counter fault_delays;
  Counter fault_aborts;
  Counter retries;                 // tries after the first
  Counter retry_budget_exhausted;  // retries the budget refused
  Counter retry_overflow;          // retries the cluster breaker's max_retries refused
};

class Metrics {
 public:
  Metrics();
  // Stable for the life of the process; same labels → same series, so that
  // counters survive config reloads. Main thread only.
  RequestSeries& requests(const std::string& listener, const std::string& route,
                          const std::string& cluster);
  DurationHistogram& duration(const std::string& listener, const std::string& route);
  ListenerSeries& listener(const std::string& name);
  ClusterSeries& cluster(const std::string& name);
  RouteSeries& route(const std::string& listener, const std::string& route);

  Counter reloads_ok;
  Counter reloads_failed;

  // Prometheus text exposition of everything.
  std::string render() const;

 private:
  mutable std::mutex mutex_;  // guards the maps' structure (creation vs scrape), never the request path
  std::map<std::tuple<std::string, std::string, std::string>, std::unique_ptr<RequestSeries>>
      requests_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<DurationHistogram>> durations_;
  std::map<std::string, std::unique_ptr<ListenerSeries>> listeners_;
  std::map<std::string, std::unique_ptr<ClusterSeries>> clusters_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<RouteSeries>> routes_;
};

// The fixed set of reasons a downstream request can be refused for.
inline constexpr std::array<std::string_view, 6> kRejectReasons = {
    "bad_request", "request_header_too_large", "uri_too_long",
    "request_timeout", "overloaded", "upgrade_refused"};

}  // namespace remora::observe
