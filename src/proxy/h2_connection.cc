// An HTTP/2 downstream connection on nghttp2's session API (sans-I/O: bytes
// in through mem_recv, frames out through mem_send). Each request stream is
// proxied by its own coroutine to an HTTP/1.1 upstream from the worker's
// pools. Flow control follows the upstream: a stream's received DATA is
// acknowledged (nghttp2_session_consume → WINDOW_UPDATE) only after it was
// written upstream, and the upstream is read only while the stream's
// response buffer is below its high-water mark, so a slow peer on one stream
// never stalls another and remora never buffers without bound.
#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/container/flat_map.hpp>

#include "remora/http/byte_arena.h"
#include "remora/http/h1/head_parser.h"
#include "remora/http/h1/head_writer.h"
#include "remora/http/h2_session_memory.h"
#include "remora/http/local_reply.h"
#include "remora/observe/access_log.h"
#include "remora/observe/metrics.h"
#include "remora/proxy/admission.h"
#include "remora/proxy/downstream.h"
#include "remora/proxy/grpc.h"
#include "remora/proxy/h2_translate.h"
#include "remora/proxy/request_id.h"
#include "remora/proxy/signal.h"
#include "remora/proxy/worker_context.h"
#include "remora/upstream/h2_client.h"

namespace remora::proxy {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using net::Awaitable;
using Clock = std::chrono::steady_clock;
using http::LocalReason;

constexpr size_t kReadChunk = net::kRecycledBlock;
constexpr size_t kIdleRead = 2 * 1024;  // a read without an open stream (see run)
constexpr size_t kStreamHighWater = 64 * 1024;  // response bytes queued per stream
constexpr int32_t kStreamWindow = 64 * 1024;
constexpr int32_t kConnectionWindow = 1024 * 1024;
// CVE-2019-9518: DATA frames without payload or END_STREAM cost the peer
// nothing and us a callback each; legitimate clients do not send runs of them.
constexpr uint32_t kMaxConsecutiveEmptyFrames = 10;

using net::nothrow;

struct H2Stream {
  H2Stream(int32_t stream_id, const net::Executor& ex, Clock::time_point now)
      : id(stream_id), last_active(now), wake(ex) {
    fields.reserve(16);  // a typical request head without regrowing per field
  }
  H2Stream(const H2Stream&) = delete;  // views point into its arena
  H2Stream& operator=(const H2Stream&) = delete;

  void touch(Clock::time_point now) { last_active = now; }

  int32_t id;
  // Request head: views into `head_bytes`, where on_header copies what
  // nghttp2 hands over (its buffers do not outlive the callback).
  http::ByteArena head_bytes;
  std::string_view method, path, authority, content_type, request_id;
  http::HeaderList fields;  // regular fields, lower case
  // The cookie crumbs so far, "; "-joined in place (linear, however many
  // crumbs): one field once the head is complete.
  std::string cookie;
  size_t header_bytes = 0;
  bool too_large = false;
  bool has_content_length = false;

  std::string body_in;  // received DATA not yet written upstream
  bool in_end = false;
  std::string body_out;  // upstream response body not yet sent as DATA
  size_t out_sent = 0;
  bool out_end = false;
  bool closed = false;  // reset by the client or closed by nghttp2
  bool reset_by_client = false;
  bool serving = false;   // the head is complete and serve_stream runs
  bool timed_out = false;  // route deadline or stream idle timeout: see timeout_reason
  LocalReason timeout_reason = LocalReason::kUpstreamTimeout;
  // The deadline is the route's own, not one the client shortened: its
  // expiry says something about the endpoint (outlier detection).
  bool route_deadline = true;
  // The current try's per_try_timeout expired. A timer handler sets it only
  // if its try (try_number) is still the current one.
  unsigned try_number = 0;
  bool try_timed_out = false;
  Clock::time_point last_active;  // a frame either way, or upstream progress
  unsigned status = 0;       // the :status sent
  int grpc_status = -1;      // a grpc-status sent in the response head
  std::string_view local_reason;  // x-remora-reason of a local reply
  uint64_t body_acked = 0;   // request bytes acknowledged to the client (WINDOW_UPDATE)
  uint64_t bytes_in = 0, bytes_out = 0;  // DATA payload received / sent
  upstream::Fields trailers_in;              // the client's, after its DATA
  upstream::Fields trailers_out;             // sent after the last DATA (gRPC status)
  std::function<void(size_t)> on_body_sent;  // an h2 upstream opens its window
  H2HeaderBlock response_head;               // the upstream's, translated

  Signal wake;
  // While serve_stream runs: the request's deadline (the connection's
  // timer checks it, with last_active + stream_idle_timeout).
  Clock::time_point deadline = Clock::time_point::max();
  std::unique_ptr<upstream::UpstreamConnection> upstream;
};

// A stream's timeout counts against its endpoint (outlier detection) when
// it is the route's own deadline that ran out, not the stream idle timeout
// or a deadline the client shortened (which any client could set to zero).
bool blames_endpoint(const H2Stream& s) {
  return s.route_deadline && s.timeout_reason == LocalReason::kUpstreamTimeout;
}

class H2Connection final : public DownstreamConnection,
                           public std::enable_shared_from_this<H2Connection> {
 public:
  H2Connection(net::Socket socket, WorkerContext& worker, std::string listener,
               net::ReadBuffer initial)
      : client_(std::move(socket)),
        worker_(worker),
        listener_name_(std::move(listener)),
        in_(std::move(initial)),
        timer_(client_.get_executor()) {
    error_code ec;
    client_.set_option(tcp::no_delay(true), ec);
    auto peer = client_.remote_endpoint(ec);
    client_ip_ = ec ? "unknown" : peer.address().to_string();
  }
  ~H2Connection() override {
    if (session_) nghttp2_session_del(session_);
  }

  Awaitable<void> run();
  void drain() override;

 private:
  bool start_session(const ListenerLimits& limits);
  void flush();
  void write_pending();
  Awaitable<void> serve_stream(std::shared_ptr<H2Stream> stream);
  // `start`: when serve_stream began (the clock's reading until the first co_await).
  Awaitable<bool> exchange(std::shared_ptr<H2Stream> ref, const WorkerView& view,
                           const router::Route& route, http::HeaderList& fields,
                           observe::RequestSeries*& series, std::string& upstream_address,
                           Clock::time_point start);
  Awaitable<bool> exchange_h2(H2Stream& s, std::shared_ptr<H2Stream> ref,
                              upstream::Cluster& cluster,
                              std::shared_ptr<upstream::UpstreamEndpoint> endpoint,
                              const router::RouteTarget& target, const router::Route& route,
                              const http::HeaderList& fields, std::string& upstream_address);
  // `status` / `grpc_status` replace the reason's own (a fault abort's).
  void reply_local(H2Stream& s, LocalReason reason, unsigned status = 0, int grpc_status = -1);
  void count(observe::H2Defence defence) {
    if (stats_) stats_->count(defence);
  }
  // Ends the connection with GOAWAY `code`, counted as `defence`.
  void refuse_connection(observe::H2Defence defence, uint32_t code) {
    count(defence);
    connection_refused_ = true;
    nghttp2_session_terminate_session(session_, code);
    flush();
  }
  void arm_timer(Clock::time_point due);
  void on_timer();
  void deadline_expired(H2Stream& s);
  void stream_idle_expired(H2Stream& s);
  // `nva` starts with :status.
  void submit_response(H2Stream& s, unsigned status, std::span<const nghttp2_nv> nva,
                       bool with_body);
  void submit_response(H2Stream& s, unsigned status, const upstream::Fields& fields,
                       bool with_body);
  void close_streams();
  void start_streams();
  // Records how a stream ended; true when >= 50 % of the last 500 were reset
  // early by the client (rapid reset below nghttp2's rate limit).
  bool note_reset(bool reset) {
    constexpr size_t kWindow = 500;
    if (recent_.size() < kWindow) recent_.resize(kWindow);
    resets_ += reset;
    resets_ -= recent_[next_recent_];
    recent_[next_recent_] = reset;
    next_recent_ = (next_recent_ + 1) % kWindow;
    closed_streams_ += 1;
    return closed_streams_ >= kWindow && resets_ * 2 >= kWindow;
  }

  // nghttp2 callbacks
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t,
                       const uint8_t*, size_t, uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int on_stream_close(nghttp2_session*, int32_t, uint32_t, void*);
  static int on_invalid_frame(nghttp2_session*, const nghttp2_frame*, int, void*);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame*, void*);
  static ssize_t read_body(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*,
                           nghttp2_data_source*, void*);

