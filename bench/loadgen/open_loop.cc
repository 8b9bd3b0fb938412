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
// periodic timer ticks once per request period, or once per few periods when
// a period is shorter than `--tick-us` (50 by default). A tick makes due the
// requests whose time has come and writes each to an idle connection, or
// queues it while all are busy; the wait for the tick and in the queue are
// part of the request's latency. Requests due in the warm-up are sent but not
// recorded. After the measured window no new request is made due;
// the ones still queued or in flight get `--drain` seconds, then count as
// timeouts.
//
// Output: one JSON object on stdout: counts, percentiles, and the latency
// histogram as a flat list of (µs, count) pairs.
//
//   open_loop --port 8080 --rate 20000 --duration 5 [--host 127.0.0.1]
//             [--path /] [--connections 64] [--warmup 1] [--drain 2]
//             [--tick-us 50] [--trace FILE]
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
#include <system_error>
#include <utility>
#include <vector>

#include <sys/timerfd.h>

#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>

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
  double tick_us = 50;  // the schedule's clock ticks at most this often
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

// Reads one answer and keeps only its status: a parser that stores no fields
// allocates nothing per answer, so the client spends its CPU on the network.
// Keep-alive is tracked by basic_parser itself.
class AnswerParser : public http::basic_parser<false> {
 public:
  AnswerParser() { body_limit(boost::none); }
  unsigned status() const { return status_; }

 private:
  using string_view = boost::beast::string_view;
  using error_code = boost::beast::error_code;
  void on_request_impl(http::verb, string_view, string_view, int, error_code&) override {}
  void on_response_impl(int code, string_view, int, error_code&) override {
    status_ = static_cast<unsigned>(code);
  }
  void on_field_impl(http::field, string_view, string_view, error_code&) override {}
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  std::size_t on_body_impl(string_view body, error_code&) override { return body.size(); }
  void on_chunk_header_impl(std::uint64_t, string_view, error_code&) override {}
  std::size_t on_chunk_body_impl(std::uint64_t, string_view body, error_code&) override {
    return body.size();
  }
  void on_finish_impl(error_code&) override {}
  unsigned status_ = 0;
};

class Generator;

// One keep-alive connection. Its coroutine only reads answers; requests are
// written synchronously by whoever hands one over (the dispatcher, or the
// connection itself when a queued request waits), so handing a request to an
// idle connection costs one send(2) and no trip through the scheduler.
class Connection {
 public:
  Connection(Generator& g, asio::io_context& io) : gen_(g), socket_(io) {}
  awaitable<void> run();
  bool ready() const { return connected_ && !request_; }
  void send(uint64_t k);
  void stop() {
    stopped_ = true;
    close();
  }

 private:
  awaitable<bool> connect();
  void next_request();
  void close() {
    connected_ = false;
    boost::system::error_code ec;
    socket_.close(ec);
  }
  Generator& gen_;
  tcp::socket socket_;
  std::optional<uint64_t> request_;  // the one in flight
  boost::beast::flat_buffer buffer_;
  bool connected_ = false;
  bool stopped_ = false;
};

