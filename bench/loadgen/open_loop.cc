// open_loop: a constant-rate HTTP/1.1 load generator whose latencies are
// corrected for coordinated omission (as wrk2 and Nighthawk do).
//
// Request k is *intended* to start at t0 + k / rate, whatever happened to the
// requests before it. Its latency is measured from that intended time, not
// from when a connection was free to send it: when the server stalls, the
// requests that queue up behind the stall are charged the time they waited.
// A closed-loop tool (wrk, h2load) instead waits for an answer before sending
// the next request, so a stall hides most of the samples it should have
// spoiled.
//
// One thread, one io_context, `--connections` keep-alive connections. A
// dispatcher makes requests due on schedule and hands each to an idle
// connection, or queues it while all are busy. Requests due in the warm-up are
// sent but not recorded. After the measured window no new request is made due;
// the ones still queued or in flight get `--drain` seconds, then count as
// timeouts.
//
// Output: one JSON object on stdout: counts, percentiles, and the latency
// histogram as a flat list of (µs, count) pairs.
//
//   open_loop --port 8080 --rate 20000 --duration 5 [--host 127.0.0.1]
//             [--path /] [--connections 64] [--warmup 1] [--drain 2]
//             [--trace FILE]
//
// --trace writes one line per recorded request, "<intended send, µs from the
// schedule's start> <latency µs>", in the order answers came: the way to see
// whether a tail is a stall (a burst of late answers) or steady queueing.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::awaitable;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

namespace {

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string path = "/";
  double rate = 0;
  double duration = 5;
  double warmup = 1;
  double drain = 2;
  int connections = 64;
  std::string trace;  // file for the per-request trace; empty: none
};

struct Stats {
  std::vector<uint32_t> latencies_us;  // measured window only
  std::vector<std::pair<uint32_t, uint32_t>> trace;  // (intended µs, latency µs), if --trace
  uint64_t sent = 0;
  uint64_t completed = 0;
  uint64_t non_2xx = 0;
  uint64_t errors = 0;      // connect / read / write failures (the request is lost)
  uint64_t timeouts = 0;    // still queued or in flight when the drain ended
  uint64_t reconnects = 0;
};

class Generator;

class Connection {
 public:
  Connection(Generator& g, asio::io_context& io)
      : gen_(g), socket_(io), wake_(io, Clock::time_point::max()) {}
  awaitable<void> run();
  void assign(uint64_t k) {
    request_ = k;
    wake_.cancel();
  }
  bool busy() const { return request_.has_value(); }
  void stop() {
    stopped_ = true;
    wake_.cancel();
    boost::system::error_code ec;
    socket_.close(ec);
  }

 private:
  awaitable<bool> connect();
  Generator& gen_;
  tcp::socket socket_;
  asio::steady_timer wake_;
  std::optional<uint64_t> request_;
  boost::beast::flat_buffer buffer_;
  bool stopped_ = false;
};

class Generator {
 public:
  Generator(asio::io_context& io, Options o) : io_(io), opt_(std::move(o)) {
    request_ = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + opt_.host + ":" +
               std::to_string(opt_.port) + "\r\nUser-Agent: remora-bench-open-loop\r\n\r\n";
    period_ = nanoseconds(static_cast<int64_t>(1e9 / opt_.rate));
    total_ = static_cast<uint64_t>(opt_.rate * (opt_.warmup + opt_.duration));
    warm_ = static_cast<uint64_t>(opt_.rate * opt_.warmup);
    stats_.latencies_us.reserve(total_ - warm_ + 16);
    if (!opt_.trace.empty()) stats_.trace.reserve(total_ - warm_ + 16);
  }

