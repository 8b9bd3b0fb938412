#include "remora/proxy/downstream.h"
#include "remora/proxy/grpc.h"
#include "remora/proxy/h2_translate.h"
#include "remora/proxy/request_id.h"
#include "remora/proxy/admission.h"
#include "remora/proxy/signal.h"
#include "remora/upstream/h2_client.h"

#include <array>
#include <cassert>
#include <chrono>
#include <optional>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/status.hpp>

#include "remora/http/h1/head_parser.h"
#include "remora/http/h1/head_writer.h"
#include "remora/http/h1/request_checks.h"
#include "remora/http/local_reply.h"
#include "remora/net/buffer_recycler.h"
#include "remora/net/receive_now.h"
#include "remora/net/splice_pipe.h"
#include "remora/observe/access_log.h"
#include "remora/observe/metrics.h"
#include "remora/proxy/worker_context.h"

namespace remora::proxy {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using net::Awaitable;
using Clock = std::chrono::steady_clock;
using http::LocalReason;
using namespace std::string_view_literals;  // appended literals need no strlen

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kIdleRead = 2 * 1024;  // the first read of a request (see next_head_step)
constexpr size_t kLargeBodyChunk = 64 * 1024;
// A Content-Length body with at least this much still to come, between two
// plain TCP sockets, is spliced (see splice_body).
constexpr uint64_t kSpliceFrom = 256 * 1024;
constexpr size_t kMaxResponseHead = 64 * 1024;

using net::nothrow;

std::string_view text(const net::ReadBuffer& b) {
  return {static_cast<const char*>(b.data().data()), b.size()};
}

// How much to read next: fill the recycled 16 KiB block when the buffer fits
// in it, so that a partial chunk header left over does not grow the buffer.
// 0 when the buffer is at its limit.
size_t next_read_size(const net::ReadBuffer& b) {
  size_t room = b.max_size() - b.size();
  size_t want = b.size() < kReadChunk ? kReadChunk - b.size() : kReadChunk;
  return std::min(room, want);
}

// Where the head in `data` ends (just past its blank line), or npos.
// `scanned` remembers how far earlier calls looked, so a head arriving in many
// small reads is not searched again from the start each time.
size_t find_head_end(std::string_view data, size_t& scanned) {
  auto at = data.find("\r\n\r\n", scanned < 3 ? 0 : scanned - 3);
  scanned = data.size();
  return at == std::string_view::npos ? at : at + 4;
}

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Which clock a connection is currently racing against.
enum class Deadline { kNone, kIdle, kHeader, kConnect, kRoute, kStreamIdle, kLinger };

enum class Relay { kDone, kBadFraming, kSourceFailed, kSinkFailed, kTimedOut };

// Request body bytes kept as sent, for a retry: up to `limit`, else none.
struct Replay {
  size_t limit = 0;
  std::string bytes;
  bool overflow = false;
};

// `head` (ending in its blank line) with `x-remora-attempt: n` as its last
// field, built in `scratch`.
std::string_view with_attempt_header(std::string_view head, unsigned n, std::string& scratch) {
  scratch.assign(head.substr(0, head.size() - 2));
  scratch.append("x-remora-attempt: ").append(std::to_string(n)).append("\r\n\r\n");
  return scratch;
}

// The size of a body that is all in `buffer` already, now given to the
// parser: a Content-Length body (or none) that came with its head, as most
// small ones do. nullopt, the parser untouched, when more is to be read.
template <class Parser>
std::optional<size_t> take_buffered_body(Parser& parser, const net::ReadBuffer& buffer) {
  if (parser.is_done()) return 0;
  const auto remaining = parser.content_length_remaining();
  if (!remaining || *remaining > buffer.size()) return std::nullopt;
  const auto size = static_cast<size_t>(*remaining);
  error_code ec;
  [[maybe_unused]] const size_t taken =
      parser.put(asio::const_buffer(buffer.data().data(), size), ec);
  assert(taken == size && !ec && parser.is_done());  // a sized body's bytes are not checked
  return size;
}

// The end of a chunked body: the last chunk, the trailers, the blank line.
std::string chunked_tail(const upstream::Fields& trailers) {
  std::string tail = "0\r\n";
  for (const auto& [n, v] : trailers) http::h1::append_field(tail, n, v);
  tail.append("\r\n"sv);
  return tail;
}

// ClientStream: net::Socket today; an ssl::stream over it when TLS lands.
// Socket-level calls go through lowest_layer(), which both provide.
template <class ClientStream>
class H1Connection final : public DownstreamConnection,
                           public std::enable_shared_from_this<H1Connection<ClientStream>> {
 public:
  H1Connection(ClientStream socket, WorkerContext& worker, std::string listener,
               net::ReadBuffer initial, bool detect_h2)
      : detect_h2_(detect_h2),
        client_(std::move(socket)),
        worker_(worker),
        listener_name_(std::move(listener)),
        in_(std::move(initial)),
        timer_(client_.get_executor()) {
    error_code ec;
    client_.lowest_layer().set_option(tcp::no_delay(true), ec);
    auto peer = client_.lowest_layer().remote_endpoint(ec);
    client_ip_ = ec ? "unknown" : peer.address().to_string();
  }

  Awaitable<void> run();

  void drain() override {
    close_after_ = true;
    if (idle_) {
      error_code ec;
      client_.lowest_layer().cancel(ec);
    }
  }

 private:
  struct RequestInfo;

  // One look at what has been read of a request head: what to do next.
  struct HeadStep {
    enum Next { kRead, kComplete, kRefuse, kHandedToH2 } next;
    size_t read_room = 0;   // kRead
    size_t head_size = 0;   // kComplete
    LocalReason refusal{};  // kRefuse
  };
  http::h1::RequestHeadParser& start_request_head(const ListenerSpec& listener);
  HeadStep next_head_step(http::h1::RequestHeadParser& parser, const ListenerSpec& listener,
                          size_t& scanned);
  // Checks and routes a complete head: a refusal, or the route (null: none
  // matched).
  std::optional<LocalReason> begin_request(const WorkerView& view, const ListenerSpec& listener,
                                           http::h1::RequestHeadParser& parser, size_t head_size,
                                           const router::Route*& route);
  Awaitable<bool> proxy(const WorkerView& view, const ListenerSpec& listener,
                        const router::Route& route, http::h1::RequestHeadParser& request,
                        size_t head_size);
  enum class Connect { kConnected, kFailed, kCircuitOpen };
  Awaitable<Connect> connect(upstream::UpstreamEndpoint& endpoint,
                             const upstream::ClusterSpec& spec);
  template <class Parser, class From, class To>
  Awaitable<Relay> relay(Parser& parser, From& from, net::ReadBuffer& buffer, To& to,
                         std::string_view head, uint64_t& moved, Replay* replay = nullptr);
  // nullopt: no pipe to be had; the caller reads and writes instead.
  template <class Parser>
  Awaitable<std::optional<Relay>> splice_body(Parser& parser, net::Socket& from, net::Socket& to,
                                              uint64_t& moved);
  // A write's outcome as relay() would report it.
  Relay write_outcome(error_code ec) const {
    if (fired_ != Deadline::kNone) return Relay::kTimedOut;
    return ec ? Relay::kSinkFailed : Relay::kDone;
  }
  Awaitable<void> tunnel();
  Awaitable<bool> proxy_h2(const router::Route& route, upstream::Cluster& cluster,
                           http::h1::RequestHeadParser& request, size_t head_size, std::string path,
                           bool expect_continue);
  // `status` replaces the reason's own (a fault abort's).
  Awaitable<void> reply_local(LocalReason reason, bool close, unsigned status = 0);
  Awaitable<void> reject(const ListenerSpec& listener, LocalReason reason);
  Awaitable<void> linger_close();
  void finish_request(unsigned status, std::string_view reason,
                      Clock::time_point end = Clock::now());

  // `now`: the caller's reading of the clock, where it has one that is still
  // current (a reading costs ~20 ns here, and a request takes several).
  void arm(Deadline kind, Clock::duration after, Clock::time_point now = Clock::now());
  void disarm() { deadline_ = Deadline::kNone; }
  void wait_timer();
  void on_timer();
  bool fired(Deadline kind) const { return fired_ == kind; }

  bool detect_h2_;  // until the first bytes tell HTTP/1.1 from the HTTP/2 preface
  ClientStream client_;
  WorkerContext& worker_;
  std::string listener_name_;
  std::string client_ip_;
  net::ReadBuffer in_;
  std::string out_;  // serialized heads; capacity reused
  std::string request_head_;  // the upstream request head, kept for retries
  std::string attempt_head_;  // request_head_ with x-remora-attempt
  http::HeaderList request_fields_;
  http::HeaderList response_fields_;
  std::optional<http::h1::RequestHeadParser> request_parser_;
  std::optional<http::h1::ResponseHeadParser> response_parser_;
  std::unique_ptr<upstream::UpstreamConnection> upstream_;
  std::shared_ptr<upstream::UpstreamEndpoint> endpoint_;
  // An HTTP/2 upstream's wake-up, made once and kept for the requests after
  // (their streams' callbacks hold it too). A notify left over from an
  // earlier request only ends one wait early: every wait re-checks its state.
  std::shared_ptr<Signal> h2_wake_;

  net::Timer timer_;
  Deadline deadline_ = Deadline::kNone;
  Clock::time_point deadline_at_{};
  Clock::time_point last_progress_{};
  Clock::duration stream_idle_{};
  bool timer_waiting_ = false;
  Deadline fired_ = Deadline::kNone;

  bool idle_ = true;
  bool close_after_ = false;

  // The request in flight, for metrics and the access log.
  struct Current {
    Clock::time_point start;
    const ListenerSpec* listener = nullptr;
    const router::Route* route = nullptr;
    observe::RequestSeries* series = nullptr;
    const router::RouteTarget* target = nullptr;
    bool continued = false;  // 100 Continue sent
    std::shared_ptr<observe::AccessLog> log;
    std::string method, authority, path, request_id, upgrade;
    uint64_t bytes_in = 0, bytes_out = 0;
    bool head_method = false;

    // Clears for the next request, keeping the strings' capacity.
    void reset() {
      route = nullptr;
      series = nullptr;
      target = nullptr;
      continued = false;
      log.reset();
      method.clear();
      authority.clear();
      path.clear();
      request_id.clear();
      upgrade.clear();
      bytes_in = bytes_out = 0;
      head_method = false;
    }
  } current_;
};

// ---------------------------------------------------------------- deadlines

template <class ClientStream>
void H1Connection<ClientStream>::arm(Deadline kind, Clock::duration after, Clock::time_point now) {
  deadline_ = kind;
  last_progress_ = now;
  deadline_at_ = now + after;
  stream_idle_ = after;
  // One wait is kept pending; it is only moved when the new deadline is
  // earlier. A later one is picked up when the wait fires (see on_timer).
  if (!timer_waiting_ || deadline_at_ < timer_.expiry()) {
    timer_.expires_at(deadline_at_);
    wait_timer();
  }
}

template <class ClientStream>
void H1Connection<ClientStream>::wait_timer() {
  timer_waiting_ = true;
  timer_.async_wait([self = this->shared_from_this()](error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // moved or cancelled; a newer wait exists
    self->timer_waiting_ = false;
    self->on_timer();
  });
}

template <class ClientStream>
void H1Connection<ClientStream>::on_timer() {
  if (deadline_ == Deadline::kNone) return;
  auto now = Clock::now();
  if (deadline_ == Deadline::kStreamIdle) deadline_at_ = last_progress_ + stream_idle_;
  if (deadline_at_ > now) {
    timer_.expires_at(deadline_at_);
    wait_timer();
    return;
  }
  fired_ = deadline_;
  deadline_ = Deadline::kNone;
  error_code ec;
  client_.lowest_layer().cancel(ec);
  if (upstream_) upstream_->socket.cancel(ec);
}

// ---------------------------------------------------------------- lifecycle

template <class ClientStream>
Awaitable<void> H1Connection<ClientStream>::run() {
  worker_.connections.push_back(*this);
  auto view = worker_.view;
  const ListenerSpec* listener = view->listener(listener_name_);
  observe::ListenerSeries* stats = listener ? listener->stats : nullptr;
  if (stats) stats->active_connections.add(1);
  auto total = open_downstream_connections().fetch_add(1) + 1;

  if (listener &&
      (static_cast<size_t>(total) > view->snapshot->max_connections ||
       static_cast<size_t>(stats->active_connections.value()) > listener->limits.max_connections)) {
    co_await reject(*listener, LocalReason::kOverloaded);
  } else {
    // A request's steps run in this coroutine, not in coroutines of their
    // own: until it is proxied, a request makes no coroutine frame.
    while (listener && !close_after_ && !worker_.draining) {
      // -- the head
      auto& parser = start_request_head(*listener);
      size_t scanned = 0;
      HeadStep step;
      while ((step = next_head_step(parser, *listener, scanned)).next == HeadStep::kRead) {
        error_code ec;
        size_t n = co_await client_.async_read_some(in_.prepare(step.read_room), nothrow(ec));
        if (ec || fired_ != Deadline::kNone) break;
        in_.commit(n);
      }
      if (step.next == HeadStep::kRead && fired(Deadline::kHeader)) {
        step = {.next = HeadStep::kRefuse, .refusal = LocalReason::kRequestTimeout};
      }
      if (step.next == HeadStep::kRefuse) co_await reject(*listener, step.refusal);
      // Else the idle timeout, a drain, the client went away, or HTTP/2 took over.
      if (step.next != HeadStep::kComplete) break;
      idle_ = false;
      disarm();

      // -- checked, routed, proxied
      const router::Route* route = nullptr;
      if (auto refusal = begin_request(*view, *listener, parser, step.head_size, route)) {
        co_await reject(*listener, *refusal);
        break;
      }
      if (!route) {
        const bool go_on = parser.is_done() && parser.keep_alive();
        co_await reply_local(LocalReason::kNoRoute, !go_on);
        finish_request(404, "no_route");
        in_.consume(step.head_size);
        if (!go_on) break;
      } else if (!co_await proxy(*view, *listener, *route, parser, step.head_size)) {
        break;
      }
      view = worker_.view;  // a reload applies from the next request on
      listener = view->listener(listener_name_);
    }
  }

  error_code ec;
  client_.lowest_layer().shutdown(net::Socket::shutdown_both, ec);
  client_.lowest_layer().close(ec);
  upstream_.reset();
  disarm();
  timer_.cancel();
  if (stats) stats->active_connections.add(-1);
  open_downstream_connections().fetch_sub(1);
}

// Reads what the client still sends for a moment before closing, so that the
// reply just written is not destroyed by a TCP reset.
template <class ClientStream>
Awaitable<void> H1Connection<ClientStream>::linger_close() {
  error_code ec;
  client_.lowest_layer().shutdown(net::Socket::shutdown_send, ec);
  arm(Deadline::kLinger, std::chrono::seconds(1));
  std::array<char, 4096> sink;
  for (size_t total = 0; total < 256 * 1024 && !ec;) {
    total += co_await client_.async_read_some(asio::buffer(sink), nothrow(ec));
  }
  disarm();
}

template <class ClientStream>
Awaitable<void> H1Connection<ClientStream>::reply_local(LocalReason reason, bool close,
                                                        unsigned status) {
  auto reply = http::local_reply(reason);
  if (status) {
    reply.status = status;
    reply.status_text = beast::http::obsolete_reason(static_cast<beast::http::status>(status));
  }
  out_.clear();
  http::h1::write_local_reply(out_, reply.status, reply.status_text, reply.reason, close);
  error_code ec;
  co_await asio::async_write(client_, asio::buffer(out_), nothrow(ec));
  current_.bytes_out += out_.size();
  if (close) {
    close_after_ = true;
    if (!ec) co_await linger_close();
  }
}

// A request refused before routing: counted by reason, answered, closed.
template <class ClientStream>
Awaitable<void> H1Connection<ClientStream>::reject(const ListenerSpec& listener,
                                                   LocalReason reason) {
  auto reply = http::local_reply(reason);
  listener.stats->rejected_for(reply.reason).add();
  co_await reply_local(reason, true);
}

// ---------------------------------------------------------------- one request

template <class ClientStream>
http::h1::RequestHeadParser& H1Connection<ClientStream>::start_request_head(
    const ListenerSpec& listener) {
  auto& parser = request_parser_.emplace(request_fields_);
  parser.header_limit(static_cast<std::uint32_t>(listener.limits.max_header_bytes));
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser.eager(false);
  idle_ = in_.size() == 0;
  arm(idle_ ? Deadline::kIdle : Deadline::kHeader,
      idle_ ? listener.limits.idle_timeout : listener.limits.header_read_timeout);
  return parser;
}

template <class ClientStream>
auto H1Connection<ClientStream>::next_head_step(http::h1::RequestHeadParser& parser,
                                                const ListenerSpec& listener, size_t& scanned)
    -> HeadStep {
  const auto& limits = listener.limits;
  if (in_.size() != 0 && detect_h2_) {
    const auto data = text(in_);
    const size_t common = std::min(data.size(), kH2Preface.size());
    if (data.substr(0, common) != kH2Preface.substr(0, common)) {
      detect_h2_ = false;
    } else if (common == kH2Preface.size()) {
      if constexpr (std::is_same_v<ClientStream, net::Socket>) {
        disarm();
        serve_h2(std::move(client_), worker_, listener_name_, std::move(in_));
      }
      return {.next = HeadStep::kHandedToH2};
    }
  }
  if (in_.size() != 0 && !detect_h2_) {
    const auto data = text(in_);
    const size_t end = find_head_end(data, scanned);
    const size_t limit = limits.max_header_bytes;
    if (end == std::string_view::npos ? data.size() > limit : end > limit) {
      auto first_line = data.substr(0, data.find("\r\n"));
      return {.next = HeadStep::kRefuse,
              .refusal = first_line.size() > limits.max_target_bytes
                             ? LocalReason::kUriTooLong
                             : LocalReason::kHeaderTooLarge};
    }
    if (end != std::string_view::npos) {
      // The whole head in one put(): the parser's views then point into in_.
      error_code ec;
      if (parser.put(asio::buffer(data.data(), end), ec) != end || ec)
        return {.next = HeadStep::kRefuse, .refusal = LocalReason::kBadRequest};
      return {.next = HeadStep::kComplete, .head_size = end};
    }
  }
  if (in_.size() != 0 && idle_) {  // the first bytes of a head: the slowloris clock runs
    idle_ = false;
    arm(Deadline::kHeader, limits.header_read_timeout);
  }
  size_t room = next_read_size(in_);
  if (in_.size() == 0) {
    // Between requests only a small buffer is held (a head rarely needs
    // more; it grows to a full block when it does). Reading into it, rather
    // than waiting for readability without one, spares an epoll_ctl per
    // request: Asio re-arms the descriptor for every such wait.
    if (in_.capacity() > kIdleRead) in_.shrink_to_fit();
    room = kIdleRead;
  }
  if (room == 0) return {.next = HeadStep::kRefuse, .refusal = LocalReason::kHeaderTooLarge};
  return {.next = HeadStep::kRead, .read_room = room};
}

template <class ClientStream>
std::optional<LocalReason> H1Connection<ClientStream>::begin_request(
    const WorkerView& view, const ListenerSpec& listener, http::h1::RequestHeadParser& parser,
    size_t head_size, const router::Route*& route) {
  current_.reset();
  current_.start = Clock::now();
  current_.listener = &listener;
  current_.series = listener.unrouted;
  current_.log = view.snapshot->access_log_sink;

  auto head = text(in_).substr(0, head_size);
  if (!http::h1::raw_head_is_clean(head) ||
      !http::h1::framing_is_unambiguous(parser.headers, parser.version))
    return LocalReason::kBadRequest;
  if (parser.target.size() > listener.limits.max_target_bytes) return LocalReason::kUriTooLong;
  if (parser.headers.size() > listener.limits.max_headers) return LocalReason::kHeaderTooLarge;
  if (parser.method == "CONNECT") return LocalReason::kNotImplemented;

  // Origin-form "/path" or absolute-form "http://host/path" (a client that
  // uses remora as its HTTP proxy).
  std::string_view authority;
  std::string_view target = parser.target;
  if (const auto* host = parser.headers.find("host")) authority = host->value;
  if (target.starts_with("http://")) {
    auto rest = target.substr(7);
    auto slash = rest.find('/');
    authority = rest.substr(0, slash);
    target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
  } else if (!target.starts_with("/") && target != "*") {
    return LocalReason::kBadRequest;
  }
  if (current_.log) {
    current_.method.assign(parser.method);
    current_.authority.assign(authority);
    current_.path.assign(target);
    if (const auto* id = parser.headers.find("x-request-id")) current_.request_id.assign(id->value);
  }

  const auto& table = view.snapshot->route_tables[listener.route_table];
  route = table.match({authority, target, parser.headers});
  return std::nullopt;
}

template <class ClientStream>
void H1Connection<ClientStream>::finish_request(unsigned status, std::string_view reason,
                                                Clock::time_point end) {
  auto elapsed = std::chrono::duration<double>(end - current_.start).count();
  if (current_.series) current_.series->count_status(observe::Protocol::kHttp1, status);
  if (current_.route && current_.route->duration) current_.route->duration->observe(elapsed);
  if (current_.log) {
    observe::AccessRecord record;
    record.listener = listener_name_;
    record.route = current_.route ? std::string_view(current_.route->name) : std::string_view();
    record.method = current_.method;
    record.authority = current_.authority;
    record.path = current_.path;
    record.request_id = current_.request_id;
    record.upstream = endpoint_ ? std::string_view(endpoint_->address().text) : std::string_view();
    record.reason = reason;
    record.status = status;
    record.duration_ms = elapsed * 1000;
    record.bytes_in = current_.bytes_in;
    record.bytes_out = current_.bytes_out;
    current_.log->write(record);
  }
}

template <class ClientStream>
auto H1Connection<ClientStream>::connect(upstream::UpstreamEndpoint& endpoint,
                                         const upstream::ClusterSpec& spec) -> Awaitable<Connect> {
  auto slots = upstream::reserve_connection(spec.breaker.get());
  if (!slots.granted) {
    spec.stats->circuit_open.add();
    co_return Connect::kCircuitOpen;
  }
  upstream_ = std::make_unique<upstream::UpstreamConnection>(net::Socket(timer_.get_executor()),
                                                             &spec.stats->active_connections);
  upstream_->slot = std::move(slots.connection);
  arm(Deadline::kConnect, spec.connect_timeout);
  error_code ec;
  co_await upstream_->socket.async_connect(endpoint.address().address, nothrow(ec));
  disarm();
  if (ec || fired_ != Deadline::kNone) {
    upstream_.reset();
    spec.stats->connect_failures.add();
    endpoint.stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
    fired_ = Deadline::kNone;
    co_return Connect::kFailed;
  }
  upstream_->socket.set_option(tcp::no_delay(true), ec);
  co_return Connect::kConnected;
}

template <class ClientStream>
Awaitable<bool> H1Connection<ClientStream>::proxy(const WorkerView& view,
                                                  const ListenerSpec& listener,
                                                  const router::Route& route,
                                                  http::h1::RequestHeadParser& request,
                                                  size_t head_size) {
  current_.route = &route;
  const auto& target =
      route.pick_target(route.targets.size() > 1 ? worker_.random() % route.total_weight : 0);
  current_.series = target.requests;
  current_.target = &target;
  auto& cluster = *view.clusters[target.cluster];
  const auto& spec = cluster.spec();
  const bool keep_alive = request.keep_alive();
  const bool has_body = !request.is_done();

  // The clock is read again only after a co_await: until then the request's
  // start is "now".
  auto now = current_.start;

  // -- the route's policies, then the cluster's breaker (DESIGN §1)
  auto verdict = apply_route_policies(route, request.headers, worker_.random(), now);
  if (verdict.delay.count() > 0) {
    net::Timer pause(timer_.get_executor(), verdict.delay);
    error_code ec;
    co_await pause.async_wait(nothrow(ec));
    now = Clock::now();
  }
  policy::CircuitBreaker::Guard request_slot;
  std::optional<LocalReason> refused;
  if (verdict.rate_limited) {
    refused = LocalReason::kRateLimited;
  } else if (verdict.abort) {
    refused = LocalReason::kFaultAbort;
  } else if (spec.breaker &&
             !(request_slot = spec.breaker->try_acquire(policy::Resource::kRequests))) {
    spec.stats->circuit_open.add();
    refused = LocalReason::kCircuitOpen;
  }
  if (refused) {
    unsigned status = verdict.abort ? route.fault.http_status() : 0;
    co_await reply_local(*refused, has_body || !keep_alive, status);
    auto reply = http::local_reply(*refused);
    finish_request(status ? status : reply.status, reply.reason);
    in_.consume(head_size);
    co_return !has_body && keep_alive;
  }

  endpoint_ = cluster.pick(worker_.random(), balance_key(spec, request.headers, client_ip_));
  if (!endpoint_) {
    co_await reply_local(LocalReason::kNoHealthyEndpoint, has_body || !keep_alive);
    finish_request(503, "no_healthy_endpoint");
    in_.consume(head_size);
    co_return !has_body && keep_alive;
  }

  // -- the upstream request head
  bool expect_continue = false;
  if (const auto* expect = request.headers.find("expect")) {
    if (!http::iequals(expect->value, "100-continue")) {
      co_await reply_local(LocalReason::kExpectationFailed, true);
      finish_request(417, "expectation_failed");
      co_return false;
    }
    expect_continue = has_body;
  }
  current_.upgrade.clear();
  if (const auto* upgrade = request.headers.find("upgrade")) {
    const auto* connection = request.headers.find("connection");
    if (connection && http::list_contains(connection->value, "upgrade") &&
        !http::iequals(upgrade->value, "h2c"))
      current_.upgrade.assign(upgrade->value);
  }
  std::string_view path = request.target;
  if (path.starts_with("http://")) {
    auto slash = path.find('/', 7);
    path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
  }
  std::string_view target_prefix, target_rest = path;
  if (route.rewrite) {
    if (!route.prefix.empty()) {
      target_prefix = route.rewrite_prefix;
      target_rest = path.substr(route.prefix.size());
    } else if (!route.path.empty()) {
      target_prefix = route.rewrite_prefix;
      target_rest = path.substr(route.path.size());
    }
  }
  if (spec.http2) {
    co_return co_await proxy_h2(route, cluster, request, head_size,
                                std::string(target_prefix).append(target_rest), expect_continue);
  }
  char request_id[kRequestIdSize];
  std::string_view new_request_id;
  if (!request.headers.find("x-request-id")) {
    new_request_id = make_request_id(worker_, request_id);
    if (current_.log) current_.request_id.assign(new_request_id);
  }
  out_.clear();
  http::h1::write_request_head(out_, {.method = request.method,
                                      .target_prefix = target_prefix,
                                      .target_rest = target_rest,
                                      .headers = &request.headers,
                                      .mutation = &route.request_headers,
                                      .client_address = client_ip_,
                                      .forwarded_proto = "http",
                                      .new_request_id = new_request_id,
                                      .upgrade = current_.upgrade,
                                      .chunked = request.chunked(),
                                      .drop_expect = expect_continue});
  current_.head_method = request.method == "HEAD";
  const auto timeout = request_timeout(route, request.headers);
  const auto& retry = route.retry;
  const bool retry_method = retry.enabled() && retry.allows_method(request.method);
  const int http_version = request.version;
  in_.consume(head_size);  // the request's views die here; out_ holds what is needed
  request_head_.swap(out_);

  // -- tries: the first, and retries as the route's policy allows (DESIGN §1)
  const auto route_deadline = now + timeout;
  Replay replay;
  replay.limit = retry_method ? retry.buffer_limit : 0;
  policy::CircuitBreaker::Guard retry_slot;
  unsigned retries = 0;
  bool body_sent = false;  // relayed (and kept in `replay`) by an earlier try
  // Another try, if the policy, the budget, the breaker and the clock allow:
  // waits out the backoff (or the upstream's Retry-After) and picks an
  // endpoint other than the one that failed, where there is one.
  auto retry_after = [&](policy::TryOutcome outcome, unsigned status = 0,
                         std::chrono::milliseconds wait_hint = {}) -> Awaitable<bool> {
    if (!retry_method || retries + 1 >= retry.attempts || !retry.retriable(outcome, status))
      co_return false;
    // A body is replayed from what was kept: all of it, or no retry. Before
    // the first try sent any, it still waits in the client socket: any try may.
    if (has_body && body_sent && (!request.is_done() || replay.overflow)) co_return false;
    now = Clock::now();
    auto wait = std::max<Clock::duration>(retry.backoff.delay(retries, worker_.random()),
                                          wait_hint);
    if (now + wait >= route_deadline) co_return false;
    if (!take_retry(route, *current_.target, spec, retry_slot, now)) co_return false;
    ++retries;
    net::Timer pause(timer_.get_executor(), wait);
    error_code ec;
    co_await pause.async_wait(nothrow(ec));
    if (auto other = cluster.pick_other(endpoint_.get(), worker_.random())) endpoint_ = other;
    co_return true;
  };
  if (current_.target->retry_budget) current_.target->retry_budget->record_request(now);

  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) now = Clock::now();  // after a failed try, and any backoff
    upstream::ActiveRequest active(endpoint_->stats());
    upstream_ = endpoint_->acquire(now, spec.pool_idle_timeout);
    const bool reused = upstream_ != nullptr;
    const auto connected = reused ? Connect::kConnected : co_await connect(*endpoint_, spec);
    if (!reused) now = Clock::now();
    if (connected != Connect::kConnected) {
      auto reason = LocalReason::kCircuitOpen;
      if (connected == Connect::kFailed) {
        cluster.record(*endpoint_, policy::Outcome::kGatewayFailure);
        if (co_await retry_after(policy::TryOutcome::kConnectFailure)) continue;
        reason = LocalReason::kUpstreamConnectFailure;
      }
      co_await reply_local(reason, !request.is_done() || !keep_alive);
      const auto reply = http::local_reply(reason);
      finish_request(reply.status, reply.reason);
      co_return request.is_done() && keep_alive;
    }
    if (expect_continue && !current_.continued) {
      current_.continued = true;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      error_code ec;
      co_await asio::async_write(client_, asio::buffer(kContinue), nothrow(ec));
      if (ec) co_return false;
      now = Clock::now();
    }