  net::Socket client_;
  WorkerContext& worker_;
  std::string listener_name_;
  std::string client_ip_;
  net::ReadBuffer in_;
  std::string out_;
  http::H2SessionMemory memory_;  // nghttp2's allocations (outlives session_)
  nghttp2_session* session_ = nullptr;
  bool writing_ = false;
  bool draining_ = false;
  // One timer for the connection's idle timeout and every stream's deadline
  // and idle timeout, armed for the earliest of them (see arm_timer).
  net::Timer timer_;
  Clock::time_point timer_due_ = Clock::time_point::max();
  bool finished_ = false;  // run() is over: the timer stays off
  Clock::time_point idle_since_ = Clock::now();  // when the last open stream closed
  // Read once per nghttp2_session_mem_recv and per write: "now" for the
  // callbacks they run, which touch many streams (a reading costs ~20 ns).
  Clock::time_point session_now_ = Clock::now();
  std::chrono::milliseconds idle_timeout_{3'600'000};
  // Open streams by id: ids only grow, so a new one goes at the end of the
  // sorted array (no node allocation per stream, as a tree map would make).
  boost::container::flat_map<int32_t, std::shared_ptr<H2Stream>> streams_;
  // Request heads completed during the current nghttp2_session_mem_recv:
  // served once it returns (see start_streams).
  std::vector<std::shared_ptr<H2Stream>> starting_;
  observe::ListenerSeries* stats_ = nullptr;
  std::chrono::milliseconds stream_idle_timeout_{300'000};
  size_t max_concurrent_streams_ = 100;
  bool connection_refused_ = false;     // a defence sent GOAWAY (and counted it)
  std::optional<observe::H2Defence> pending_defence_;  // what nghttp2's next GOAWAY is for
  uint32_t empty_frames_ = 0;           // consecutive DATA frames without payload
  std::vector<uint8_t> recent_;  // 1 = that stream was reset early by the client
  size_t next_recent_ = 0, resets_ = 0, closed_streams_ = 0;
};

// ---------------------------------------------------------------- session

bool H2Connection::start_session(const ListenerLimits& limits) {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
  nghttp2_option* option;
  nghttp2_option_new(&option);
  // Windows open as bytes are written upstream, not as they arrive.
  nghttp2_option_set_no_auto_window_update(option, 1);
  // CVE-2023-44487 (rapid reset) and CONTINUATION floods: DESIGN §6 defaults.
  nghttp2_option_set_stream_reset_rate_limit(option, limits.stream_reset_burst,
                                             limits.stream_resets_per_second);
  nghttp2_option_set_max_continuations(option, 8);
  nghttp2_option_set_max_settings(option, 32);
  nghttp2_option_set_max_outbound_ack(option, 1000);
  int rv = nghttp2_session_server_new3(&session_, callbacks, this, option, memory_.mem());
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) return false;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  return true;
}

Awaitable<void> H2Connection::run() {
  // Torn down with its io_context (the worker stopped) instead of ending
  // here: a stream parked on its Signal would keep this connection alive.
  struct AbandonParkedStreams {
    H2Connection& connection;
    ~AbandonParkedStreams() {
      for (auto& [id, stream] : connection.streams_) stream->wake.abandon();
    }
  } abandon_parked{*this};
  worker_.connections.push_back(*this);
  auto view = worker_.view;
  const ListenerSpec* listener = view->listener(listener_name_);
  stats_ = listener ? listener->stats : nullptr;
  if (stats_) stats_->active_connections.add(1);
  open_downstream_connections().fetch_add(1);
  if (listener) {
    idle_timeout_ = listener->limits.idle_timeout;
    stream_idle_timeout_ = listener->limits.stream_idle_timeout;
  }

  if (listener) max_concurrent_streams_ = listener->limits.max_concurrent_streams;
  if (listener && start_session(listener->limits)) {
    flush();
    arm_timer(idle_since_ + idle_timeout_);
    for (;;) {
      if (in_.size() != 0) {
        auto data = static_cast<const uint8_t*>(in_.data().data());
        session_now_ = Clock::now();
        ssize_t used = nghttp2_session_mem_recv(session_, data, in_.size());
        if (used < 0) {  // a connection error: say why (GOAWAY) before closing
          using observe::H2Defence;
          switch (used) {
            case NGHTTP2_ERR_BAD_CLIENT_MAGIC:
              refuse_connection(H2Defence::kInvalidPreface, NGHTTP2_PROTOCOL_ERROR);
              break;
            case NGHTTP2_ERR_FLOODED:
              refuse_connection(H2Defence::kFlood, NGHTTP2_ENHANCE_YOUR_CALM);
              break;
            case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS:
              refuse_connection(H2Defence::kContinuationFlood, NGHTTP2_ENHANCE_YOUR_CALM);
              break;
            default:
              refuse_connection(H2Defence::kProtocolError, NGHTTP2_PROTOCOL_ERROR);
          }
          break;
        }
        in_.consume(static_cast<size_t>(used));
        start_streams();
        flush();
      }
      if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) break;
      if (draining_ && streams_.empty()) break;
      // Without an open stream only a small read buffer is held. Reading
      // rather than waiting for readability without one spares an epoll_ctl
      // per read (Asio re-arms the descriptor for every such wait).
      size_t room = kReadChunk;
      if (streams_.empty()) {
        if (in_.capacity() > kIdleRead) in_.shrink_to_fit();
        room = kIdleRead;
      }
      error_code ec;
      size_t n = co_await client_.async_read_some(in_.prepare(room), nothrow(ec));
      if (ec) break;
      in_.commit(n);
    }
    flush();
  }
  finished_ = true;
  timer_.cancel();  // its handler holds this connection

  close_streams();
  // Let the last frames (GOAWAY) go out before closing.
  for (int i = 0; i < 100 && writing_; ++i) {
    net::Timer pause(client_.get_executor(), std::chrono::milliseconds(10));
    error_code ec;
    co_await pause.async_wait(nothrow(ec));
  }
  error_code ec;
  client_.shutdown(net::Socket::shutdown_both, ec);
  client_.close(ec);
  if (stats_) stats_->active_connections.add(-1);
  open_downstream_connections().fetch_sub(1);
}

