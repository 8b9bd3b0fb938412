#include "remora/upstream/h2_client.h"

#include <cstring>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>

#include "remora/observe/metrics.h"
#include "remora/upstream/cluster_spec.h"
#include "remora/upstream/endpoint.h"

#include <boost/asio/this_coro.hpp>

namespace remora::upstream {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {
using net::nothrow;
constexpr int32_t kStreamWindow = 64 * 1024;
constexpr int32_t kConnectionWindow = 1024 * 1024;
}  // namespace

H2Client::H2Client(net::Socket socket, observe::Gauge* active, Keepalive keepalive,
                   policy::CircuitBreaker::Guard slot)
    : socket_(std::move(socket)),
      active_(active),
      in_(1024 * 1024),
      keepalive_(keepalive),
      keepalive_timer_(socket_.get_executor()),
      last_received_(std::chrono::steady_clock::now()),
      slot_(std::move(slot)) {
  if (active_) active_->add(1);
}

H2Client::~H2Client() {
  if (session_) nghttp2_session_del(session_);
  if (active_) active_->add(-1);
}

bool H2Client::start() {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
  nghttp2_option* option;
  nghttp2_option_new(&option);
  nghttp2_option_set_no_auto_window_update(option,
                                           1);  // windows open as the caller passes bytes on
  nghttp2_option_set_max_settings(option, 32);
  int rv = nghttp2_session_client_new3(&session_, callbacks, this, option, memory_.mem());
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0) return false;
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  open_ = true;
  asio::co_spawn(socket_.get_executor(), read_loop(), asio::detached);
  asio::co_spawn(socket_.get_executor(), keepalive_loop(), asio::detached);
  flush();
  return true;
}

// A connection the peer has been silent on for keepalive_.interval gets a
// PING; without its ACK within keepalive_.timeout the peer (or a NAT on the
// way) is gone, and the connection is closed before a request finds out.
net::Awaitable<void> H2Client::keepalive_loop() {
  auto self = shared_from_this();
  using Clock = std::chrono::steady_clock;
  while (open_) {
    keepalive_timer_.expires_at(last_received_ + keepalive_.interval);
    error_code ec;
    co_await keepalive_timer_.async_wait(nothrow(ec));
    if (!open_) break;
    if (Clock::now() - last_received_ < keepalive_.interval) continue;  // heard from meanwhile
    ping_outstanding_ = true;
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, nullptr);
    flush();
    keepalive_timer_.expires_after(keepalive_.timeout);
    co_await keepalive_timer_.async_wait(nothrow(ec));
    if (open_ && ping_outstanding_) {
      close();
      break;
    }
  }
}

bool H2Client::usable() const {
  if (!open_ || goaway_ || !session_) return false;
  auto limit =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return streams_.size() < limit && nghttp2_session_get_next_stream_id(session_) < (1u << 30);
}

bool H2Client::submit(std::shared_ptr<H2ClientStream> stream, std::span<const nghttp2_nv> request,
                      bool has_body) {
  nghttp2_data_provider provider{};
  provider.source.ptr = stream.get();
  provider.read_callback = read_request_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, request.data(), request.size(),
                                      has_body ? &provider : nullptr, stream.get());
  if (id < 0) return false;
  stream->id = id;
  streams_[id] = std::move(stream);
  flush();
  return true;
}

void H2Client::resume(int32_t stream_id) {
  if (!session_) return;
  nghttp2_session_resume_data(session_, stream_id);
  flush();
}

void H2Client::consume(int32_t stream_id, size_t bytes) {
  if (!session_ || !open_) return;
  nghttp2_session_consume(session_, stream_id, bytes);
  flush();
}

void H2Client::cancel(int32_t stream_id) {
  // Only a stream of this connection that is still open: an id of another
  // connection, or of a closed stream, may be someone else's here.
  if (!session_ || !open_ || stream_id <= 0 || !streams_.count(stream_id)) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
  flush();
}

void H2Client::close() {
  error_code ec;
  socket_.close(ec);
}