    // -- the request, head and body, streamed upstream (a retry: replayed)
    std::string_view head = request_head_;
    if (retry.enabled()) head = with_attempt_header(request_head_, retries + 1, attempt_head_);
    arm(Deadline::kStreamIdle, listener.limits.stream_idle_timeout, now);
    Relay sent;
    if (has_body && !body_sent) {
      body_sent = true;
      sent = co_await relay(request, client_, in_, upstream_->socket, head, current_.bytes_in,
                            replay.limit ? &replay : nullptr);
    } else {  // the head alone, or with the body a retry replays: one write
      std::array<asio::const_buffer, 2> parts{asio::buffer(head), asio::buffer(replay.bytes)};
      error_code ec;
      co_await asio::async_write(upstream_->socket, parts, nothrow(ec));
      sent = write_outcome(ec);
    }
    if (sent == Relay::kBadFraming) {
      upstream_.reset();  // the upstream never sees a complete request
      co_await reject(listener, LocalReason::kBadRequest);
      finish_request(400, "bad_request");
      co_return false;
    }
    if (sent == Relay::kSourceFailed || sent == Relay::kTimedOut) {
      upstream_.reset();
      co_return false;  // the client went away or stalled mid-body
    }
    if (sent == Relay::kSinkFailed) {
      upstream_.reset();
      disarm();
      // A pooled connection the upstream closed meanwhile: once more, on a
      // new connection, if nothing of a body was consumed yet.
      if (reused && !has_body && attempt == 0) continue;
      cluster.record(*endpoint_, policy::Outcome::kGatewayFailure);
      if (co_await retry_after(policy::TryOutcome::kReset)) continue;
      co_await reply_local(LocalReason::kUpstreamReset, true);
      finish_request(502, "upstream_reset");
      co_return false;
    }

