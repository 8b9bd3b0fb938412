#pragma once
// One multiplexed HTTP/2 (h2c, prior knowledge) connection to an upstream
// endpoint, on nghttp2's client session. Requests are streams on it; the
// caller owns each stream's buffers and is woken through a callback. Flow
// control follows the caller: response DATA is acknowledged (WINDOW_UPDATE)
// only when the caller says it passed the bytes on.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nghttp2/nghttp2.h>

#include <boost/container/flat_map.hpp>

#include "remora/http/byte_arena.h"
#include "remora/http/h2_session_memory.h"
#include "remora/http/header_list.h"
#include "remora/net/buffer_recycler.h"
#include "remora/net/executor.h"
#include "remora/policy/circuit_breaker.h"

namespace remora::observe {
class Gauge;
}

namespace remora::upstream {

using Fields = std::vector<std::pair<std::string, std::string>>;

struct H2ClientStream {
  // Request bytes kept after they were sent, until the response head comes,
  // so that a stream the upstream refused can be sent again.
  static constexpr size_t kReplayLimit = 64 * 1024;
  // How many times one request is sent again after such refusals.
  static constexpr int kMaxResends = 1;

  // Room for a typical response head up front: one allocation, not a
  // doubling per field as nghttp2 hands them over one by one.
  H2ClientStream() { headers.reserve(16); }
  H2ClientStream(const H2ClientStream&) = delete;  // views point into its arena
  H2ClientStream& operator=(const H2ClientStream&) = delete;

  int32_t id = -1;
  // Owns the request head's bytes where submit() was given fields flagged
  // NGHTTP2_NV_FLAG_NO_COPY_*: nghttp2 reads them when the HEADERS frame
  // goes out, and the client holds the stream until it closes.
  std::shared_ptr<const void> request_head;
  // Request body: bytes go out from the front of `*request_body`; the first
  // `request_sent` of them were sent and are kept for a replay (see
  // replayable()), later ones are dropped once sent. `*request_end` says no
  // more will come; `*request_trailers` (if any) follow the last DATA. They
  // point at the stream's own buffers unless the caller points them at its own.
  std::string request_buffer;
  bool request_done = false;
  std::string* request_body = &request_buffer;
  const bool* request_end = &request_done;
  const std::vector<std::pair<std::string, std::string>>* request_trailers = nullptr;
  size_t request_sent = 0;
  uint64_t request_bytes_out = 0;                // all request bytes sent on this stream
  bool keep_sent = true;  // until the caller is done with retries, or kReplayLimit
  std::function<void(size_t)> on_request_taken;  // bytes taken (caller opens its window)
  // Response, filled in by the client.
  unsigned status = 0;
  http::HeaderList headers;      // lower case (nghttp2 refuses others), views into header_bytes
  http::ByteArena header_bytes;  // the response head's bytes, copied from nghttp2's
  Fields trailers;
  std::string response_buffer;
  std::string* response_body = &response_buffer;  // DATA is appended here
  bool headers_done = false;
  bool end = false;                // END_STREAM received
  bool reset = false;              // RST_STREAM, GOAWAY above it, or the connection died
  bool refused = false;            // never processed by the upstream: safe to retry
  std::function<void()> on_event;  // something above changed

  // Refused before any response, with every request byte sent still at the
  // front of *request_body: the same request can go out on another stream.
  bool replayable() const { return refused && !headers_done && keep_sent; }
  // The caller is done with this stream (it may stay in its connection a
  // while longer): what its callbacks point at may go.
  void cut_off_callbacks() {
    on_event = nullptr;
    on_request_taken = nullptr;
  }
};

class UpstreamEndpoint;
struct ClusterSpec;

class H2Client : public std::enable_shared_from_this<H2Client> {
 public:
  struct Keepalive {
    std::chrono::milliseconds interval;  // PING after this long without a frame from the peer
    std::chrono::milliseconds timeout;   // no ACK by then: the connection is dead, close it
  };
  H2Client(net::Socket socket, observe::Gauge* active, Keepalive keepalive,
           policy::CircuitBreaker::Guard slot = {});
  ~H2Client();

  // Sends the preface and SETTINGS and starts reading. False on failure.
  bool start();
  // Room for one more stream: open, no GOAWAY, under the peer's limit.
  bool usable() const;
  bool open() const { return open_; }

  // `request` holds pseudo-headers first; nghttp2 copies the fields not
  // flagged NO_COPY (see H2ClientStream::request_head). The stream stays
  // the caller's.
  bool submit(std::shared_ptr<H2ClientStream> stream, std::span<const nghttp2_nv> request,
              bool has_body);
  void resume(int32_t stream_id);                 // more request body is ready
  void consume(int32_t stream_id, size_t bytes);  // response bytes passed on
  void cancel(int32_t stream_id);                 // RST_STREAM CANCEL
  void close();

 private:
  net::Awaitable<void> read_loop();
  void write_pending();
  net::Awaitable<void> keepalive_loop();
  void flush();
  void fail_all();

  static int on_header(nghttp2_session*, const nghttp2_frame*, const uint8_t*, size_t,
                       const uint8_t*, size_t, uint8_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static ssize_t read_request_body(nghttp2_session*, int32_t, uint8_t*, size_t, uint32_t*,
                                   nghttp2_data_source*, void*);
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t, const uint8_t*, size_t, void*);
  static int on_stream_close(nghttp2_session*, int32_t, uint32_t, void*);

  net::Socket socket_;
  observe::Gauge* active_;
  http::H2SessionMemory memory_;  // nghttp2's allocations (outlives session_)
  nghttp2_session* session_ = nullptr;
  net::ReadBuffer in_;
  std::string out_;
  bool writing_ = false;
  bool open_ = false;
  bool goaway_ = false;
  Keepalive keepalive_;
  net::Timer keepalive_timer_;
  std::chrono::steady_clock::time_point last_received_;
  bool ping_outstanding_ = false;
  // By id, which only grows: a new stream goes at the end of the array.
  boost::container::flat_map<int32_t, std::shared_ptr<H2ClientStream>> streams_;
  policy::CircuitBreaker::Guard slot_;  // the cluster breaker's max_connections
};

// Views of `fields` for nghttp2, which copies them when a frame is submitted.
std::vector<nghttp2_nv> to_nva(const Fields& fields);
void append_nva(const Fields& fields, std::vector<nghttp2_nv>& nva);
// The first value of `name` in an nghttp2 header list, or nullopt.
std::optional<std::string_view> nva_value(std::span<const nghttp2_nv> nva, std::string_view name);

// Appends the frames nghttp2 has queued to `out`, up to about `limit`
// bytes, so that one write carries many frames. Used by both session sides.
void take_pending_frames(nghttp2_session* session, std::string& out, size_t limit = 64 * 1024);

struct H2ClientFor {
  std::shared_ptr<H2Client> client;  // null: see circuit_open
  bool circuit_open = false;         // the breaker refused a new connection (else unreachable)
};

// An open connection of `endpoint` with room for one more stream, or null:
// the common case, answered without starting a coroutine.
std::shared_ptr<H2Client> usable_h2_client(UpstreamEndpoint& endpoint);

// A connection of `endpoint` with room for one more stream, connecting a
// new one (within the cluster's connect_timeout, if the cluster's breaker
// has room for it) when none has. No client when the endpoint cannot be
// reached (counted as a connect failure) or the breaker refused.
net::Awaitable<H2ClientFor> h2_client_for(UpstreamEndpoint& endpoint, const ClusterSpec& spec);

}  // namespace remora::upstream