void H2Connection::drain() {
  if (draining_ || !session_) return;
  draining_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  flush();
  error_code ec;
  if (streams_.empty()) client_.cancel(ec);
}

void H2Connection::close_streams() {
  for (auto& [id, stream] : streams_) {
    stream->closed = true;
    error_code ec;
    if (stream->upstream) stream->upstream->socket.close(ec);
    stream->wake.notify();
  }
}

// Served after the whole read is processed, not from the callback: a
// RST_STREAM in the same read is seen first, so a rapid-reset flood causes
// no upstream work (serve_stream returns at once for a closed stream).
void H2Connection::start_streams() {
  for (auto& stream : starting_)
    asio::co_spawn(client_.get_executor(), serve_stream(std::move(stream)), asio::detached);
  starting_.clear();
}

// Frames go out from a posted handler, never from inside an nghttp2
// callback (where mem_send must not be called), gathered into one write.
// Plain handlers rather than a coroutine per flush: this runs several times
// per request.
void H2Connection::flush() {
  if (writing_ || !session_) return;
  writing_ = true;
  asio::post(client_.get_executor(), [self = shared_from_this()] { self->write_pending(); });
}

// The frames are sent in place when the socket takes them all, as it nearly
// always does: the responses that become ready while a write's completion
// waits its turn then go out one event-loop pass sooner (h2c GET p99 ~10 %
// lower on the rig, the same system calls and CPU). What is left waits for
// an asynchronous write; more frames than one write takes (a large body)
// wait for the next pass, so that one connection does not hold the loop.
void H2Connection::write_pending() {
  out_.clear();
  session_now_ = Clock::now();
  upstream::take_pending_frames(session_, out_);
  error_code ec;
  if (out_.empty()) {
    writing_ = false;
    // The session is over (its GOAWAY went out): wake the read loop to close.
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_))
      client_.cancel(ec);
    return;
  }
  if (!client_.non_blocking()) client_.non_blocking(true, ec);  // once; async writes ignore it
  const size_t sent = ec ? 0 : client_.write_some(asio::buffer(out_), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
  if (ec) {
    writing_ = false;
    client_.cancel(ec);
    return;
  }
  if (sent == out_.size()) {
    writing_ = false;
    if (nghttp2_session_want_write(session_))
      flush();
    else if (!nghttp2_session_want_read(session_))
      client_.cancel(ec);  // the GOAWAY went out: the read loop closes
    return;
  }
  asio::async_write(client_, asio::buffer(out_) + sent,
                    [self = shared_from_this()](error_code ec, size_t) {
                      if (!ec) return self->write_pending();
                      self->writing_ = false;
                      self->client_.cancel(ec);
                    });
}

// ---------------------------------------------------------------- callbacks

int H2Connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                                   void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (self->draining_) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                              NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  auto stream = std::make_shared<H2Stream>(frame->hd.stream_id, self->client_.get_executor(),
                                           self->session_now_);
  nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, stream.get());
  self->arm_timer(stream->last_active + self->stream_idle_timeout_);
  self->streams_[frame->hd.stream_id] = std::move(stream);
  return 0;
}

int H2Connection::on_header(nghttp2_session* session, const nghttp2_frame* frame,
                            const uint8_t* name_bytes, size_t name_len, const uint8_t* value_bytes,
                            size_t value_len, uint8_t, void*) {
  auto* stream =
      static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
  if (!stream) return 0;
  if (frame->headers.cat == NGHTTP2_HCAT_HEADERS) {  // request trailers
    std::string_view n(reinterpret_cast<const char*>(name_bytes), name_len);
    if (!n.starts_with(":"))
      stream->trailers_in.emplace_back(
          n, std::string_view(reinterpret_cast<const char*>(value_bytes), value_len));
    return 0;
  }
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  std::string_view name(reinterpret_cast<const char*>(name_bytes), name_len);
  std::string_view value(reinterpret_cast<const char*>(value_bytes), value_len);
  // DESIGN §6: 60 KiB and 100 fields, counted after cookie reassembly.
  stream->header_bytes += name_len + value_len + 32;
  const size_t field_count = stream->fields.size() + (stream->cookie.empty() ? 0 : 1);
  if (stream->header_bytes > 60 * 1024 || field_count >= 100) {
    stream->too_large = true;
    return 0;
  }
  auto& bytes = stream->head_bytes;
  if (name == ":method") {
    stream->method = bytes.keep(value);
  } else if (name == ":path") {
    stream->path = bytes.keep(value);
  } else if (name == ":authority") {
    stream->authority = bytes.keep(value);
  } else if (name.starts_with(":")) {
    return 0;  // :scheme; nghttp2 has checked the set
  } else if (name == "host") {  // :authority wins; the upstream gets the one routing saw
    if (stream->authority.empty()) stream->authority = bytes.keep(value);
  } else if (name == "cookie") {  // one h1 field, "; "-joined (RFC 9113 §8.2.3)
    if (!stream->cookie.empty()) stream->cookie.append("; ");
    stream->cookie.append(value);
  } else {
    const auto kept = bytes.keep(value);
    if (name == "content-type") stream->content_type = kept;
    if (name == "content-length") stream->has_content_length = true;
    if (name == "x-request-id") stream->request_id = kept;
    stream->fields.add(bytes.keep(name), kept);
  }
  return 0;
}

int H2Connection::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  const bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (frame->hd.type == NGHTTP2_DATA) {
    const bool empty = frame->hd.length <= frame->data.padlen && !end_stream;
    self->empty_frames_ = empty ? self->empty_frames_ + 1 : 0;
    if (self->empty_frames_ > kMaxConsecutiveEmptyFrames) {
      self->refuse_connection(observe::H2Defence::kEmptyFrameFlood, NGHTTP2_ENHANCE_YOUR_CALM);
      return 0;
    }
  }
  auto it = self->streams_.find(frame->hd.stream_id);
  if (it == self->streams_.end()) return 0;
  auto& stream = it->second;
  stream->touch(self->session_now_);
  if (frame->hd.type == NGHTTP2_RST_STREAM) stream->reset_by_client = true;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    stream->in_end = end_stream;
    if (!stream->cookie.empty()) stream->fields.add("cookie", stream->cookie);
    self->starting_.push_back(stream);
  } else if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) && end_stream) {
    stream->in_end = true;
    stream->wake.notify();
  }
  (void)session;
  return 0;
}

int H2Connection::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                                const uint8_t* data, size_t len, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) {
    nghttp2_session_consume_connection(session, len);  // a stream already gone
    return 0;
  }
  auto& stream = *it->second;
  stream.bytes_in += len;
  stream.body_in.append(reinterpret_cast<const char*>(data), len);
  stream.touch(self->session_now_);
  stream.wake.notify();
  return 0;
}

int H2Connection::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  auto stream = it->second;
  self->streams_.erase(it);
  if (self->streams_.empty()) {
    self->idle_since_ = self->session_now_;
    self->arm_timer(self->idle_since_ + self->idle_timeout_);
  }
  stream->closed = true;
  if (self->note_reset(stream->reset_by_client) && !self->connection_refused_)
    self->refuse_connection(observe::H2Defence::kRapidReset, NGHTTP2_ENHANCE_YOUR_CALM);
  error_code ec;
  if (stream->upstream) stream->upstream->socket.close(ec);  // the client gave up: so do we
  stream->wake.notify();
  if (self->draining_ && self->streams_.empty()) self->client_.cancel(ec);
  return 0;
}