    // -- the response head
    auto& response = response_parser_.emplace(response_fields_);
    response.header_limit(kMaxResponseHead);
    response.body_limit(std::numeric_limits<std::uint64_t>::max());
    response.eager(false);
    if (current_.head_method) response.skip(true);
    // This try's deadline: per_try_timeout, within what is left of the route's.
    now = Clock::now();
    auto try_deadline = route_deadline;
    if (retry.per_try_timeout.count() > 0)
      try_deadline = std::min(try_deadline, now + retry.per_try_timeout);
    arm(Deadline::kRoute, try_deadline - now, now);
    auto& buffer = upstream_->buffer;
    size_t response_head = 0;
    size_t scanned = 0;
    bool got_any = false;
    std::optional<LocalReason> failure;
    for (;;) {
      const auto data = text(buffer);
      const size_t end = find_head_end(data, scanned);
      if (end == std::string_view::npos ? data.size() > kMaxResponseHead : end > kMaxResponseHead) {
        failure = LocalReason::kBadUpstreamResponse;
        break;
      }
      if (end != std::string_view::npos) {
        error_code ec;
        if (response.put(asio::buffer(data.data(), end), ec) != end || ec) {
          failure = LocalReason::kBadUpstreamResponse;
          break;
        }
        if (response.status >= 100 && response.status < 200 && response.status != 101) {
          buffer.consume(end);  // interim response: remora answered 100-continue itself
          scanned = 0;
          response_parser_.emplace(response_fields_);
          response.header_limit(kMaxResponseHead);
          response.body_limit(std::numeric_limits<std::uint64_t>::max());
          response.eager(false);
          if (current_.head_method) response.skip(true);
          continue;
        }
        response_head = end;
        break;
      }
      error_code ec;
      size_t n = co_await upstream_->socket.async_read_some(buffer.prepare(next_read_size(buffer)),
                                                            nothrow(ec));
      if (fired(Deadline::kRoute)) {
        failure = LocalReason::kUpstreamTimeout;
        break;
      }
      if (ec) {
        failure = LocalReason::kUpstreamReset;
        break;
      }
      got_any = true;
      buffer.commit(n);
    }
    if (failure) {
      upstream_.reset();
      disarm();  // no deadline of this try may fire into the next
      fired_ = Deadline::kNone;
      if (*failure == LocalReason::kUpstreamReset && reused && !has_body && !got_any &&
          attempt == 0)
        continue;  // the pooled connection was closed under us: retry on a fresh one
      const bool per_try = *failure == LocalReason::kUpstreamTimeout && try_deadline < route_deadline;
      // A deadline the client shortened says nothing about the endpoint.
      if (*failure != LocalReason::kUpstreamTimeout || per_try || timeout == route.timeout)
        cluster.record(*endpoint_, policy::Outcome::kGatewayFailure);
      if ((*failure == LocalReason::kUpstreamReset || per_try) &&
          co_await retry_after(per_try ? policy::TryOutcome::kPerTryTimeout
                                       : policy::TryOutcome::kReset))
        continue;
      // The whole request was sent: the client's connection can go on.
      const bool go_on = request.is_done() && keep_alive;
      co_await reply_local(*failure, !go_on);
      finish_request(http::local_reply(*failure).status, http::local_reply(*failure).reason);
      co_return go_on;
    }