  awaitable<void> run() {
    auto ex = co_await asio::this_coro::executor;
    auto addrs = co_await tcp::resolver(ex).async_resolve(opt_.host, std::to_string(opt_.port),
                                                          asio::use_awaitable);
    endpoint_ = *addrs.begin();
    for (int i = 0; i < opt_.connections; ++i)
      conns_.push_back(std::make_unique<Connection>(*this, io_));
    for (auto& c : conns_) asio::co_spawn(ex, c->run(), asio::detached);

    // Let the connections open before the schedule starts.
    asio::steady_timer timer(ex);
    timer.expires_after(std::chrono::milliseconds(200));
    co_await timer.async_wait(asio::use_awaitable);

    t0_ = Clock::now();
    uint64_t next = 0;
    while (next < total_) {
      timer.expires_at(intended(next));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      auto now = Clock::now();
      while (next < total_ && intended(next) <= now) make_due(next++);
    }
    // Drain: wait for the queue and the connections to empty, up to --drain.
    auto deadline = Clock::now() + nanoseconds(static_cast<int64_t>(opt_.drain * 1e9));
    while (Clock::now() < deadline && (in_flight_ > 0 || !queue_.empty())) {
      timer.expires_after(std::chrono::milliseconds(5));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    end_ = Clock::now();
    stats_.timeouts = in_flight_ + queue_.size();
    for (auto& c : conns_) c->stop();
  }

  // Called by a connection that is free: its next request, if one is due.
  std::optional<uint64_t> take() {
    if (queue_.empty()) return std::nullopt;
    auto k = queue_.front();
    queue_.pop_front();
    return k;
  }
  void idle(Connection* c) { idle_.push_back(c); }
  void done(uint64_t k, unsigned status) {
    --in_flight_;
    ++stats_.completed;
    if (status < 200 || status > 299) ++stats_.non_2xx;
    if (k >= warm_) {
      auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - intended(k));
      auto latency =
          static_cast<uint32_t>(std::min<int64_t>(us.count(), std::numeric_limits<uint32_t>::max()));
      stats_.latencies_us.push_back(latency);
      if (!opt_.trace.empty()) {
        auto at = std::chrono::duration_cast<std::chrono::microseconds>(intended(k) - t0_);
        stats_.trace.emplace_back(static_cast<uint32_t>(at.count()), latency);
      }
      last_done_ = Clock::now();
    }
  }
  void failed() {
    --in_flight_;
    ++stats_.errors;
  }
  void sent() { ++stats_.sent; }
  void reconnected() { ++stats_.reconnects; }

  const std::string& request() const { return request_; }
  const tcp::endpoint& endpoint() const { return endpoint_; }
  bool finished() const { return end_ != Clock::time_point{}; }

  // False if the trace was asked for and could not be written.
  bool report() {
    bool traced = opt_.trace.empty() || write_trace();
    auto& v = stats_.latencies_us;
    std::sort(v.begin(), v.end());
    auto pct = [&](double p) -> uint64_t {
      if (v.empty()) return 0;
      size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(v.size()));
      return v[std::min(i, v.size() - 1)];
    };
    // Answers per second over the window, stretched when answers came late.
    double window = std::max(opt_.duration,
                             std::chrono::duration<double>(last_done_ - intended(warm_)).count());
    double mean = 0;
    for (auto x : v) mean += x;
    if (!v.empty()) mean /= static_cast<double>(v.size());
    std::printf(
        "{\"target_rps\":%.1f,\"achieved_rps\":%.1f,\"duration_s\":%.3f,\"connections\":%d,"
        "\"scheduled\":%llu,\"sent\":%llu,\"completed\":%llu,\"recorded\":%zu,"
        "\"non_2xx\":%llu,\"errors\":%llu,\"timeouts\":%llu,\"reconnects\":%llu,"
        "\"p50_us\":%llu,\"p90_us\":%llu,\"p99_us\":%llu,\"p999_us\":%llu,\"max_us\":%llu,"
        "\"mean_us\":%.1f,\"window_s\":%.6f,\"hist\":[",
        opt_.rate, static_cast<double>(v.size()) / window, opt_.duration,
        opt_.connections, static_cast<unsigned long long>(total_),
        static_cast<unsigned long long>(stats_.sent),
        static_cast<unsigned long long>(stats_.completed), v.size(),
        static_cast<unsigned long long>(stats_.non_2xx),
        static_cast<unsigned long long>(stats_.errors),
        static_cast<unsigned long long>(stats_.timeouts),
        static_cast<unsigned long long>(stats_.reconnects),
        static_cast<unsigned long long>(pct(50)), static_cast<unsigned long long>(pct(90)),
        static_cast<unsigned long long>(pct(99)), static_cast<unsigned long long>(pct(99.9)),
        static_cast<unsigned long long>(v.empty() ? 0 : v.back()), mean, window);
    // The latency histogram as (µs, count) pairs, for the harness to merge
    // the slices of one figure.
    const char* sep = "";
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j < v.size() && v[j] == v[i]) ++j;
      std::printf("%s%u,%zu", sep, v[i], j - i);
      sep = ",";
      i = j;
    }
    std::printf("]}\n");
    return traced;
  }

 private:
  bool write_trace() const {
    FILE* f = std::fopen(opt_.trace.c_str(), "w");
    bool ok = f != nullptr;
    if (f) {
      for (auto [at, latency] : stats_.trace) std::fprintf(f, "%u %u\n", at, latency);
      ok = std::fclose(f) == 0;
    }
    if (!ok) std::fprintf(stderr, "open_loop: cannot write %s\n", opt_.trace.c_str());
    return ok;
  }

  Clock::time_point intended(uint64_t k) const { return t0_ + period_ * static_cast<int64_t>(k); }

  void make_due(uint64_t k) {
    ++in_flight_;
    while (!idle_.empty()) {
      auto* c = idle_.front();
      idle_.pop_front();
      if (!c->busy()) {
        c->assign(k);
        return;
      }
    }
    queue_.push_back(k);
  }

  asio::io_context& io_;
  Options opt_;
  std::string request_;
  tcp::endpoint endpoint_;
  nanoseconds period_{};
  uint64_t total_ = 0;
  uint64_t warm_ = 0;
  Clock::time_point t0_{};
  Clock::time_point end_{};
  Clock::time_point last_done_{};  // last answer of the measured window
  std::vector<std::unique_ptr<Connection>> conns_;
  std::deque<Connection*> idle_;
  std::deque<uint64_t> queue_;
  uint64_t in_flight_ = 0;  // due and not yet answered (queued or on a connection)

 public:
  Stats stats_;
};