class Generator {
 public:
  Generator(asio::io_context& io, Options o) : io_(io), opt_(std::move(o)) {
    request_ = "GET " + opt_.path + " HTTP/1.1\r\nHost: " + opt_.host + ":" +
               std::to_string(opt_.port) + "\r\nUser-Agent: remora-bench-open-loop\r\n\r\n";
    period_ = std::max(nanoseconds(1), nanoseconds(static_cast<int64_t>(1e9 / opt_.rate)));
    auto periods_per_tick = static_cast<int64_t>(opt_.tick_us * 1e3 / period_.count());
    tick_ = period_ * std::max<int64_t>(1, periods_per_tick);
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

    // The schedule's clock: a periodic timerfd. The kernel re-arms it itself;
    // an Asio timer is re-armed from user space at every wake by
    // timerfd_settime(2), which reprograms the (virtual) timer chip: 10-14 %
    // of this client's CPU in profiles at 30k-60k requests/s.
    int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "timerfd_create");
    asio::posix::stream_descriptor ticker(ex, fd);
    t0_ = Clock::now();
    itimerspec spec{};
    spec.it_value = timespec_of(t0_.time_since_epoch());
    spec.it_interval = timespec_of(tick_);
    if (::timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, nullptr) != 0)
      throw std::system_error(errno, std::generic_category(), "timerfd_settime");
    while (next_ < total_) {
      uint64_t expirations = 0;
      co_await ticker.async_read_some(asio::buffer(&expirations, sizeof expirations),
                                      asio::use_awaitable);
      auto now = Clock::now();
      while (next_ < total_ && intended(next_) <= now) make_due(next_++);
    }
    ticker.close();
    // Drain: wait for the queue and the connections to empty, up to --drain.
    auto deadline = Clock::now() + nanoseconds(static_cast<int64_t>(opt_.drain * 1e9));
    while (Clock::now() < deadline && in_flight_ > 0) {
      timer.expires_after(std::chrono::milliseconds(5));
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    stats_.timeouts = in_flight_;  // queued ones included
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
  void unsolicited() { ++stats_.errors; }  // an answer no request asked for
  void sent() { ++stats_.sent; }
  void reconnected() { ++stats_.reconnects; }

  const std::string& request() const { return request_; }
  const tcp::endpoint& endpoint() const { return endpoint_; }
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

  static timespec timespec_of(nanoseconds d) {
    return {static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
  }

  Clock::time_point intended(uint64_t k) const { return t0_ + period_ * static_cast<int64_t>(k); }

  void make_due(uint64_t k) {
    ++in_flight_;
    while (!idle_.empty()) {
      auto* c = idle_.front();
      idle_.pop_front();
      if (c->ready()) {
        c->send(k);
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
  uint64_t next_ = 0;   // the next request to make due
  nanoseconds tick_{};
  Clock::time_point t0_{};
  Clock::time_point last_done_{};  // last answer of the measured window
  std::vector<std::unique_ptr<Connection>> conns_;
  std::deque<Connection*> idle_;
  std::deque<uint64_t> queue_;
  uint64_t in_flight_ = 0;  // due and not yet answered (queued or on a connection)

 public:
  Stats stats_;
};

awaitable<bool> Connection::connect() {
  close();
  socket_ = tcp::socket(co_await asio::this_coro::executor);
  auto [ec] = co_await socket_.async_connect(gen_.endpoint(), asio::as_tuple(asio::use_awaitable));
  if (ec) co_return false;
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  buffer_.clear();
  connected_ = true;
  co_return true;
}

// The request is ~100 bytes on a connection with nothing unsent, so the
// kernel takes it whole: the write does not block.
void Connection::send(uint64_t k) {
  request_ = k;
  gen_.sent();
  boost::system::error_code ec;
  asio::write(socket_, asio::buffer(gen_.request()), ec);
  if (ec) {
    request_.reset();
    gen_.failed();
    close();  // the pending read ends, and run() reconnects
  }
}

void Connection::next_request() {
  if (auto k = gen_.take()) send(*k);
  else gen_.idle(this);
}

awaitable<void> Connection::run() {
  bool first = true;
  while (!stopped_) {
    if (!connected_) {
      if (!first) gen_.reconnected();
      first = false;
      if (!co_await connect()) {
        // Back off a little so a dead server does not spin the loop.
        asio::steady_timer t(socket_.get_executor(), std::chrono::milliseconds(10));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      next_request();
    }
    AnswerParser answer;
    auto [ec, n] =
        co_await http::async_read(socket_, buffer_, answer, asio::as_tuple(asio::use_awaitable));
    if (stopped_) break;
    if (ec || !request_) {
      // A broken connection loses the request in flight; an answer nobody
      // asked for (or a close while idle) is not a request's failure.
      if (request_) {
        request_.reset();
        gen_.failed();
      } else if (!ec) {
        gen_.unsolicited();
      }
      close();
      continue;
    }
    auto k = *request_;
    request_.reset();
    gen_.done(k, answer.status());
    if (!answer.keep_alive()) {
      close();
      continue;
    }
    next_request();
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
    else if (a == "--tick-us") o.tick_us = number(v);
    else {
      std::fprintf(stderr, "open_loop: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (o.port == 0 || o.rate <= 0 || o.duration <= 0 || o.connections <= 0 || o.tick_us < 0) {
    std::fprintf(stderr,
                 "usage: open_loop --port P --rate RPS --duration S [--host H] [--path /]\n"
                 "                 [--connections 64] [--warmup 1] [--drain 2] [--tick-us 50]\n"
                 "                 [--trace FILE]\n");
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