    // -- a response the policy retries is dropped, unread, with its connection
    const unsigned status = response.status;
    cluster.record(*endpoint_, policy::outcome_of_status(status));
    if (retry_method && retry.retriable(policy::TryOutcome::kResponse, status)) {
      std::chrono::milliseconds hint{};
      if (const auto* after = response.headers.find("retry-after")) hint = retry_after_value(after->value);
      disarm();
      auto kept = std::move(upstream_);
      if (co_await retry_after(policy::TryOutcome::kResponse, status, hint)) continue;
      upstream_ = std::move(kept);  // no retry after all: this response goes to the client
    }

    // -- the response, head and body, streamed to the client
    const bool switching = status == 101 && !current_.upgrade.empty();
    const bool until_eof = response.need_eof() && !switching;
    const bool close =
        !keep_alive || until_eof || close_after_ || worker_.draining || http_version < 11;
    out_.clear();
    http::h1::write_response_head(
        out_, {.status = status,
               .reason = response.reason,
               .headers = &response.headers,
               .mutation = &route.response_headers,
               .upgrade = switching ? std::string_view(current_.upgrade) : std::string_view(),
               .chunked = response.chunked(),
               .close = close});
    buffer.consume(response_head);
    if (switching) {
      disarm();
      error_code ec;
      co_await asio::async_write(client_, asio::buffer(out_), nothrow(ec));
      finish_request(status, "");
      if (!ec) co_await tunnel();
      upstream_.reset();
      co_return false;
    }
    arm(Deadline::kStreamIdle, listener.limits.stream_idle_timeout);
    Relay received;
    if (const auto body = take_buffered_body(response, buffer)) {  // one write, no relay loop
      std::array<asio::const_buffer, 2> parts{asio::buffer(out_),
                                              asio::buffer(buffer.data().data(), *body)};
      error_code ec;
      co_await asio::async_write(client_, parts, nothrow(ec));
      received = write_outcome(ec);
      buffer.consume(*body);
      current_.bytes_out += *body;
    } else {
      received =
          co_await relay(response, upstream_->socket, buffer, client_, out_, current_.bytes_out);
    }
    disarm();
    if (received != Relay::kDone) {
      upstream_.reset();  // response cut short: the client sees the connection close
      finish_request(status,
                     received == Relay::kSinkFailed ? "downstream_reset" : "upstream_reset");
      co_return false;
    }
    current_.bytes_out += out_.size();
    now = Clock::now();
    if (response.keep_alive() && !until_eof && buffer.size() == 0)
      endpoint_->release(std::move(upstream_), now, spec.pool_max_idle);
    else
      upstream_.reset();
    finish_request(status, "", now);
    co_return !close;
  }
}

