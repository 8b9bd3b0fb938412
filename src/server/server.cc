#include "remora/server/server.h"

#include <google/protobuf/util/json_util.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <set>

#include "remora/config/loader.h"
#include "remora/observe/access_log.h"
#include "remora/observe/metrics.h"
#include "remora/policy/registry.h"
#include "remora/proxy/downstream.h"
#include "remora/proxy/snapshot.h"
#include "remora/server/admin.h"
#include "remora/server/worker.h"
#include "remora/upstream/health_checker.h"

namespace remora::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Server::Impl {
  std::string config_path;
  asio::io_context io;
  observe::Metrics metrics;
  policy::Registry policies;  // rate limits and breakers, kept across reloads
  std::shared_ptr<const proxy::Snapshot> snapshot;
  std::vector<std::unique_ptr<Worker>> workers;
  std::unique_ptr<AdminServer> admin;
  asio::signal_set signals{io, SIGHUP, SIGTERM, SIGINT};
  EndpointSets endpoints;
  upstream::HealthChecker health_checker{io};
  std::map<std::pair<std::string, std::string>, std::shared_ptr<upstream::EndpointStats>>
      endpoint_stats;
  bool draining = false;
  unsigned dns_generation = 0;

  // ------------------------------------------------------------ config

  // Load, validate and compile the file; log every error. Null on failure.
  std::shared_ptr<proxy::Snapshot> load(const char* what) {
    auto loaded = config::load_file(config_path);
    std::vector<config::Diagnostic> errors = loaded.errors;
    errors.insert(errors.end(), loaded.unsupported.begin(), loaded.unsupported.end());
    std::shared_ptr<proxy::Snapshot> compiled;
    if (errors.empty()) {
      auto result = proxy::compile_snapshot(loaded.config, metrics, &policies);
      errors = result.errors;
      for (auto& e : errors) e.file = config_path;
      compiled = result.snapshot;
    }
    for (const auto& e : errors) spdlog::error("{}: {}", what, e.to_string());
    return compiled;
  }

  void attach_access_log(proxy::Snapshot& next) {
    const auto& spec = next.access_log;
    if (spec.path.empty()) return;
    auto previous = snapshot ? snapshot->access_log_sink : nullptr;
    if (previous && previous->path() == spec.path && previous->json() == spec.json) {
      next.access_log_sink = previous;
      return;
    }
    try {
      next.access_log_sink = std::make_shared<observe::AccessLog>(spec.path, spec.json);
    } catch (const std::exception& e) {
      spdlog::error("access log {}: {}", spec.path, e.what());
    }
  }

  // ------------------------------------------------------------ endpoints

  upstream::EndpointAddress endpoint_address(const std::string& cluster, const net::Endpoint& a,
                                             std::string source, uint32_t weight) {
    auto text = net::to_string(a);
    auto& stats = endpoint_stats[{cluster, text}];
    if (!stats) stats = std::make_shared<upstream::EndpointStats>();
    return {a, text, std::move(source), weight, stats};
  }

  // IPv4 answers when there are any (as most proxies do: "localhost" is then
  // 127.0.0.1 only, where services usually listen), else the IPv6 ones.
  static std::vector<net::Endpoint> prefer_v4(const tcp::resolver::results_type& results) {
    std::vector<net::Endpoint> v4, v6;
    for (const auto& r : results) (r.endpoint().address().is_v4() ? v4 : v6).push_back(r.endpoint());
    return v4.empty() ? v6 : v4;
  }