void H2Client::fail_all() {
  open_ = false;
  keepalive_timer_.cancel();
  auto streams = std::move(streams_);
  streams_.clear();
  for (auto& [id, stream] : streams) {
    if (stream->end) continue;
    stream->reset = true;
    if (stream->on_event) stream->on_event();
  }
}

net::Awaitable<void> H2Client::read_loop() {
  auto self = shared_from_this();
  for (;;) {
    error_code ec;
    size_t n = co_await socket_.async_read_some(in_.prepare(net::kRecycledBlock), nothrow(ec));
    if (ec) break;
    in_.commit(n);
    last_received_ = std::chrono::steady_clock::now();
    ssize_t used = nghttp2_session_mem_recv(
        session_, static_cast<const uint8_t*>(in_.data().data()), in_.size());
    if (used < 0) break;
    in_.consume(static_cast<size_t>(used));
    flush();
    if (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_)) break;
  }
  fail_all();
  close();
}

// As on the downstream side (H2Connection::flush): a posted handler, never
// inside an nghttp2 callback, one gathered write at a time.
void H2Client::flush() {
  if (writing_ || !open_) return;
  writing_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->write_pending(); });
}

void H2Client::write_pending() {
  out_.clear();
  if (!open_) {  // failed: its streams, and the heads nghttp2 would read, are gone
    writing_ = false;
    return;
  }
  take_pending_frames(session_, out_);
  if (out_.empty()) {
    writing_ = false;
    return;
  }
  asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this()](error_code ec, size_t) {
    if (!ec) return self->write_pending();
    self->writing_ = false;
    self->close();
  });
}

// ---------------------------------------------------------------- callbacks

// A stream's callbacks find it through nghttp2's stream user data (set at
// submit, gone with the stream): a hash lookup, not a walk of streams_.
namespace {
H2ClientStream* stream_of(nghttp2_session* session, int32_t stream_id) {
  return static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(session, stream_id));
}
}  // namespace

int H2Client::on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                        size_t name_len, const uint8_t* value, size_t value_len, uint8_t, void*) {
  auto* found = stream_of(session, frame->hd.stream_id);
  if (!found) return 0;
  auto& stream = *found;
  std::string_view n(reinterpret_cast<const char*>(name), name_len);
  std::string_view v(reinterpret_cast<const char*>(value), value_len);
  if (frame->headers.cat == NGHTTP2_HCAT_HEADERS && stream.headers_done) {
    stream.trailers.emplace_back(n, v);
  } else if (n == ":status") {
    unsigned status = 0;
    for (char c : v) status = status * 10 + static_cast<unsigned>(c - '0');
    if (status >= 200 || status == 101) stream.status = status;
  } else if (!n.starts_with(":")) {
    stream.headers.add(stream.header_bytes.keep(n), stream.header_bytes.keep(v));
  }
  return 0;
}

int H2Client::on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Client*>(user);
  if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
    self->ping_outstanding_ = false;
    return 0;
  }
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    self->goaway_ = true;
    // Streams above last_stream_id were never processed: the caller may retry them.
    for (auto& [id, stream] : self->streams_)
      if (id > frame->goaway.last_stream_id) stream->refused = true;
    return 0;
  }
  auto* found = stream_of(session, frame->hd.stream_id);
  if (!found) return 0;
  auto& stream = *found;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (stream.status != 0 && !stream.headers_done) {
      stream.headers_done = true;  // a final response head (1xx heads are skipped)
    } else if (stream.status == 0) {
      stream.headers.clear();  // interim 1xx
    }
  }
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) stream.end = true;
  if (stream.on_event) stream.on_event();
  return 0;
}

int H2Client::on_data_chunk(nghttp2_session* session, uint8_t, int32_t stream_id,
                            const uint8_t* data, size_t len, void*) {
  auto* stream = stream_of(session, stream_id);
  if (!stream || !stream->response_body) {
    nghttp2_session_consume(session, stream_id, len);
    return 0;
  }
  stream->response_body->append(reinterpret_cast<const char*>(data), len);
  if (stream->on_event) stream->on_event();
  return 0;
}