// Moves the body the parser stands in from `from` to `to`, with the framing
// as received, after the parser checked it. `head` goes out in the first
// write. Reads only after the previous write completed: backpressure.
template <class ClientStream>
template <class Parser, class From, class To>
Awaitable<Relay> H1Connection<ClientStream>::relay(Parser& parser, From& from,
                                                   net::ReadBuffer& buffer, To& to,
                                                   std::string_view head, uint64_t& moved,
                                                   Replay* replay) {
  error_code ec;
  bool large_body = false;
  bool may_splice = true;
  // A body that fits one read block has mostly arrived with its head (a
  // client writes both at once; the head was read into a small buffer):
  // taken now, head and body leave in one send, which wakes the peer once.
  if (const auto remaining = parser.content_length_remaining();
      !head.empty() && remaining && *remaining > buffer.size() && *remaining <= kReadChunk) {
    error_code ignored;  // a failed read shows again on the next one, below
    const auto missing = static_cast<size_t>(*remaining) - buffer.size();
    buffer.commit(net::receive_now(
        from, buffer.prepare(std::min(missing, buffer.max_size() - buffer.size())), ignored));
  }
  for (;;) {
    size_t used = 0;
    while (!parser.is_done() && used < buffer.size()) {
      size_t n = parser.put(buffer.data() + used, ec);
      if (ec == beast::http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) co_return Relay::kBadFraming;
      if (n == 0) break;
      used += n;
    }
    if (used != 0 || !head.empty()) {
      std::array<asio::const_buffer, 2> parts{asio::buffer(head),
                                              asio::const_buffer(buffer.data().data(), used)};
      co_await asio::async_write(to, parts, nothrow(ec));
      if (fired_ != Deadline::kNone) co_return Relay::kTimedOut;
      if (ec) co_return Relay::kSinkFailed;
      if (replay && !replay->overflow) {
        if (replay->bytes.size() + used > replay->limit) {
          replay->overflow = true;
          replay->bytes.clear();
        } else {
          replay->bytes.append(static_cast<const char*>(buffer.data().data()), used);
        }
      }
      buffer.consume(used);
      moved += used;
      head = {};
      last_progress_ = Clock::now();
    }
    if (parser.is_done()) co_return Relay::kDone;
    if constexpr (std::is_same_v<From, net::Socket> && std::is_same_v<To, net::Socket>) {
      const auto left = parser.content_length_remaining();
      if (may_splice && left && *left >= kSpliceFrom && buffer.size() == 0 &&
          (!replay || replay->overflow)) {
        if (auto spliced = co_await splice_body(parser, from, to, moved)) co_return *spliced;
        may_splice = false;
      }
    }
    // A body that fills its 16 KiB reads is read 64 KiB at a time from then
    // on: a quarter of the syscalls, and bigger segments on the way out.
    size_t room = large_body ? std::min(kLargeBodyChunk, buffer.max_size() - buffer.size())
                             : next_read_size(buffer);
    if (room == 0) co_return Relay::kBadFraming;  // a chunk header longer than any sane one
    size_t n = co_await from.async_read_some(buffer.prepare(room), nothrow(ec));
    large_body = large_body || n == kReadChunk;
    if (fired_ != Deadline::kNone) co_return Relay::kTimedOut;
    if (ec == asio::error::eof) {
      parser.put_eof(ec);
      if (ec) co_return Relay::kSourceFailed;
      continue;
    }
    if (ec) co_return Relay::kSourceFailed;
    buffer.commit(n);
    last_progress_ = Clock::now();
  }
}