// Stream errors nghttp2 found itself (malformed or connection-specific
// fields: RST_STREAM PROTOCOL_ERROR, never forwarded), and the one
// connection error it does not name: a HEADERS frame over the stream limit.
int H2Connection::on_invalid_frame(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                                   void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (lib_error == NGHTTP2_ERR_HTTP_HEADER || lib_error == NGHTTP2_ERR_HTTP_MESSAGING)
    self->count(observe::H2Defence::kHeaderViolation);
  else if (frame->hd.type == NGHTTP2_HEADERS &&
           self->streams_.size() >= self->max_concurrent_streams_)
    self->pending_defence_ = observe::H2Defence::kTooManyStreams;
  return 0;
}

// A GOAWAY with an error that nghttp2 sent on its own (its reset-rate limit,
// the stream limit, frame errors) is counted here; ours are counted where sent.
int H2Connection::on_frame_send(nghttp2_session* session, const nghttp2_frame* frame,
                                void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    // A complete response before the whole request (an early 4xx, an
    // upstream that did not read the body): RFC 9113 §8.1, RST_STREAM
    // NO_ERROR tells the client to stop sending, as nginx does, rather than
    // leave it stalled on a window nobody opens.
    auto it = self->streams_.find(frame->hd.stream_id);
    if (it != self->streams_.end() && !it->second->in_end)
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_NO_ERROR);
    return 0;
  }
  if (frame->hd.type != NGHTTP2_GOAWAY || frame->goaway.error_code == NGHTTP2_NO_ERROR ||
      self->connection_refused_)
    return 0;
  self->connection_refused_ = true;
  using observe::H2Defence;
  // nghttp2's stream-reset rate limit says INTERNAL_ERROR (libnghttp2 1.52).
  const uint32_t code = frame->goaway.error_code;
  const bool reset_limit = code == NGHTTP2_ENHANCE_YOUR_CALM || code == NGHTTP2_INTERNAL_ERROR;
  self->count(self->pending_defence_.value_or(reset_limit ? H2Defence::kRapidReset
                                                          : H2Defence::kProtocolError));
  return 0;
}

ssize_t H2Connection::read_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                                size_t length, uint32_t* flags, nghttp2_data_source* source,
                                void* user) {
  auto* s = static_cast<H2Stream*>(source->ptr);
  size_t n = std::min(length, s->body_out.size() - s->out_sent);
  std::memcpy(buf, s->body_out.data() + s->out_sent, n);
  s->out_sent += n;
  s->bytes_out += n;
  if (n) s->touch(static_cast<H2Connection*>(user)->session_now_);
  if (n && s->on_body_sent) s->on_body_sent(n);
  if (n != 0 && s->out_sent == s->body_out.size()) {
    s->body_out.clear();
    s->out_sent = 0;
    s->wake.notify();  // room again: the stream may read more from its upstream
  }
  if (s->body_out.empty() && s->out_end) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!s->trailers_out.empty()) {  // END_STREAM goes on the trailers instead
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      auto nva = upstream::to_nva(s->trailers_out);
      nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size());
    }
  } else if (n == 0) {
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

// ---------------------------------------------------------------- streams

void H2Connection::submit_response(H2Stream& s, unsigned status, const upstream::Fields& fields,
                                   bool with_body) {
  // nghttp2 copies the fields when the frame is submitted
  const char status_text[3] = {static_cast<char>('0' + status / 100 % 10),
                               static_cast<char>('0' + status / 10 % 10),
                               static_cast<char>('0' + status % 10)};
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size() + 1);
  nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                 reinterpret_cast<uint8_t*>(const_cast<char*>(status_text)), 7, 3,
                 NGHTTP2_NV_FLAG_NONE});
  upstream::append_nva(fields, nva);
  submit_response(s, status, nva, with_body);
}

void H2Connection::submit_response(H2Stream& s, unsigned status, std::span<const nghttp2_nv> nva,
                                   bool with_body) {
  s.status = status;
  s.grpc_status = grpc_status_in(nva);
  nghttp2_data_provider provider{};
  provider.source.ptr = &s;
  provider.read_callback = read_body;
  nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), with_body ? &provider : nullptr);
  flush();
}

void H2Connection::reply_local(H2Stream& s, LocalReason reason, unsigned status,
                               int grpc_status) {
  auto reply = http::local_reply(reason);
  if (status) reply.status = status;
  if (grpc_status < 0) grpc_status = grpc_status_for(reason);
  s.local_reason = reply.reason;
  std::vector<std::pair<std::string, std::string>> fields;
  if (is_grpc(s.content_type)) {  // trailers-only, DESIGN §5
    fields = {{"content-type", "application/grpc"},
              {"grpc-status", std::to_string(grpc_status)},
              {"grpc-message", std::string(reply.reason)},
              {"x-remora-reason", std::string(reply.reason)}};
    submit_response(s, 200, fields, false);
    return;
  }
  fields = {{"content-type", "text/plain"},
            {"content-length", std::to_string(reply.reason.size() + 1)},
            {"x-remora-reason", std::string(reply.reason)}};
  s.body_out.assign(reply.reason).append("\n");
  s.out_end = true;
  submit_response(s, reply.status, fields, true);
}

// The timer is re-armed only when something is due before it: a new
// stream's deadline is later than the streams' before it, so under steady
// traffic a request arms nothing and the timer fires about once per timeout.
void H2Connection::arm_timer(Clock::time_point due) {
  if (due >= timer_due_ || finished_) return;
  timer_due_ = due;
  timer_.expires_at(due);  // cancels the wait for the later time
  timer_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec) self->on_timer();
  });
}

// Without an open stream for idle_timeout the connection closes (GOAWAY
// NO_ERROR). A stream ends at its deadline, or after stream_idle_timeout
// without a frame either way or upstream progress: 408 before the response
// head, RST_STREAM after it (or while its head is still incomplete).
void H2Connection::on_timer() {
  timer_due_ = Clock::time_point::max();
  const auto now = Clock::now();
  if (streams_.empty()) {
    if (now < idle_since_ + idle_timeout_) return arm_timer(idle_since_ + idle_timeout_);
    count(observe::H2Defence::kIdleTimeout);
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                          nullptr, 0);
    flush();
    error_code ec;
    client_.cancel(ec);
    return;
  }
  auto next = Clock::time_point::max();
  for (auto& [id, stream] : streams_) {  // expiring submits frames, never closes a stream here
    H2Stream& s = *stream;
    if (s.closed) continue;
    if (!s.timed_out && s.deadline <= now) deadline_expired(s);
    if (!s.timed_out) next = std::min(next, s.deadline);
    const bool idle_expired = s.timed_out && s.timeout_reason == LocalReason::kStreamIdleTimeout;
    if (idle_expired) continue;
    const auto idle_due = s.last_active + stream_idle_timeout_;
    if (idle_due <= now)
      stream_idle_expired(s);
    else
      next = std::min(next, idle_due);
  }
  arm_timer(next);
}

void H2Connection::deadline_expired(H2Stream& s) {
  s.timed_out = true;
  error_code ec;
  if (s.upstream) s.upstream->socket.close(ec);
  s.wake.notify();
}