int H2Client::on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                              void* user) {
  auto* self = static_cast<H2Client*>(user);
  auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return 0;
  auto stream = it->second;
  self->streams_.erase(it);
  if (!stream->end || error_code != NGHTTP2_NO_ERROR) {
    stream->reset = !stream->end;
    if (error_code == NGHTTP2_REFUSED_STREAM) stream->refused = true;
  }
  if (stream->on_event) stream->on_event();
  return 0;
}

ssize_t H2Client::read_request_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf,
                                    size_t length, uint32_t* flags, nghttp2_data_source* source,
                                    void*) {
  auto* stream = static_cast<H2ClientStream*>(source->ptr);
  auto& body = *stream->request_body;
  size_t n = std::min(length, body.size() - stream->request_sent);
  std::memcpy(buf, body.data() + stream->request_sent, n);
  stream->request_sent += n;
  stream->request_bytes_out += n;
  if (!stream->keep_sent || stream->request_sent > H2ClientStream::kReplayLimit) {
    body.erase(0, stream->request_sent);
    stream->request_sent = 0;
    stream->keep_sent = false;
  }
  if (n && stream->on_request_taken) stream->on_request_taken(n);
  if (body.size() == stream->request_sent && *stream->request_end) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (stream->request_trailers && !stream->request_trailers->empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;  // END_STREAM goes on the trailers
      auto nva = to_nva(*stream->request_trailers);
      nghttp2_submit_trailer(session, stream_id, nva.data(), nva.size());
    }
  } else if (n == 0) {
    return NGHTTP2_ERR_DEFERRED;
  }
  return static_cast<ssize_t>(n);
}

std::vector<nghttp2_nv> to_nva(const Fields& fields) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  append_nva(fields, nva);
  return nva;
}

void append_nva(const Fields& fields, std::vector<nghttp2_nv>& nva) {
  for (const auto& [n, v] : fields)
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   // Unique per request: indexing it would only churn the HPACK table.
                   n == "x-request-id" ? uint8_t{NGHTTP2_NV_FLAG_NO_INDEX}
                                       : uint8_t{NGHTTP2_NV_FLAG_NONE}});
}

std::optional<std::string_view> nva_value(std::span<const nghttp2_nv> nva, std::string_view name) {
  for (const auto& nv : nva)
    if (std::string_view(reinterpret_cast<const char*>(nv.name), nv.namelen) == name)
      return std::string_view(reinterpret_cast<const char*>(nv.value), nv.valuelen);
  return std::nullopt;
}

void take_pending_frames(nghttp2_session* session, std::string& out, size_t limit) {
  while (out.size() < limit) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

std::shared_ptr<H2Client> usable_h2_client(UpstreamEndpoint& endpoint) {
  std::erase_if(endpoint.h2_clients, [](const auto& c) { return !c->open(); });
  for (auto& c : endpoint.h2_clients)
    if (c->usable()) return c;
  return nullptr;
}

net::Awaitable<H2ClientFor> h2_client_for(UpstreamEndpoint& endpoint, const ClusterSpec& spec) {
  if (auto client = usable_h2_client(endpoint)) co_return H2ClientFor{std::move(client)};
  // None yet, or all at the peer's stream limit: one more connection.
  auto slots = reserve_connection(spec.breaker.get());
  if (!slots.granted) co_return H2ClientFor{nullptr, true};
  auto executor = co_await asio::this_coro::executor;
  net::Socket socket(executor);
  net::Timer connect_timer(executor, spec.connect_timeout);
  connect_timer.async_wait([&socket](error_code ec) {
    if (!ec) socket.close(ec);
  });
  error_code ec;
  co_await socket.async_connect(endpoint.address().address, nothrow(ec));
  connect_timer.cancel();
  if (ec || !socket.is_open()) {
    spec.stats->connect_failures.add();
    endpoint.stats().connect_failures.fetch_add(1, std::memory_order_relaxed);
    co_return H2ClientFor{};
  }
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  auto client = std::make_shared<H2Client>(
      std::move(socket), &spec.stats->active_connections,
      H2Client::Keepalive{spec.keepalive_interval, spec.keepalive_timeout},
      std::move(slots.connection));
  if (!client->start()) co_return H2ClientFor{};
  endpoint.h2_clients.push_back(client);
  co_return H2ClientFor{client};
}

}  // namespace remora::upstream