// The rest of a large Content-Length body, socket to socket through a pipe:
// the kernel moves the pages, nothing is copied through this process (a
// 1 MiB upload otherwise crosses user space twice). The parser is told of
// the bytes without seeing them (a Content-Length body has nothing to check)
// so that it ends where the body does. Waits only when a side is not ready;
// yields to the worker's other connections after every pipe-full.
template <class ClientStream>
template <class Parser>
Awaitable<std::optional<Relay>> H1Connection<ClientStream>::splice_body(Parser& parser,
                                                                        net::Socket& from,
                                                                        net::Socket& to,
                                                                        uint64_t& moved) {
  // What the parser is given for bytes it does not see; never written, and
  // not const so that it takes no room in the binary (.bss).
  static char unseen[kLargeBodyChunk];
  net::SplicePipe pipe;
  error_code ec;
  from.native_non_blocking(true, ec);  // splice(2) waits on a blocking socket
  if (!ec) to.native_non_blocking(true, ec);
  if (!pipe.ok() || ec) co_return std::nullopt;
  uint64_t left = *parser.content_length_remaining();
  while (left > 0 || pipe.held() > 0) {
    bool source_waits = false, sink_waits = false;
    if (left > 0 && pipe.room() > 0) {
      const size_t n = pipe.fill(from.native_handle(), std::min<uint64_t>(left, pipe.room()), ec);
      if (ec == asio::error::would_block) {
        source_waits = true;
      } else if (ec) {
        co_return Relay::kSourceFailed;  // reset, or closed before the body's end
      }
      left -= n;
      if (n) last_progress_ = Clock::now();
      for (size_t told = 0; told < n;) {
        const size_t piece = std::min(n - told, sizeof unseen);
        if (parser.put(asio::const_buffer(unseen, piece), ec) != piece || ec)
          co_return Relay::kBadFraming;
        told += piece;
      }
    }
    if (pipe.held() > 0) {
      const size_t m = pipe.drain(to.native_handle(), ec);
      if (ec == asio::error::would_block) {
        sink_waits = true;
      } else if (ec) {
        co_return Relay::kSinkFailed;
      }
      moved += m;
      if (m) last_progress_ = Clock::now();
    }
    if (sink_waits) {
      co_await to.async_wait(net::Socket::wait_write, nothrow(ec));
    } else if (source_waits && pipe.held() == 0) {
      co_await from.async_wait(net::Socket::wait_read, nothrow(ec));
    } else {
      co_await asio::post(to.get_executor(), net::use_awaitable);
    }
    if (fired_ != Deadline::kNone) co_return Relay::kTimedOut;
    if (ec) co_return sink_waits ? Relay::kSinkFailed : Relay::kSourceFailed;
  }
  co_return parser.is_done() ? Relay::kDone : Relay::kBadFraming;
}