void H2Connection::stream_idle_expired(H2Stream& s) {
  count(observe::H2Defence::kStreamIdleTimeout);
  s.timed_out = true;
  s.timeout_reason = LocalReason::kStreamIdleTimeout;
  error_code ec;
  if (s.upstream) s.upstream->socket.close(ec);
  s.wake.notify();
  // Nobody (left) to answer: the head is incomplete, or the response is
  // submitted and the client stopped reading it.
  if (!s.serving || s.status != 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_CANCEL);
    flush();
  }
}

Awaitable<void> H2Connection::serve_stream(std::shared_ptr<H2Stream> stream) {
  auto self = shared_from_this();
  H2Stream& s = *stream;
  auto view = worker_.view;
  const ListenerSpec* listener = view->listener(listener_name_);
  if (!listener || s.closed) co_return;
  s.serving = true;
  const auto start = Clock::now();
  observe::RequestSeries* series = listener->unrouted;
  const router::Route* route = nullptr;
  std::string upstream_address;

  if (s.request_id.empty()) {  // the upstream, the log and the client's trace share one id
    char id[kRequestIdSize];
    s.request_id = s.head_bytes.keep(make_request_id(worker_, id));
    s.fields.add("x-request-id", s.request_id);
  }
  auto& fields = s.fields;  // for routing and the upstream request
  if (s.too_large) {
    count(observe::H2Defence::kHeaderTooLarge);
    reply_local(s, LocalReason::kHeaderTooLarge);
  } else {
    const auto& table = view->snapshot->route_tables[listener->route_table];
    route = table.match({s.authority, s.path, fields});
    if (!route) {
      reply_local(s, LocalReason::kNoRoute);
    } else {
      // The route timeout covers the whole exchange; the client's own
      // deadline shortens it, never lengthens it.
      const auto timeout = request_timeout(*route, fields);
      s.route_deadline = timeout == route->timeout;
      s.deadline = start + timeout;
      arm_timer(s.deadline);
      co_await exchange(stream, *view, *route, fields, series, upstream_address, start);
    }
  }
  s.deadline = Clock::time_point::max();
  // Metrics and the log describe what the client got: wait until nghttp2
  // has sent the last DATA (or the stream was reset).
  while (!s.closed) co_await s.wake.wait();
  if (series && s.status) {
    series->count_status(observe::Protocol::kHttp2, s.status);
    if (is_grpc(s.content_type)) {
      int code = s.grpc_status >= 0 ? s.grpc_status : grpc_status_in(s.trailers_out);
      // No grpc-status reached the client: the stream was reset on it.
      if (code < 0) code = s.reset_by_client ? 1 /* CANCELLED */ : 13 /* INTERNAL */;
      series->count_grpc_status(static_cast<unsigned>(code));
    }
  }
  auto elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  if (route && route->duration) route->duration->observe(elapsed);
  if (auto log = view->snapshot->access_log_sink) {
    observe::AccessRecord record;
    record.listener = listener_name_;
    record.route = route ? std::string_view(route->name) : std::string_view();
    record.method = s.method;
    record.authority = s.authority;
    record.path = s.path;
    record.request_id = s.request_id;
    record.upstream = upstream_address;
    record.status = s.status;
    record.reason = s.local_reason;
    record.duration_ms = elapsed * 1000;
    record.bytes_in = s.bytes_in;
    record.bytes_out = s.bytes_out;
    log->write(record);
  }
}