awaitable<bool> Connection::connect() {
  boost::system::error_code ec;
  socket_.close(ec);
  socket_ = tcp::socket(co_await asio::this_coro::executor);
  auto [cec] = co_await socket_.async_connect(gen_.endpoint(), asio::as_tuple(asio::use_awaitable));
  if (cec) co_return false;
  socket_.set_option(tcp::no_delay(true), ec);
  buffer_.clear();
  co_return true;
}

awaitable<void> Connection::run() {
  bool connected = co_await connect();
  while (!stopped_) {
    if (!request_) {
      if (auto k = gen_.take()) {
        request_ = *k;
      } else {
        gen_.idle(this);
        wake_.expires_at(Clock::time_point::max());
        co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
    }
    if (stopped_) break;
    if (!connected) {
      connected = co_await connect();
      gen_.reconnected();
      if (!connected) {
        gen_.failed();
        request_.reset();
        // Back off a little so a dead server does not spin the loop.
        asio::steady_timer t(socket_.get_executor(), std::chrono::milliseconds(10));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
    }
    auto k = *request_;
    gen_.sent();
    auto [wec, wn] = co_await asio::async_write(socket_, asio::buffer(gen_.request()),
                                                asio::as_tuple(asio::use_awaitable));
    if (wec) {
      if (!stopped_) gen_.failed();
      request_.reset();
      connected = false;
      continue;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    auto [rec, rn] =
        co_await http::async_read(socket_, buffer_, parser, asio::as_tuple(asio::use_awaitable));
    if (rec) {
      if (!stopped_) gen_.failed();
      request_.reset();
      connected = false;
      continue;
    }
    request_.reset();
    gen_.done(k, parser.get().result_int());
    if (!parser.keep_alive()) connected = false;
  }
}

double number(const char* s) { return std::strtod(s, nullptr); }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    const char* v = argv[i + 1];
    if (a == "--host") o.host = v;
    else if (a == "--port") o.port = static_cast<unsigned short>(number(v));
    else if (a == "--path") o.path = v;
    else if (a == "--rate") o.rate = number(v);
    else if (a == "--duration") o.duration = number(v);
    else if (a == "--warmup") o.warmup = number(v);
    else if (a == "--drain") o.drain = number(v);
    else if (a == "--connections") o.connections = static_cast<int>(number(v));
    else if (a == "--trace") o.trace = v;
    else {
      std::fprintf(stderr, "open_loop: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.port == 0 || o.rate <= 0 || o.duration <= 0 || o.connections <= 0) {
    std::fprintf(stderr,
                 "usage: open_loop --port P --rate RPS --duration S [--host H] [--path /]\n"
                 "                 [--connections 64] [--warmup 1] [--drain 2] [--trace FILE]\n");
    return 2;
  }
  asio::io_context io(1);
  Generator gen(io, o);
  asio::co_spawn(io, gen.run(), [&](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "open_loop: %s\n", ex.what());
        std::exit(1);
      }
    }
    io.stop();
  });
  io.run();
  return gen.report() ? 0 : 1;
}