// HTTP/1.1 client, HTTP/2 upstream: the request body is decoded from its h1
// framing into DATA frames, the response's DATA re-framed as chunks (or
// passed as is under a Content-Length) and its trailers written into the
// last chunk. Each side's buffer stays under 64 KiB: the client is read only
// while the upstream takes bytes, the upstream's window opens only as bytes
// reach the client.
template <class ClientStream>
Awaitable<bool> H1Connection<ClientStream>::proxy_h2(const router::Route& route,
                                                     upstream::Cluster& cluster,
                                                     http::h1::RequestHeadParser& request,
                                                     size_t head_size, std::string path,
                                                     bool expect_continue) {
  constexpr size_t kHighWater = 64 * 1024;
  const auto& spec = cluster.spec();
  const bool keep_alive = request.keep_alive();
  const bool has_body = !request.is_done();
  std::string_view authority;
  if (const auto* host = request.headers.find("host")) authority = host->value;
  if (request.target.starts_with("http://"))
    authority = request.target.substr(7, request.target.find('/', 7) - 7);
  const auto upstream_head = std::make_shared<H2RequestHead>(
      request.method, authority, path, request.headers, route.request_headers, client_ip_, worker_);
  const auto timeout = request_timeout(route, request.headers);
  const auto& retry = route.retry;
  const bool retry_method = retry.enabled() && retry.allows_method(request.method);
  if (retry.enabled()) upstream_head->set_attempt(1);
  current_.head_method = request.method == "HEAD";
  in_.consume(head_size);  // the request's views die here

  // Woken by the stream's callbacks. Its waits end at the route's deadline
  // (or the client's) at the latest.
  if (!h2_wake_) h2_wake_ = std::make_shared<Signal>(timer_.get_executor());
  const auto wake = h2_wake_;
  const auto route_deadline = Clock::now() + timeout;
  auto timed_out = [&] { return Clock::now() >= route_deadline; };

  std::shared_ptr<upstream::H2Client> client;
  std::shared_ptr<upstream::H2ClientStream> up;
  // The last stream may stay in its connection after this coroutine (until
  // the upstream answers its RST_STREAM): its callbacks end here, with `wake`.
  struct CutOff {
    std::shared_ptr<upstream::H2ClientStream>& stream;
    ~CutOff() {
      if (stream) stream->cut_off_callbacks();
    }
  } cut_off{up};
  std::optional<upstream::ActiveRequest> active;
  error_code ec;
  auto give_up = [&] {
    if (up) client->cancel(up->id);
    request.decoded_body = nullptr;
  };
  // The last try's stream, once another try is decided: cancelled on its
  // own connection right away (so it sends nothing more and drops none of
  // the kept bytes while the backoff runs) and its callbacks cut off.
  auto retire_stream = [&] {
    if (!up) return;
    client->cancel(up->id);
    up->cut_off_callbacks();
  };
  // A stream for this try on endpoint_'s `connection`: the request bytes
  // kept by the last try's stream (all sent so far, and what is still to
  // send) move over to it and go out again from the start. None, and why,
  // when it cannot open.
  auto open_stream = [&](upstream::H2ClientFor connection) -> std::optional<LocalReason> {
    if (!connection.client) {
      if (connection.circuit_open) {
        spec.stats->circuit_open.add();
        return LocalReason::kCircuitOpen;
      }
      cluster.record(*endpoint_, policy::Outcome::kGatewayFailure);
      return LocalReason::kUpstreamConnectFailure;
    }
    auto fresh = std::make_shared<upstream::H2ClientStream>();
    // A plain pointer fits in std::function without an allocation; `cut_off`
    // and retire_stream() end these callbacks before `wake` can go.
    fresh->on_event = [signal = wake.get()] { signal->notify(); };
    fresh->on_request_taken = [signal = wake.get()](size_t) { signal->notify(); };
    if (up) {  // the retired stream's kept bytes: it has nothing left to send
      fresh->request_buffer = std::move(up->request_buffer);
      up->request_buffer.clear();
      up->request_sent = 0;
      up->request_done = true;
    }
    fresh->request_done = request.is_done();
    client = std::move(connection.client);
    up = std::move(fresh);
    request.decoded_body = request.is_done() ? nullptr : &up->request_buffer;
    up->request_head = upstream_head;
    if (!client->submit(up, upstream_head->fields(), has_body)) return LocalReason::kUpstreamReset;
    return std::nullopt;
  };
  // Another try, if the policy, the whole request being kept (or none of
  // it read yet), the budget, the breaker and the clock allow: waits out
  // the backoff (or Retry-After), then picks another endpoint if there is one.
  unsigned retries = 0;
  policy::CircuitBreaker::Guard retry_slot;
  auto next_try = [&](policy::TryOutcome outcome, unsigned status = 0, int grpc = -1,
                      std::chrono::milliseconds wait_hint = {}) -> Awaitable<bool> {
    if (!retry_method || retries + 1 >= retry.attempts || !retry.retriable(outcome, status, grpc))
      co_return false;
    // A body is sent again from what the stream kept: all of it, or no
    // retry. Before the first stream opened none of it was read: any try may.
    if (has_body && up && (!request.is_done() || !up->keep_sent)) co_return false;
    if (timed_out()) co_return false;
    auto now = Clock::now();
    auto wait = std::max<Clock::duration>(retry.backoff.delay(retries, worker_.random()), wait_hint);
    if (now + wait >= route_deadline) co_return false;
    if (!take_retry(route, *current_.target, spec, retry_slot, now)) co_return false;
    retire_stream();
    ++retries;
    upstream_head->set_attempt(retries + 1);
    net::Timer pause(timer_.get_executor(), wait);
    co_await pause.async_wait(nothrow(ec));
    ec = {};
    if (auto other = cluster.pick_other(endpoint_.get(), worker_.random())) endpoint_ = other;
    co_return !timed_out();
  };
  if (current_.target->retry_budget) current_.target->retry_budget->record_request(Clock::now());

  // -- tries: the first, and retries as the route's policy allows (DESIGN §1)
  int resends = 0;
  for (;;) {
    active.reset();
    active.emplace(endpoint_->stats());
    upstream::H2ClientFor connection{upstream::usable_h2_client(*endpoint_)};
    if (!connection.client) connection = co_await upstream::h2_client_for(*endpoint_, spec);
    if (auto refused = open_stream(std::move(connection))) {
      if (*refused == LocalReason::kUpstreamConnectFailure &&
          co_await next_try(policy::TryOutcome::kConnectFailure))
        continue;
      give_up();
      const bool body_left = !request.is_done();
      co_await reply_local(*refused, body_left || !keep_alive);
      const auto reply = http::local_reply(*refused);
      finish_request(reply.status, reply.reason);
      co_return !body_left && keep_alive;
    }
    if (expect_continue && !current_.continued) {
      current_.continued = true;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(client_, asio::buffer(kContinue), nothrow(ec));
      if (ec) {
        give_up();
        co_return false;
      }
    }

    // -- request body (a retry's kept bytes go out first); a client that
    // stops sending is cut off after the listener's stream idle timeout
    if (!request.is_done()) arm(Deadline::kStreamIdle, current_.listener->limits.stream_idle_timeout);
    while (!request.is_done() && !timed_out()) {
      if (up->end || up->reset) break;  // answered early (RFC 9113 §8.1) or reset: see below
      if (up->request_buffer.size() - up->request_sent >= kHighWater) {
        co_await wake->wait_until(route_deadline);
        continue;
      }
      size_t used = 0;
      while (!request.is_done() && used < in_.size()) {
        size_t n = request.put(in_.data() + used, ec);
        if (ec == beast::http::error::need_more) {
          ec = {};
          break;
        }
        if (ec || n == 0) break;
        used += n;
      }
      in_.consume(used);
      current_.bytes_in += used;
      up->request_done = request.is_done();
      client->resume(up->id);
      if (ec) {
        disarm();
        give_up();
        co_await reject(*current_.listener, LocalReason::kBadRequest);
        finish_request(400, "bad_request");
        co_return false;
      }
      if (request.is_done()) break;
      const size_t room = next_read_size(in_);
      if (room == 0) {  // a chunk header longer than any sane one fills the buffer
        disarm();
        give_up();
        co_await reject(*current_.listener, LocalReason::kBadRequest);
        finish_request(400, "bad_request");
        co_return false;
      }
      size_t n = co_await client_.async_read_some(in_.prepare(room), nothrow(ec));
      if (ec) {
        disarm();
        give_up();
        co_return false;
      }
      last_progress_ = Clock::now();
      in_.commit(n);
    }
    disarm();
    request.decoded_body = nullptr;  // what an early answer leaves unread is dropped, not kept

    // -- response head, within this try's per_try_timeout from here (the
    // upload is the client's time, not the upstream's)
    const auto try_deadline = retry.per_try_timeout.count() > 0
                                  ? std::min(route_deadline, Clock::now() + retry.per_try_timeout)
                                  : route_deadline;
    while (!up->headers_done && !up->reset && Clock::now() < try_deadline)
      co_await wake->wait_until(try_deadline);
    if (!up->headers_done) {
      const bool expired = timed_out();
      // Refused unprocessed (GOAWAY above it, REFUSED_STREAM): the same
      // request once more on a fresh stream to the same endpoint; not a retry.
      if (up->replayable() && resends < upstream::H2ClientStream::kMaxResends && !expired) {
        ++resends;
        spec.stats->refused_stream_retries.add();
        retire_stream();
        continue;
      }
      const bool per_try_expired =
          !expired && try_deadline < route_deadline && Clock::now() >= try_deadline;
      // A deadline the client shortened says nothing about the endpoint.
      if (!expired || timeout == route.timeout)
        cluster.record(*endpoint_, policy::Outcome::kGatewayFailure);
      if (!expired &&
          co_await next_try(per_try_expired ? policy::TryOutcome::kPerTryTimeout
                                            : policy::TryOutcome::kReset))
        continue;
      give_up();
      auto reason = expired || per_try_expired ? LocalReason::kUpstreamTimeout
                                               : LocalReason::kUpstreamReset;
      const bool go_on = request.is_done() && keep_alive;  // the client's side is whole
      co_await reply_local(reason, !go_on);
      finish_request(http::local_reply(reason).status, http::local_reply(reason).reason);
      co_return go_on;
    }
    const int grpc = up->end ? grpc_status_in(up->headers) : -1;  // trailers-only
    cluster.record(*endpoint_, outlier_outcome(up->status, grpc));
    if (retry_method && retry.retriable(policy::TryOutcome::kResponse, up->status, grpc)) {
      std::chrono::milliseconds hint{};
      for (const auto& [name, value] : up->headers)
        if (name == "retry-after") hint = retry_after_value(value);
      if (co_await next_try(policy::TryOutcome::kResponse, up->status, grpc, hint)) continue;
    }
    break;
  }
  up->keep_sent = false;  // answered: what was kept for a replay can go
  const unsigned status = up->status;
  const bool no_body = current_.head_method || status == 204 || status == 304;
  const bool close = !keep_alive || close_after_ || worker_.draining || request.version < 11;
  // The head straight from the upstream's fields (lower case already:
  // nghttp2 refuses others), less the connection-specific and removed ones.
  out_.clear();
  out_.append("HTTP/1.1 "sv).append(std::to_string(status)).append(" "sv);
  out_.append(beast::http::obsolete_reason(static_cast<beast::http::status>(status)));
  out_.append("\r\n"sv);
  bool has_length = false;
  for (const auto& [n, v] : up->headers) {
    if (stays_behind(n, v, route.response_headers)) continue;
    has_length |= n == "content-length";
    http::h1::append_field(out_, n, v);
  }
  for (const auto& [n, v] : route.response_headers.add) http::h1::append_field(out_, n, v);
  // An HTTP/1.0 client cannot read chunks: its body ends with the connection.
  const bool chunked = !no_body && !has_length && request.version >= 11;
  if (chunked) out_.append("transfer-encoding: chunked\r\n"sv);
  if (close) out_.append("connection: close\r\n"sv);
  out_.append("\r\n"sv);

  // -- response body and trailers, gathered with the head into as few writes
  // as what has arrived allows: a small response is one write.
  std::string_view head = out_;
  std::string piece;
  std::string tail;  // chunked: the last chunk and the trailers
  bool tail_sent = false;
  while (!ec) {
    const bool have_piece = !up->response_buffer.empty();
    if (have_piece) {
      piece.clear();
      piece.swap(up->response_buffer);
    }
    // The tail goes with the rest unless request bytes are left to drop first (below).
    const bool with_tail = chunked && up->end && request.is_done();
    if (with_tail) tail = chunked_tail(h2_response(std::move(up->trailers), {}));
    // A head whose sized body has not begun to arrive waits for it: the DATA
    // frame is nearly always the upstream's next segment, and head and body
    // then reach the client as one segment, not two. (A body of unknown
    // length may be a stream: its head goes at once.)
    const bool hold_head = !head.empty() && has_length && !no_body && !up->end;
    if (have_piece || (!head.empty() && !hold_head) || with_tail) {
      const bool framed = chunked && have_piece;
      char size_line[24];
      const int size_len =
          framed ? std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size()) : 0;
      std::array<asio::const_buffer, 5> parts{
          asio::buffer(head), asio::buffer(size_line, static_cast<size_t>(size_len)),
          asio::buffer(piece.data(), have_piece ? piece.size() : 0),
          asio::buffer("\r\n", framed ? 2 : 0), asio::buffer(tail.data(), with_tail ? tail.size() : 0)};
      co_await asio::async_write(client_, parts, nothrow(ec));
      current_.bytes_out += head.size() + (have_piece ? piece.size() : 0);
      head = {};
      tail_sent = with_tail;
      if (have_piece) client->consume(up->id, piece.size());
      if (with_tail) break;
      continue;
    }
    if (up->end || up->reset || timed_out()) break;
    co_await wake->wait_until(route_deadline);
  }
  // Answered before the whole request: read and drop the rest (bounded in
  // bytes and by the route deadline), so that the client reads its response
  // instead of failing on an upload into a closed connection.
  constexpr uint64_t kMaxDiscard = 4 * 1024 * 1024;
  uint64_t discarded = 0;
  arm(Deadline::kRoute, route_deadline - Clock::now());
  while (!ec && up->end && !request.is_done() && discarded < kMaxDiscard) {
    size_t used = 0;
    while (!request.is_done() && used < in_.size()) {
      size_t n = request.put(in_.data() + used, ec);
      if (ec || n == 0) break;
      used += n;
    }
    if (ec == beast::http::error::need_more) ec = {};
    in_.consume(used);
    discarded += used;
    if (ec || request.is_done()) break;
    const size_t room = next_read_size(in_);
    if (room == 0) {  // the buffer is full of a chunk header: nothing more can be parsed
      ec = beast::http::error::bad_chunk;
      break;
    }
    size_t n = co_await client_.async_read_some(in_.prepare(room), nothrow(ec));
    in_.commit(n);
  }
  disarm();
  if (ec || !up->end) {  // cut short: the client sees the connection close
    give_up();
    finish_request(status, ec ? "downstream_reset" : "upstream_reset");
    co_return false;
  }
  if (chunked && !tail_sent) {
    tail = chunked_tail(h2_response(std::move(up->trailers), {}));
    co_await asio::async_write(client_, asio::buffer(tail), nothrow(ec));
  }
  finish_request(status, "");
  co_return !close && !ec && request.is_done();  // unread request bytes: the connection ends
}