// One request on an HTTP/1.1 upstream. False when the stream was reset.
Awaitable<bool> H2Connection::exchange(std::shared_ptr<H2Stream> ref, const WorkerView& view,
                                       const router::Route& route, http::HeaderList& fields,
                                       observe::RequestSeries*& series,
                                       std::string& upstream_address, Clock::time_point start) {
  H2Stream& s = *ref;
  const auto& target =
      route.pick_target(route.targets.size() > 1 ? worker_.random() % route.total_weight : 0);
  series = target.requests;
  auto& cluster = *view.clusters[target.cluster];
  const auto& spec = cluster.spec();
  if (s.closed) co_return false;  // reset before we got to it (rapid reset): no upstream work

  // The clock is read again only after a co_await.
  auto now = start;

  // -- the route's policies, then the cluster's breaker (DESIGN §1)
  auto verdict = apply_route_policies(route, fields, worker_.random(), now);
  if (verdict.delay.count() > 0) {
    net::Timer pause(client_.get_executor(), verdict.delay);
    error_code ec;
    co_await pause.async_wait(nothrow(ec));
    if (s.closed) co_return false;
    now = Clock::now();
  }
  policy::CircuitBreaker::Guard request_slot;
  if (verdict.rate_limited) {
    reply_local(s, LocalReason::kRateLimited);
    co_return false;
  }
  if (verdict.abort) {
    reply_local(s, LocalReason::kFaultAbort, route.fault.http_status(),
                static_cast<int>(route.fault.grpc_status()));
    co_return false;
  }
  if (spec.breaker && !(request_slot = spec.breaker->try_acquire(policy::Resource::kRequests))) {
    spec.stats->circuit_open.add();
    reply_local(s, LocalReason::kCircuitOpen);
    co_return false;
  }
  auto endpoint = cluster.pick(worker_.random(), balance_key(spec, fields, client_ip_));
  auto fail = [&](LocalReason reason) {
    if (!s.closed) reply_local(s, reason);
  };
  if (!endpoint) {
    fail(LocalReason::kNoHealthyEndpoint);
    co_return false;
  }
  upstream_address = endpoint->address().text;
  if (spec.http2)
    co_return co_await exchange_h2(s, ref, cluster, endpoint, target, route, fields,
                                   upstream_address);

  // -- request head
  fields.add("host", s.authority);  // x-request-id is among s.fields (serve_stream)
  // The whole request may have arrived before this coroutine ran.
  const bool chunked = !s.has_content_length && (!s.in_end || !s.body_in.empty());
  std::string_view prefix, rest = s.path;
  if (route.rewrite && !route.prefix.empty()) {
    prefix = route.rewrite_prefix;
    rest = rest.substr(route.prefix.size());
  }
  std::string head;
  size_t head_bytes = 256 + s.method.size() + s.path.size() + route.rewrite_prefix.size();
  for (const auto& f : fields) head_bytes += f.name.size() + f.value.size() + 4;
  head.reserve(head_bytes);  // one allocation, not one per doubling
  http::h1::write_request_head(head, {.method = s.method,
                                      .target_prefix = prefix,
                                      .target_rest = rest,
                                      .headers = &fields,
                                      .mutation = &route.request_headers,
                                      .client_address = client_ip_,
                                      .forwarded_proto = "http",
                                      .new_request_id = {},
                                      .upgrade = {},
                                      .chunked = chunked,
                                      .drop_expect = false});
  const auto& retry = route.retry;
  const bool retry_method = retry.enabled() && retry.allows_method(s.method);
  error_code ec;

  // The request body stays at the front of body_in while a retry may still
  // send it again (up to the policy's buffer_limit); past that, or without
  // a retry policy, each piece is dropped once written.
  bool keeping = retry_method;
  bool body_dropped = false;   // some body bytes are gone: no retry can send them again
  uint64_t dropped = 0;        // body bytes sent and erased from the front of body_in
  uint64_t window_opened = 0;  // body bytes the client's window was opened for
  unsigned retries = 0;
  policy::CircuitBreaker::Guard retry_slot;
  std::optional<upstream::ActiveRequest> active;
  http::HeaderList response_fields;
  response_fields.reserve(16);  // one allocation for a typical response head
  std::optional<http::h1::ResponseHeadParser> parser;
  auto fresh_parser = [&]() -> http::h1::ResponseHeadParser& {
    auto& p = parser.emplace(response_fields);
    p.header_limit(64 * 1024);
    p.body_limit(std::numeric_limits<std::uint64_t>::max());
    p.eager(false);
    if (s.method == "HEAD") p.skip(true);
    return p;
  };
  size_t head_end = std::string_view::npos;
  // Another try, if the policy, the body (kept whole so far), the budget,
  // the breaker and the clock allow: waits out the backoff (or
  // Retry-After), then picks another endpoint if there is one.
  auto next_try = [&](policy::TryOutcome outcome, unsigned status = 0,
                      std::chrono::milliseconds wait_hint = {}) -> Awaitable<bool> {
    if (!retry_method || retries + 1 >= retry.attempts || !retry.retriable(outcome, status))
      co_return false;
    if (body_dropped || s.closed || s.timed_out) co_return false;
    now = Clock::now();
    auto wait = std::max<Clock::duration>(retry.backoff.delay(retries, worker_.random()), wait_hint);
    if (now + wait >= s.deadline) co_return false;
    if (!take_retry(route, target, spec, retry_slot, now)) co_return false;
    ++retries;
    net::Timer pause(client_.get_executor(), wait);
    error_code ignored;
    co_await pause.async_wait(nothrow(ignored));
    if (auto other = cluster.pick_other(endpoint.get(), worker_.random())) endpoint = other;
    upstream_address = endpoint->address().text;
    co_return !s.closed && !s.timed_out;
  };
  if (target.retry_budget) target.retry_budget->record_request(now);

  // -- tries: the first, and retries as the route's policy allows (DESIGN §1)
  for (bool first_try = true;; first_try = false) {
    if (!first_try) now = Clock::now();
    ec = {};
    active.reset();
    active.emplace(endpoint->stats());
    s.upstream = endpoint->acquire(now, spec.pool_idle_timeout);
    if (!s.upstream) {
      auto slots = upstream::reserve_connection(spec.breaker.get());
      if (!slots.granted) {
        spec.stats->circuit_open.add();
        fail(LocalReason::kCircuitOpen);
        co_return false;
      }
      s.upstream = std::make_unique<upstream::UpstreamConnection>(
          net::Socket(client_.get_executor()), &spec.stats->active_connections);
      s.upstream->slot = std::move(slots.connection);
      net::Timer connect_timer(client_.get_executor(), spec.connect_timeout);
      connect_timer.async_wait([ref, connection = s.upstream.get()](error_code e) {
        if (!e && ref->upstream.get() == connection) ref->upstream->socket.close(e);
      });
      co_await s.upstream->socket.async_connect(endpoint->address().address, nothrow(ec));
      connect_timer.cancel();
      if (ec || !s.upstream->socket.is_open()) {
        s.upstream.reset();
        spec.stats->connect_failures.add();
        endpoint->stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
        cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
        if (co_await next_try(policy::TryOutcome::kConnectFailure)) continue;
        fail(s.timed_out ? s.timeout_reason : LocalReason::kUpstreamConnectFailure);
        co_return false;
      }
      s.upstream->socket.set_option(tcp::no_delay(true), ec);
    }
    auto& up = *s.upstream;
    // -- request head and body (a retry's kept body goes out first)
    {
      char attempt[40];  // x-remora-attempt, just before the blank line
      const int attempt_len =
          retry.enabled() ? std::snprintf(attempt, sizeof attempt, "x-remora-attempt: %u\r\n\r\n",
                                          retries + 1)
                          : 0;
      std::array<asio::const_buffer, 2> parts{
          asio::buffer(head.data(), head.size() - (attempt_len ? 2 : 0)),
          asio::buffer(attempt, static_cast<size_t>(attempt_len))};
      co_await asio::async_write(up.socket, parts, nothrow(ec));
    }
    size_t sent = 0;  // of body_in, on this try
    while (!ec && !s.closed && !s.timed_out && (!s.in_end || sent < s.body_in.size())) {
      if (sent == s.body_in.size()) {
        co_await s.wake.wait();
        continue;
      }
      std::string piece;
      std::string_view bytes;
      if (keeping) {
        // A copy: the client's DATA may grow (move) body_in during the write.
        piece.assign(s.body_in, sent);
        bytes = piece;
      } else {
        piece.swap(s.body_in);
        bytes = piece;
      }
      char size_line[24];
      const int size_len =
          chunked ? std::snprintf(size_line, sizeof size_line, "%zx\r\n", bytes.size()) : 0;
      std::array<asio::const_buffer, 3> parts{
          asio::buffer(size_line, static_cast<size_t>(size_len)),
          asio::buffer(bytes), asio::buffer("\r\n", chunked ? 2 : 0)};
      const size_t written = bytes.size();
      co_await asio::async_write(up.socket, parts, nothrow(ec));
      s.touch(Clock::now());
      if (keeping) {
        sent += written;
        if (s.body_in.size() > retry.buffer_limit) {  // too big to keep: no retry from now on
          keeping = false;
          s.body_in.erase(0, sent);
          dropped += sent;
          sent = 0;
        }
      } else {
        dropped += written;
      }
      body_dropped = !keeping;
      // The client's window opens once per byte, however often it is sent.
      const uint64_t taken = dropped + sent;
      if (!s.closed && taken > window_opened) {
        nghttp2_session_consume(session_, s.id, taken - window_opened);
        s.body_acked += taken - window_opened;
        window_opened = taken;
      }
      flush();
    }
    if (!ec && chunked && !s.closed && !s.timed_out) {
      std::string last = "0\r\n";  // the last chunk, with the client's trailers
      for (const auto& [n, v] : s.trailers_in) http::h1::append_field(last, n, v);
      last.append("\r\n");
      co_await asio::async_write(up.socket, asio::buffer(last), nothrow(ec));
    }
    if (s.closed) {
      s.upstream.reset();
      co_return false;
    }
    if (ec || s.timed_out) {
      s.upstream.reset();
      if (s.timed_out) {
        if (blames_endpoint(s)) cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
        fail(s.timeout_reason);
        co_return false;
      }
      cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
      if (co_await next_try(policy::TryOutcome::kReset)) continue;
      fail(LocalReason::kUpstreamReset);
      co_return false;
    }

    // -- response head, within this try's per_try_timeout from here (the
    // upload is the client's time, not the upstream's): it closes this
    // try's connection, and only that one.
    ++s.try_number;
    s.try_timed_out = false;
    std::optional<net::Timer> per_try;  // only with a per_try_timeout
    if (retry.per_try_timeout.count() > 0) {
      per_try.emplace(client_.get_executor(), retry.per_try_timeout);
      per_try->async_wait([ref, number = s.try_number](error_code e) {
        if (e || ref->try_number != number) return;
        ref->try_timed_out = true;
        if (ref->upstream) ref->upstream->socket.close(e);
        ref->wake.notify();
      });
    }
    auto* response = &fresh_parser();
    head_end = std::string_view::npos;
    std::optional<LocalReason> failure;
    for (;;) {
      std::string_view data(static_cast<const char*>(up.buffer.data().data()), up.buffer.size());
      auto at = data.find("\r\n\r\n");
      if (at != std::string_view::npos) {
        head_end = at + 4;
        if (response->put(asio::buffer(data.data(), head_end), ec) != head_end || ec) {
          failure = LocalReason::kBadUpstreamResponse;
          break;
        }
        if (response->status >= 100 && response->status < 200) {  // interim: not forwarded
          up.buffer.consume(head_end);
          response = &fresh_parser();
          continue;
        }
        break;
      }
      if (data.size() > 64 * 1024) {
        failure = LocalReason::kBadUpstreamResponse;
        break;
      }
      size_t n = co_await up.socket.async_read_some(up.buffer.prepare(kReadChunk), nothrow(ec));
      if (ec || s.closed || s.timed_out) {
        failure = s.try_timed_out ? LocalReason::kUpstreamTimeout : LocalReason::kUpstreamReset;
        break;
      }
      up.buffer.commit(n);
    }
    if (per_try) per_try->cancel();
    ++s.try_number;  // a handler already queued is for a try that is over
    if (s.closed) {
      s.upstream.reset();
      co_return false;
    }
    if (failure) {
      s.upstream.reset();
      if (!s.timed_out || blames_endpoint(s))
        cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
      if (*failure != LocalReason::kBadUpstreamResponse && !s.timed_out &&
          co_await next_try(s.try_timed_out ? policy::TryOutcome::kPerTryTimeout
                                           : policy::TryOutcome::kReset))
        continue;
      fail(s.timed_out ? s.timeout_reason : *failure);
      co_return false;
    }
    const unsigned status = response->status;
    cluster.record(*endpoint, policy::outcome_of_status(status));
    if (retry_method && retry.retriable(policy::TryOutcome::kResponse, status)) {
      std::chrono::milliseconds hint{};
      if (const auto* after = response->headers.find("retry-after"))
        hint = retry_after_value(after->value);
      if (co_await next_try(policy::TryOutcome::kResponse, status, hint)) {
        s.upstream.reset();  // that answer is dropped unread, with its connection
        continue;
      }
    }
    break;
  }
  if (keeping) s.body_in.clear();  // answered: what was kept for a retry goes (all was sent)
  auto& up = *s.upstream;
  auto& response = *parser;

  // -- response to the client: h1 field names are case-insensitive, h2's lower case
  s.touch(Clock::now());
  const unsigned status = response.status;
  // Copied from the parser's views (the buffer moves on) into the stream,
  // where nghttp2 reads it when the HEADERS frame goes out.
  h2_response_head(s.response_head, status, response.headers, route.response_headers);
  up.buffer.consume(head_end);
  const bool has_body = !response.is_done();
  s.out_end = !has_body;
  submit_response(s, status, s.response_head.fields(), has_body);

  // -- response body: decoded from h1 framing into DATA frames
  response.decoded_body = &s.body_out;
  const size_t head_fields = response.headers.size();  // later ones are chunked trailers
  while (has_body && !response.is_done()) {
    size_t used = 0;
    while (!response.is_done() && used < up.buffer.size()) {
      size_t n = response.put(up.buffer.data() + used, ec);
      if (ec == boost::beast::http::error::need_more) {
        ec = {};
        break;
      }
      if (ec || n == 0) break;
      used += n;
    }
    if (response.is_done()) {  // copy the trailers while their bytes are still buffered
      for (auto it = response.headers.begin() + head_fields; it != response.headers.end(); ++it)
        if (!connection_specific(it->name, it->value))
          s.trailers_out.emplace_back(lower_case(it->name), std::string(it->value));
    }
    up.buffer.consume(used);
    if (ec) break;
    if (response.is_done()) break;
    nghttp2_session_resume_data(session_, s.id);
    flush();
    while (s.body_out.size() > kStreamHighWater && !s.closed && !s.timed_out)
      co_await s.wake.wait();  // the client reads slowly: stop reading the upstream
    if (s.closed || s.timed_out) break;
    size_t n = co_await up.socket.async_read_some(up.buffer.prepare(kReadChunk), nothrow(ec));
    if (ec == asio::error::eof) {
      response.put_eof(ec);
      continue;
    }
    if (ec) break;
    up.buffer.commit(n);
    s.touch(Clock::now());
  }
  if (s.closed) {
    s.upstream.reset();
    co_return false;
  }
  // Whole is whole, even if the deadline fired after the last bytes came.
  const bool complete = response.is_done() && !ec;
  s.out_end = true;
  if (!complete) {
    s.upstream.reset();
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
  } else if (response.keep_alive() && up.buffer.size() == 0) {
    endpoint->release(std::move(s.upstream), Clock::now(), spec.pool_max_idle);
  } else {
    s.upstream.reset();
  }
  nghttp2_session_resume_data(session_, s.id);
  flush();
  co_return complete;
}