  // Static endpoints plus the DNS names resolved now (blocking: config time only).
  EndpointSets resolve_all(const proxy::Snapshot& snap) {
    EndpointSets sets;
    tcp::resolver resolver(io);
    for (const auto& cluster : snap.clusters) {
      auto& set = sets[cluster->name];
      for (const auto& [e, weight] : cluster->static_endpoints)
        set.push_back(endpoint_address(cluster->name, e, "static", weight));
      for (const auto& [name, weight] : cluster->dns_names) {
        boost::system::error_code ec;
        auto results = resolver.resolve(name.host, std::to_string(name.port), ec);
        if (ec) spdlog::warn("cluster {}: resolving {}: {}", cluster->name, name.host, ec.message());
        for (const auto& e : prefer_v4(results))
          set.push_back(endpoint_address(
              cluster->name, e, "dns:" + name.host + ":" + std::to_string(name.port), weight));
      }
    }
    return sets;
  }

  // Re-resolves DNS endpoints off the request path, pushing changes to workers.
  asio::awaitable<void> refresh_dns(unsigned generation) {
    asio::steady_timer timer(io);
    tcp::resolver resolver(io);
    while (generation == dns_generation && !draining) {
      auto snap = snapshot;
      std::chrono::milliseconds every{5000};
      for (const auto& c : snap->clusters)
        if (!c->dns_names.empty()) every = std::min(every, c->dns_refresh);
      timer.expires_after(every);
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (generation != dns_generation || draining) co_return;
      EndpointSets changed;
      for (const auto& cluster : snap->clusters) {
        if (cluster->dns_names.empty()) continue;
        std::vector<upstream::EndpointAddress> set;
        for (const auto& [e, weight] : cluster->static_endpoints)
          set.push_back(endpoint_address(cluster->name, e, "static", weight));
        bool failed = false;
        for (const auto& [name, weight] : cluster->dns_names) {
          auto results = co_await resolver.async_resolve(
              name.host, std::to_string(name.port), asio::redirect_error(asio::use_awaitable, ec));
          failed |= static_cast<bool>(ec);
          for (const auto& e : prefer_v4(results))
            set.push_back(endpoint_address(
                cluster->name, e, "dns:" + name.host + ":" + std::to_string(name.port), weight));
        }
        if (failed) continue;  // keep the last good answer rather than empty the cluster
        auto& current = endpoints[cluster->name];
        auto key = [](const auto& v) {
          std::set<std::string> s;
          for (const auto& e : v) s.insert(e.text);
          return s;
        };
        if (key(current) != key(set)) {
          spdlog::info("cluster {}: endpoints changed ({} now)", cluster->name, set.size());
          current = set;
          changed[cluster->name] = set;
        }
      }
      if (!changed.empty()) {
        health_checker.update(snapshot->clusters, endpoints);
        for (auto& w : workers) w->update_endpoints(changed);
      }
    }
  }

  // ------------------------------------------------------------ apply

  // Binds the listeners `next` adds, on every worker. All or nothing.
  bool bind_new_listeners(const proxy::Snapshot& next,
                          std::vector<std::vector<BoundListener>>& bound) {
    bound.clear();
    bound.resize(workers.size());
    for (const auto& l : next.listeners) {
      bool existing = false;
      if (snapshot)
        for (const auto& old : snapshot->listeners)
          existing |= old.name == l.name && old.address == l.address;
      if (existing) continue;
      for (size_t w = 0; w < workers.size(); ++w) {
        boost::system::error_code ec;
        auto listener = workers[w]->bind(l.name, l.address, ec);
        if (ec) {
          spdlog::error("listener {}: cannot listen on {}: {}", l.name, net::to_string(l.address),
                        ec.message());
          bound.clear();
          return false;
        }
        bound[w].push_back(std::move(listener));
      }
    }
    return true;
  }