// After a 101: bytes both ways, untouched, until either side closes.
template <class ClientStream>
Awaitable<void> H1Connection<ClientStream>::tunnel() {
  using namespace asio::experimental::awaitable_operators;
  auto pump = [](auto& from, auto& to, net::ReadBuffer& pending) -> Awaitable<void> {
    error_code ec;
    if (pending.size() != 0) {
      co_await asio::async_write(to, pending.data(), nothrow(ec));
      pending.consume(pending.size());
      if (ec) co_return;
    }
    std::array<char, kReadChunk> chunk;
    for (;;) {
      size_t n = co_await from.async_read_some(asio::buffer(chunk), nothrow(ec));
      if (ec) break;
      co_await asio::async_write(to, asio::buffer(chunk.data(), n), nothrow(ec));
      if (ec) break;
    }
    to.lowest_layer().shutdown(net::Socket::shutdown_send, ec);
  };
  co_await (pump(client_, upstream_->socket, in_) &&
            pump(upstream_->socket, client_, upstream_->buffer));
}

}  // namespace

void serve_h1(net::Socket socket, WorkerContext& worker, std::string listener_name,
              net::ReadBuffer initial, bool detect_h2) {
  auto executor = socket.get_executor();
  auto connection = std::make_shared<H1Connection<net::Socket>>(
      std::move(socket), worker, std::move(listener_name), std::move(initial), detect_h2);
  asio::co_spawn(
      executor, [connection]() -> Awaitable<void> { co_await connection->run(); }, asio::detached);
}

}  // namespace remora::proxy