// One request on a multiplexed HTTP/2 upstream: headers, DATA and trailers
// pass through as they are, both bodies stream (gRPC bidi included), and
// each side's window opens only as the other side takes the bytes. A stream
// the upstream refused before answering (GOAWAY above it, REFUSED_STREAM)
// was never processed, so it is sent again on a fresh stream.
Awaitable<bool> H2Connection::exchange_h2(
    H2Stream& s, std::shared_ptr<H2Stream> ref, upstream::Cluster& cluster,
    std::shared_ptr<upstream::UpstreamEndpoint> endpoint, const router::RouteTarget& target,
    const router::Route& route, const http::HeaderList& fields, std::string& upstream_address) {
  const auto& spec = cluster.spec();
  auto fail = [&](LocalReason reason) {
    if (!s.closed) reply_local(s, reason);
  };

  // -- request head
  std::string path(s.path);
  if (route.rewrite && !route.prefix.empty() && path.starts_with(route.prefix))
    path = route.rewrite_prefix + path.substr(route.prefix.size());
  const auto upstream_head = std::make_shared<H2RequestHead>(
      s.method, s.authority, path, fields, route.request_headers, client_ip_, worker_);

  // -- tries: the first, retries as the route's policy allows, and one free
  // resend of a stream the upstream refused unprocessed
  const auto& retry = route.retry;
  const bool retry_method = retry.enabled() && retry.allows_method(s.method);
  if (retry.enabled()) upstream_head->set_attempt(1);
  if (target.retry_budget) target.retry_budget->record_request(Clock::now());
  unsigned retries = 0;
  policy::CircuitBreaker::Guard retry_slot;
  auto self = shared_from_this();
  std::shared_ptr<upstream::H2Client> client;
  std::shared_ptr<upstream::H2ClientStream> up;
  // The last try's stream, once another try is decided: cancelled on its
  // own connection right away (so it takes nothing more from body_in, nor
  // drops kept bytes from it, while the backoff runs) and cut off from this
  // stream's buffers.
  auto retire_stream = [&] {
    if (!up) return;
    client->cancel(up->id);
    up->request_body = &up->request_buffer;
    up->request_sent = 0;
    up->request_done = true;
    up->request_end = &up->request_done;
    up->request_trailers = nullptr;
    up->response_body = nullptr;
    up->cut_off_callbacks();
  };
  // Another try, if the policy, the whole request being in hand (its body
  // kept at the front of body_in), the budget, the breaker and the clock
  // allow: waits out the backoff, then picks another endpoint if there is one.
  auto next_try = [&](policy::TryOutcome outcome, unsigned status = 0, int grpc = -1,
                      std::chrono::milliseconds wait_hint = {}) -> Awaitable<bool> {
    if (!retry_method || retries + 1 >= retry.attempts || !retry.retriable(outcome, status, grpc))
      co_return false;
    if (!s.in_end || (up && !up->keep_sent) || s.closed || s.timed_out) co_return false;
    auto now = Clock::now();
    auto wait = std::max<Clock::duration>(retry.backoff.delay(retries, worker_.random()), wait_hint);
    if (now + wait >= s.deadline) co_return false;
    if (!take_retry(route, target, spec, retry_slot, now)) co_return false;
    retire_stream();
    ++retries;
    upstream_head->set_attempt(retries + 1);
    net::Timer pause(client_.get_executor(), wait);
    error_code ec;
    co_await pause.async_wait(nothrow(ec));
    if (auto other = cluster.pick_other(endpoint.get(), worker_.random())) endpoint = other;
    upstream_address = endpoint->address().text;
    co_return !s.closed && !s.timed_out;
  };
  std::optional<upstream::ActiveRequest> active;
  for (int resends = 0;;) {
    active.reset();
    active.emplace(endpoint->stats());
    upstream::H2ClientFor connection{upstream::usable_h2_client(*endpoint)};
    if (!connection.client) connection = co_await upstream::h2_client_for(*endpoint, spec);
    if (connection.circuit_open) {
      spec.stats->circuit_open.add();
      fail(LocalReason::kCircuitOpen);
      co_return false;
    }
    if (!connection.client) {
      cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
      if (co_await next_try(policy::TryOutcome::kConnectFailure)) continue;
      fail(s.timed_out ? s.timeout_reason : LocalReason::kUpstreamConnectFailure);
      co_return false;
    }
    client = std::move(connection.client);
    up = std::make_shared<upstream::H2ClientStream>();
    up->request_body = &s.body_in;
    up->request_end = &s.in_end;
    up->request_trailers = &s.trailers_in;
    up->response_body = &s.body_out;
    up->request_head = upstream_head;
    // The client's window opens once per byte, however often a byte is sent.
    up->on_request_taken = [self, ref, sent = up.get()](size_t) {
      if (ref->closed || sent->request_bytes_out <= ref->body_acked) return;
      nghttp2_session_consume(self->session_, ref->id, sent->request_bytes_out - ref->body_acked);
      ref->body_acked = sent->request_bytes_out;
      self->flush();
    };
    up->on_event = [ref] {
      ref->touch(Clock::now());
      ref->wake.notify();
    };
    if (!client->submit(up, upstream_head->fields(), !s.in_end || !s.body_in.empty())) {
      fail(LocalReason::kUpstreamReset);
      co_return false;
    }
    // -- response head (the request body keeps streaming meanwhile)
    ++s.try_number;
    s.try_timed_out = false;
    std::optional<net::Timer> per_try;  // only with a per_try_timeout
    if (retry.per_try_timeout.count() > 0) {
      per_try.emplace(client_.get_executor(), retry.per_try_timeout);
      per_try->async_wait([ref, number = s.try_number](error_code ec) {
        if (ec || ref->try_number != number) return;
        ref->try_timed_out = true;
        ref->wake.notify();
      });
    }
    while (!up->headers_done && !up->reset && !s.closed && !s.timed_out && !s.try_timed_out) {
      co_await s.wake.wait();
      if (!s.body_in.empty() || s.in_end) client->resume(up->id);
    }
    if (per_try) per_try->cancel();
    ++s.try_number;  // a handler already queued is for a try that is over
    if (s.timed_out && !up->headers_done && blames_endpoint(s))
      cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
    if (s.closed || s.timed_out) break;
    if (up->replayable() && resends < upstream::H2ClientStream::kMaxResends) {
      ++resends;
      spec.stats->refused_stream_retries.add();
      retire_stream();
      continue;
    }
    if (s.try_timed_out && !up->headers_done) {
      client->cancel(up->id);
      cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
      if (co_await next_try(policy::TryOutcome::kPerTryTimeout)) continue;
      fail(LocalReason::kUpstreamTimeout);
      co_return false;
    }
    if (!up->headers_done) {
      cluster.record(*endpoint, policy::Outcome::kGatewayFailure);
      if (co_await next_try(policy::TryOutcome::kReset)) continue;
      break;
    }
    const int grpc = up->end ? grpc_status_in(up->headers) : -1;  // trailers-only
    cluster.record(*endpoint, outlier_outcome(up->status, grpc));
    if (retry_method && retry.retriable(policy::TryOutcome::kResponse, up->status, grpc)) {
      auto discarded = s.body_out.size();
      std::chrono::milliseconds hint{};
      for (const auto& [name, value] : up->headers)
        if (name == "retry-after") hint = retry_after_value(value);
      if (co_await next_try(policy::TryOutcome::kResponse, up->status, grpc, hint)) {
        s.body_out.erase(0, discarded);  // that try's DATA, if any, never reaches the client
        continue;
      }
    }
    break;
  }
  up->keep_sent = false;  // answered: what was kept for a replay can go
  auto pump_request = [&] {
    if (!s.body_in.empty() || s.in_end) client->resume(up->id);
  };
  if (s.closed) {
    client->cancel(up->id);
    co_return false;
  }
  // Timed out before a whole response was in hand: the client gets the
  // timeout (nothing was sent to it yet), not a head cut short.
  if (!up->headers_done || (s.timed_out && !up->end)) {
    client->cancel(up->id);
    fail(s.timed_out ? s.timeout_reason : LocalReason::kUpstreamReset);
    co_return false;
  }
  // Into the stream, where nghttp2 reads it when the HEADERS frame goes out.
  h2_response_head(s.response_head, up->status, up->headers, route.response_headers);
  s.on_body_sent = [client, id = up->id](size_t n) { client->consume(id, n); };
  // A response that ended with its head (gRPC trailers-only) has no DATA.
  const bool has_body = !(up->end && s.body_out.empty());
  bool trailers_taken = false;
  auto take_trailers = [&] {  // once: the response may have ended before its head was read
    if (std::exchange(trailers_taken, true)) return;
    s.trailers_out = std::move(up->trailers);
    std::erase_if(s.trailers_out,
                  [](const auto& f) { return connection_specific(f.first, f.second); });
  };
  if (up->end) take_trailers();  // before out_end: the last DATA frame carries them
  s.out_end = up->end;
  submit_response(s, up->status, s.response_head.fields(), has_body);

  // -- response body and trailers
  while (!up->end && !up->reset && !s.closed && !s.timed_out) {
    nghttp2_session_resume_data(session_, s.id);
    flush();
    co_await s.wake.wait();
    pump_request();
  }
  // A response that arrived whole goes out whole, even if the deadline fired
  // before this coroutine ran again (both in one turn of the event loop): a
  // RST_STREAM now would also drop the HEADERS still queued in nghttp2.
  if (s.closed || (!up->end && (up->reset || s.timed_out))) {
    if (!up->end) client->cancel(up->id);
    if (!s.closed)
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
    flush();
    co_return false;
  }
  take_trailers();
  s.out_end = true;
  if (has_body) nghttp2_session_resume_data(session_, s.id);
  flush();
  co_return true;
}

}  // namespace

void serve_h2(net::Socket socket, WorkerContext& worker, std::string listener_name,
              net::ReadBuffer initial) {
  auto executor = socket.get_executor();
  auto connection = std::make_shared<H2Connection>(std::move(socket), worker,
                                                   std::move(listener_name), std::move(initial));
  asio::co_spawn(
      executor, [connection]() -> Awaitable<void> { co_await connection->run(); }, asio::detached);
}

}  // namespace remora::proxy
