#include "remora/upstream/health_checker.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "remora/observe/metrics.h"
#include "remora/upstream/h2_client.h"

namespace remora::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

namespace {

using net::nothrow;

bool expected(const HealthCheckSpec& check, unsigned status) {
  return std::find(check.expected_statuses.begin(), check.expected_statuses.end(), status) !=
         check.expected_statuses.end();
}

net::Awaitable<HealthCheckResult> check_http1(const ClusterSpec& cluster,
                                              const HealthCheckSpec& check,
                                              const net::Endpoint& endpoint) {
  namespace http = beast::http;
  beast::basic_stream<tcp, net::Executor> stream(co_await asio::this_coro::executor);
  stream.expires_after(check.timeout);  // the whole check: connect, request, response
  error_code ec;
  co_await stream.async_connect(endpoint, nothrow(ec));
  if (ec) co_return HealthCheckResult{false, "connect: " + ec.message()};
  http::request<http::empty_body> request{http::verb::get, check.path, 11};
  request.set(http::field::host, cluster.name);
  request.set(http::field::user_agent, "remora-health-check");
  request.keep_alive(false);
  co_await http::async_write(stream, request, nothrow(ec));
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> response;
  response.body_limit(64 * 1024);
  if (!ec) co_await http::async_read(stream, buffer, response, nothrow(ec));
  if (ec) co_return HealthCheckResult{false, ec == beast::error::timeout ? "timeout" : ec.message()};
  const unsigned status = response.get().result_int();
  if (!expected(check, status)) co_return HealthCheckResult{false, "status " + std::to_string(status)};
  co_return HealthCheckResult{true, {}};
}

// grpc.health.v1.HealthCheckRequest { string service = 1; } in a gRPC
// message frame (no compression). Two fields, so encoded here rather than
// with generated code.
std::string grpc_health_request(const std::string& service) {
  std::string message;
  if (!service.empty()) {
    message.push_back(0x0a);  // field 1, length-delimited
    for (size_t n = service.size(); ; n >>= 7) {  // varint length
      message.push_back(static_cast<char>((n & 0x7f) | (n > 0x7f ? 0x80 : 0)));
      if (n <= 0x7f) break;
    }
    message += service;
  }
  std::string frame(5, '\0');
  const uint32_t size = static_cast<uint32_t>(message.size());
  for (int i = 0; i < 4; ++i) frame[1 + i] = static_cast<char>(size >> (24 - 8 * i));
  return frame + message;
}

// HealthCheckResponse { ServingStatus status = 1; }: SERVING is 1. Absent
// (an empty message) is UNKNOWN.
int grpc_serving_status(std::string_view body) {
  if (body.size() < 5 || body[0] != 0) return -1;  // no frame, or compressed
  std::string_view message = body.substr(5);
  int status = 0;
  while (message.size() >= 2) {
    const auto tag = static_cast<unsigned char>(message[0]);
    if (tag == 0x08) {
      status = static_cast<unsigned char>(message[1]) & 0x7f;
      message.remove_prefix(2);
    } else {
      break;  // unknown field: the status came first, if at all
    }
  }
  return status;
}

net::Awaitable<HealthCheckResult> check_h2(const ClusterSpec& cluster, const HealthCheckSpec& check,
                                           const net::Endpoint& endpoint) {
  auto executor = co_await asio::this_coro::executor;
  const auto deadline = Clock::now() + check.timeout;
  beast::basic_stream<tcp, net::Executor> connecting(executor);
  connecting.expires_at(deadline);
  error_code ec;
  co_await connecting.async_connect(endpoint, nothrow(ec));
  if (ec)
    co_return HealthCheckResult{false, ec == beast::error::timeout ? "timeout"
                                                                   : "connect: " + ec.message()};
  net::Socket socket = connecting.release_socket();
  socket.set_option(tcp::no_delay(true), ec);
  auto client = std::make_shared<H2Client>(std::move(socket), nullptr,
                                           H2Client::Keepalive{check.timeout, check.timeout});
  net::Timer timer(executor);  // wakes the wait below: a deadline, or a stream event
  if (!client->start()) co_return HealthCheckResult{false, "HTTP/2 session failed to start"};

  Fields request;
  auto stream = std::make_shared<H2ClientStream>();
  if (check.grpc) {
    request = {{":method", "POST"},
               {":scheme", "http"},
               {":authority", cluster.name},
               {":path", "/grpc.health.v1.Health/Check"},
               {"content-type", "application/grpc"},
               {"te", "trailers"},
               {"user-agent", "remora-health-check"}};
    stream->request_buffer = grpc_health_request(check.grpc_service);
  } else {
    request = {{":method", "GET"},
               {":scheme", "http"},
               {":authority", cluster.name},
               {":path", check.path},
               {"user-agent", "remora-health-check"}};
  }
  stream->request_done = true;
  // Callbacks run on this thread while this coroutine is suspended, so a
  // state check followed by a wait cannot miss one.
  stream->on_event = [&timer] { timer.cancel(); };
  HealthCheckResult result{false, "timeout"};
  if (!client->submit(stream, to_nva(request), check.grpc)) {
    result.failure = "HTTP/2 stream refused";
  } else {
    while (!stream->end && !stream->reset && Clock::now() < deadline) {
      timer.expires_at(deadline);
      co_await timer.async_wait(nothrow(ec));
    }
    stream->on_event = nullptr;
    if (stream->reset) {
      result.failure = "stream reset";
    } else if (stream->end) {
      if (!check.grpc) {
        result.passed = expected(check, stream->status);
        if (!result.passed) result.failure = "status " + std::to_string(stream->status);
      } else {
        auto grpc_status = [](const Fields& fields) {
          for (const auto& [name, value] : fields)
            if (name == "grpc-status") return value;
          return std::string();
        };
        auto code = grpc_status(stream->trailers);
        if (const auto* in_head = stream->headers.find("grpc-status"); code.empty() && in_head)
          code.assign(in_head->value);  // trailers-only
        const int serving = grpc_serving_status(stream->response_buffer);
        result.passed = stream->status == 200 && code == "0" && serving == 1;
        if (!result.passed)
          result.failure = code != "0" ? "grpc-status " + (code.empty() ? "missing" : code)
                                       : "serving status " + std::to_string(serving);
      }
    }
  }
  client->close();
  co_return result;
}

}  // namespace