  bool apply(std::shared_ptr<proxy::Snapshot> next) {
    if (snapshot) {
      if (next->workers != snapshot->workers)
        spdlog::warn("workers: a change takes effect at the next restart");
      if (next->admin_address != snapshot->admin_address)
        spdlog::warn("admin.address: a change takes effect at the next restart");
      next->workers = snapshot->workers;
    }
    std::vector<std::vector<BoundListener>> bound;
    if (!bind_new_listeners(*next, bound)) return false;
    attach_access_log(*next);
    spdlog::set_level(spdlog::level::from_str(next->log_level));
    endpoints = resolve_all(*next);
    snapshot = next;
    // Unchecked endpoints are marked unhealthy before any worker sees them.
    health_checker.update(snapshot->clusters, endpoints);
    for (size_t w = 0; w < workers.size(); ++w)
      workers[w]->apply(snapshot, endpoints, std::move(bound[w]));
    asio::co_spawn(io, refresh_dns(++dns_generation), asio::detached);
    return true;
  }

  void reload() {
    if (draining) {
      spdlog::warn("SIGHUP while draining: ignored");
      return;
    }
    spdlog::info("SIGHUP: reloading {}", config_path);
    auto next = load("reload rejected");
    if (!next || !apply(next)) {
      metrics.reloads_failed.add();
      spdlog::error("reload rejected: the running configuration stays in force");
      return;
    }
    metrics.reloads_ok.add();
    spdlog::info("reload applied");
  }

  // ------------------------------------------------------------ drain

  void drain() {
    if (draining) return;
    draining = true;
    ++dns_generation;
    health_checker.stop();
    spdlog::info("draining: up to {} ms for in-flight requests", snapshot->drain_timeout.count());
    for (auto& w : workers) w->drain();
    auto deadline = Clock::now() + snapshot->drain_timeout;
    asio::co_spawn(
        io,
        [this, deadline]() -> asio::awaitable<void> {
          asio::steady_timer timer(io);
          while (proxy::open_downstream_connections().load() > 0 && Clock::now() < deadline) {
            timer.expires_after(std::chrono::milliseconds(20));
            co_await timer.async_wait(asio::use_awaitable);
          }
          auto left = proxy::open_downstream_connections().load();
          if (left > 0) spdlog::warn("drain timeout: closing {} connections", left);
          else spdlog::info("drained");
          io.stop();
        },
        asio::detached);
  }

  void wait_signals() {
    signals.async_wait([this](boost::system::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) reload();
      else if (draining) io.stop();  // a second SIGTERM: stop now
      else drain();
      wait_signals();
    });
  }

  // ------------------------------------------------------------ admin

  AdminResponse handle_admin(std::string_view path) {
    if (path == "/ready") {
      if (draining) return {503, "text/plain; charset=utf-8", "draining\n"};
      return {200, "text/plain; charset=utf-8", "ready\n"};
    }
    if (path == "/metrics") {
      count_endpoint_states();
      return {200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()};
    }
    if (path == "/config") {
      std::string json;
      google::protobuf::util::JsonPrintOptions options;
      options.add_whitespace = true;
      options.preserve_proto_field_names = true;
      (void)google::protobuf::util::MessageToJsonString(*snapshot->config, &json, options);
      return {200, "application/json", json};
    }
    if (path == "/clusters") return {200, "application/json", clusters_json()};
    return {404, "text/plain; charset=utf-8",
            "not found; try /ready /metrics /config /clusters\n"};
  }

  // The endpoint-state gauges, as of now (ejections end by time alone).
  void count_endpoint_states() {
    const auto now = Clock::now();
    for (const auto& cluster : snapshot->clusters) {
      if (!cluster->stats) continue;
      int64_t available = 0, unhealthy = 0, ejected = 0;
      for (const auto& e : endpoints[cluster->name]) {
        if (!e.stats->healthy.load()) ++unhealthy;
        else if (e.stats->outlier.is_ejected(now)) ++ejected;
        else ++available;
      }
      cluster->stats->endpoints_available.set(available);
      cluster->stats->endpoints_unhealthy.set(unhealthy);
      cluster->stats->endpoints_ejected.set(ejected);
      cluster->stats->panic.set(available == 0 && unhealthy + ejected > 0);
    }
  }

  std::string clusters_json() {
    const auto now = Clock::now();
    std::string out = "{\"clusters\": [";
    bool first_cluster = true;
    for (const auto& cluster : snapshot->clusters) {
      out += first_cluster ? "\n  " : ",\n  ";
      first_cluster = false;
      static constexpr const char* kLb[] = {"round_robin", "least_request", "random", "ring_hash",
                                            "maglev"};
      const auto& set = endpoints[cluster->name];
      bool any_available = false;
      for (const auto& e : set) any_available |= e.stats->available(now);
      out += "{\"name\": \"" + cluster->name + "\", \"lb\": \"" +
             kLb[static_cast<int>(cluster->lb)] + "\", \"health_checked\": " +
             (cluster->health_check ? "true" : "false") + ", \"panic\": " +
             (!any_available && !set.empty() ? "true" : "false") + ", \"endpoints\": [";
      bool first = true;
      for (const auto& e : set) {
        out += first ? "" : ", ";
        first = false;
        const auto& stats = *e.stats;
        const bool healthy = stats.healthy.load();
        const bool ejected = stats.outlier.is_ejected(now);
        const char* state = !healthy ? "unhealthy" : ejected ? "ejected" : "available";
        out += "{\"address\": \"" + e.text + "\", \"source\": \"" + e.source +
               "\", \"weight\": " + std::to_string(e.weight) + ", \"state\": \"" + state + "\", \"healthy\": " + (healthy ? "true" : "false");
        if (cluster->health_check) {
          out += ", \"health_check\": {\"checked\": " +
                 std::string(stats.health.checked ? "true" : "false") +
                 ", \"passes_in_a_row\": " + std::to_string(stats.health.passes) +
                 ", \"failures_in_a_row\": " + std::to_string(stats.health.failures) +
                 ", \"last_failure\": \"" + json_escape(stats.health.last_failure) + "\"}";
        }
        const auto until = stats.outlier.ejected_until();
        out += ", \"ejected\": " + std::string(ejected ? "true" : "false") +
               ", \"times_ejected\": " + std::to_string(stats.outlier.times_ejected());
        if (ejected)
          out += ", \"ejected_for_ms\": " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(until - now)
                                    .count());
        out += ", \"active_requests\": " + std::to_string(stats.active_requests.load()) +
               ", \"requests\": " + std::to_string(stats.requests.load()) +
               ", \"connect_failures\": " + std::to_string(stats.connect_failures.load()) + "}";
      }
      out += "]}";
    }
    out += "\n]}\n";
    return out;
  }

  static std::string json_escape(std::string_view text) {
    std::string out;
    for (char c : text) {
      if (c == '"' || c == '\\') out += '\\';
      if (static_cast<unsigned char>(c) < 0x20) continue;
      out += c;
    }
    return out;
  }

  int run() {
    auto first = load("config");
    if (!first) return 1;
    for (unsigned i = 0; i < first->workers; ++i) workers.push_back(std::make_unique<Worker>(i));
    admin = std::make_unique<AdminServer>(io, [this](std::string_view p) { return handle_admin(p); });
    boost::system::error_code ec;
    admin->listen(first->admin_address, ec);
    if (ec) {
      spdlog::error("admin: cannot listen on {}: {}", net::to_string(first->admin_address),
                    ec.message());
      return 1;
    }
    if (!apply(first)) return 1;
    for (auto& w : workers) w->start();
    wait_signals();
    spdlog::info("remora running: {} workers, {} listeners, admin on {}", workers.size(),
                 snapshot->listeners.size(), net::to_string(snapshot->admin_address));
    io.run();
    for (auto& w : workers) w->stop();
    workers.clear();
    spdlog::info("stopped");
    return 0;
  }
};

Server::Server(std::string config_path) : impl_(std::make_unique<Impl>()) {
  impl_->config_path = std::move(config_path);
  spdlog::set_default_logger(spdlog::stderr_color_mt("remora"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

Server::~Server() = default;

int Server::run() { return impl_->run(); }

}  // namespace remora::server