net::Awaitable<HealthCheckResult> check_once(const ClusterSpec& cluster,
                                             const HealthCheckSpec& check,
                                             const net::Endpoint& endpoint) {
  if (check.grpc || cluster.http2) co_return co_await check_h2(cluster, check, endpoint);
  co_return co_await check_http1(cluster, check, endpoint);
}

// One endpoint's probe loop. Stopped by setting `stopped` (its timer is
// cancelled too); the coroutine holds the probe alive until it returns.
struct HealthChecker::Probe {
  std::shared_ptr<const ClusterSpec> cluster;  // updated on reload when the check stays the same
  EndpointAddress endpoint;
  net::Timer timer;
  bool stopped = false;

  Probe(asio::io_context& io, std::shared_ptr<const ClusterSpec> c, EndpointAddress e)
      : cluster(std::move(c)), endpoint(std::move(e)), timer(io) {}

  void record(const HealthCheckResult& result) {
    auto& stats = *endpoint.stats;
    auto& record = stats.health;
    const auto& check = *cluster->health_check;
    const bool first = !record.checked;
    record.checked = true;
    const bool was_healthy = stats.healthy.load(std::memory_order_relaxed);
    if (result.passed) {
      if (cluster->stats) cluster->stats->health_checks_passed.add();
      record.failures = 0;
      ++record.passes;
      if (!was_healthy && (first || record.passes >= check.healthy_threshold)) {
        stats.healthy.store(true, std::memory_order_relaxed);
        spdlog::info("cluster {}: endpoint {} is healthy", cluster->name, endpoint.text);
      }
    } else {
      if (cluster->stats) cluster->stats->health_checks_failed.add();
      record.passes = 0;
      ++record.failures;
      record.last_failure = result.failure;
      if (was_healthy && record.failures >= check.unhealthy_threshold) {
        stats.healthy.store(false, std::memory_order_relaxed);
        spdlog::warn("cluster {}: endpoint {} is unhealthy ({} failed checks, last: {})",
                     cluster->name, endpoint.text, record.failures, result.failure);
      } else if (first) {
        spdlog::warn("cluster {}: endpoint {} failed its first health check: {}", cluster->name,
                     endpoint.text, result.failure);
      }
    }
  }

  static net::Awaitable<void> run(std::shared_ptr<Probe> self) {
    std::minstd_rand random(std::hash<std::string>{}(self->endpoint.text));
    while (!self->stopped) {
      auto cluster = self->cluster;  // the check in force when this one starts
      auto result = co_await check_once(*cluster, *cluster->health_check, self->endpoint.address);
      if (self->stopped) co_return;
      self->record(result);
      const auto& check = *self->cluster->health_check;
      auto wait = check.interval;
      if (check.jitter.count() > 0)
        wait += std::chrono::milliseconds(random() % static_cast<uint64_t>(check.jitter.count()));
      self->timer.expires_after(wait);
      error_code ec;
      co_await self->timer.async_wait(nothrow(ec));
    }
  }
};

void HealthChecker::update(const std::vector<std::shared_ptr<const ClusterSpec>>& clusters,
                           const EndpointSets& endpoints) {
  decltype(probes_) next;
  for (const auto& cluster : clusters) {
    auto set = endpoints.find(cluster->name);
    if (set == endpoints.end()) continue;
    for (const auto& endpoint : set->second) {
      auto& stats = *endpoint.stats;
      if (!cluster->health_check) {
        stats.healthy.store(true, std::memory_order_relaxed);
        stats.health = {};
        continue;
      }
      const std::pair key{cluster->name, endpoint.text};
      if (auto it = probes_.find(key);
          it != probes_.end() && *it->second->cluster->health_check == *cluster->health_check) {
        it->second->cluster = cluster;  // same check: the probe goes on with its rhythm
        next[key] = std::move(it->second);
        probes_.erase(it);
        continue;
      }
      if (!stats.health.checked) stats.healthy.store(false, std::memory_order_relaxed);
      auto probe = std::make_shared<Probe>(io_, cluster, endpoint);
      next[key] = probe;
      asio::co_spawn(io_, Probe::run(probe), asio::detached);
    }
  }
  stop();  // the probes not carried over
  probes_ = std::move(next);
}

void HealthChecker::stop() {
  for (auto& [key, probe] : probes_) {
    probe->stopped = true;
    probe->timer.cancel();
  }
  probes_.clear();
}

}  // namespace remora::upstream
