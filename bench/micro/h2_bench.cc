// HTTP/2 header hot paths without the network, on a heavy gRPC request head
// (~1.2 KB of fields: a 200-byte bearer token, trace context, custom x-
// fields):
//  - HPACK encode and decode with nghttp2's deflater / inflater: on a warm
//    connection (dynamic table full of this client's fields, per-request ids
//    and trace context changing) and on the first request of a connection;
//  - remora's own header translation (h2_translate.h): the request an h2
//    upstream gets (H2RequestHead, from an h2 or an HTTP/1.1 request) and the
//    response going back (h2_response), as nghttp2_nv arrays (to_nva);
//  - a real nghttp2 server session fed in memory with what a real nghttp2
//    client session wrote (preface, SETTINGS, one HEADERS frame per
//    request): frame parsing, HPACK, header validation and the callbacks, and
//    the same followed by remora's translation and the upstream client
//    session's HEADERS (the grpc_unary scenario's header work).
//
// remora's own session callbacks (H2Connection::on_header, in an anonymous
// namespace of h2_connection.cc) cannot be reached from here; the session
// benchmarks use a stand-in of the same shape: one heap stream object per
// stream, pseudo-headers and each regular field copied into owned strings.
//
// bytes/s counts the header fields' name + value bytes; the label gives the
// encoded (wire) size.
#include <benchmark/benchmark.h>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"
#include "remora/proxy/h2_translate.h"
#include "remora/proxy/worker_context.h"
#include "remora/upstream/h2_client.h"

namespace {

using remora::upstream::Fields;

// Distinct requests per connection recording: ids and trace context differ
// in each, as they do on a real connection.
constexpr size_t kRing = 512;

constexpr std::string_view kToken =
    "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6InBheW1lbnRzLTIwMjYtMTEifQ."
    "eyJzdWIiOiJzdmMtY2hlY2tvdXQiLCJhdWQiOiJwYXltZW50cyIsImlzcyI6Imh0dHBzOi8vYXV0aC5hY21lLmV4"
    "YW1wbGUiLCJleHAiOjE3OTU2OTYwMDB9.c2lnbmF0dXJlLWJ5dGVzLWZvci10aGUtbWljcm9iZW5jaG1hcmstb25s";

std::string hex(uint64_t& state, size_t digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < digits; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    out += kHex[(state >> 59) & 0xf];
  }
  return out;
}

// The head a gRPC client sends for unary call `i` on one connection.
Fields grpc_request(size_t i) {
  uint64_t s = 0x5eed + i * 0x9E3779B97F4A7C15ULL;
  auto uuid = [&] {
    return hex(s, 8) + "-" + hex(s, 4) + "-4" + hex(s, 3) + "-a" + hex(s, 3) + "-" + hex(s, 12);
  };
  return {
      {":method", "POST"},
      {":scheme", "http"},
      {":path", "/acme.payments.v1.PaymentAuthorizationService/AuthorizePayment"},
      {":authority", "payments-authorizer.payments-prod.svc.cluster.local:8443"},
      {"content-type", "application/grpc"},
      {"te", "trailers"},
      {"grpc-timeout", "4999m"},
      {"grpc-accept-encoding", "identity,deflate,gzip"},
      {"user-agent", "grpc-java-netty/1.60.0"},
      {"authorization", std::string(kToken)},
      {"x-request-id", uuid()},
      {"traceparent", "00-" + hex(s, 32) + "-" + hex(s, 16) + "-01"},
      {"tracestate", "acme=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
      {"baggage", "tenant=acme-eu,region=eu-west-1,canary=false,client=checkout-web"},
      {"x-forwarded-for", "203.0.113.7"},
      {"x-tenant-id", "acme-eu-west-1"},
      {"x-client-version", "checkout-web/2026.11.3"},
      {"x-user-id", "usr_01HF8Z3X6Q4W9N2B7K5M1R0T8V"},
      {"x-session-id", "sess_4c1f0e3f5e4a7b9c1d2b8f0e6a9d41aa"},
      {"x-correlation-id", "checkout-7f6c1f0e3f5e4a7b"},
      {"x-idempotency-key", uuid()},
      {"x-feature-flags", "payments.3ds2=on,payments.retry-v2=off,ledger.async=on"},
      {"x-acme-merchant", "m_000123456"},
      {"x-acme-channel", "web"},
  };
}

// What a gRPC server answers, before remora's translation.
Fields grpc_response() {
  return {
      {"content-type", "application/grpc"},
      {"grpc-encoding", "identity"},
      {"grpc-accept-encoding", "identity,deflate,gzip"},
      {"date", "Thu, 26 Nov 2026 10:00:00 GMT"},
      {"server", "payments-authorizer/3.14.1"},
      {"x-request-id", "7f6c1f0e-3f5e-4a7b-9c1d-2b8f0e6a9d41"},
      {"x-envoy-upstream-service-time", "3"},
      {"x-acme-region", "eu-west-1"},
      {"cache-control", "no-store"},
  };
}

size_t raw_bytes(const Fields& fields) {
  size_t n = 0;
  for (const auto& [name, value] : fields) n += name.size() + value.size();
  return n;
}

// nghttp2_nv views for a client's encoder: every field may be indexed (the
// encoder itself never indexes authorization).
std::vector<nghttp2_nv> client_nva(const Fields& fields) {
  std::vector<nghttp2_nv> nva;
  for (const auto& [n, v] : fields)
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                   reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                   NGHTTP2_NV_FLAG_NONE});
  return nva;
}

struct Requests {
  std::vector<Fields> fields;
  std::vector<std::vector<nghttp2_nv>> nva;  // views into `fields`
  std::vector<size_t> raw;
};

const Requests& requests() {
  static const Requests r = [] {
    Requests out;
    out.fields.reserve(kRing);
    for (size_t i = 0; i < kRing; ++i) out.fields.push_back(grpc_request(i));
    for (const auto& f : out.fields) {
      out.nva.push_back(client_nva(f));
      out.raw.push_back(raw_bytes(f));
    }
    return out;
  }();
  return r;
}

std::string head_label(const Fields& fields, double wire_bytes, const char* what = "HPACK") {
  char text[96];
  std::snprintf(text, sizeof text, "%zu fields, %zu B -> %.0f B %s", fields.size(),
                raw_bytes(fields), wire_bytes, what);
  return text;
}

// ------------------------------------------------------------------ HPACK

using Block = std::vector<uint8_t>;

bool deflate(nghttp2_hd_deflater* deflater, const std::vector<nghttp2_nv>& nva, Block& out) {
  out.resize(nghttp2_hd_deflate_bound(deflater, nva.data(), nva.size()));
  ssize_t n = nghttp2_hd_deflate_hd(deflater, out.data(), out.size(), nva.data(), nva.size());
  if (n < 0) return false;
  out.resize(static_cast<size_t>(n));
  return true;
}

// Decodes one whole header block; the number of fields, or -1.
int inflate(nghttp2_hd_inflater* inflater, const Block& block) {
  const uint8_t* in = block.data();
  size_t left = block.size();
  int fields = 0;
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t n = nghttp2_hd_inflate_hd2(inflater, &nv, &flags, in, left, 1);
    if (n < 0) return -1;
    in += n;
    left -= static_cast<size_t>(n);
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      benchmark::DoNotOptimize(nv.name);
      benchmark::DoNotOptimize(nv.value);
      ++fields;
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inflater);
      return fields;
    }
    if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0) return -1;  // truncated
  }
}

// The ring's requests as one connection's client encoded them, in order:
// block 0 with an empty dynamic table, the others warm.
const std::vector<Block>& encoded_ring() {
  static const std::vector<Block> blocks = [] {
    std::vector<Block> out(kRing);
    nghttp2_hd_deflater* deflater;
    nghttp2_hd_deflate_new(&deflater, 4096);
    for (size_t i = 0; i < kRing; ++i) deflate(deflater, requests().nva[i], out[i]);
    nghttp2_hd_deflate_del(deflater);
    return out;
  }();
  return blocks;
}

void BM_H2HpackEncodeWarm(benchmark::State& state) {
  const auto& reqs = requests();
  nghttp2_hd_deflater* deflater;
  nghttp2_hd_deflate_new(&deflater, 4096);
  Block out;
  for (size_t i = 0; i < kRing; ++i) deflate(deflater, reqs.nva[i], out);  // warm the table
  size_t i = 0, raw = 0, wire = 0;
  for (auto _ : state) {
    if (!deflate(deflater, reqs.nva[i], out)) state.SkipWithError("deflate failed");
    benchmark::DoNotOptimize(out.data());
    raw += reqs.raw[i];
    wire += out.size();
    if (++i == kRing) i = 0;
  }
  nghttp2_hd_deflate_del(deflater);
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(head_label(reqs.fields[0], double(wire) / double(state.iterations())));
}
BENCHMARK(BM_H2HpackEncodeWarm);

// The first request of a connection: a new deflater (its allocation
// included), every field literal.
void BM_H2HpackEncodeCold(benchmark::State& state) {
  const auto& reqs = requests();
  Block out;
  for (auto _ : state) {
    nghttp2_hd_deflater* deflater;
    nghttp2_hd_deflate_new(&deflater, 4096);
    if (!deflate(deflater, reqs.nva[0], out)) state.SkipWithError("deflate failed");
    benchmark::DoNotOptimize(out.data());
    nghttp2_hd_deflate_del(deflater);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * reqs.raw[0]));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(head_label(reqs.fields[0], double(out.size())));
}
BENCHMARK(BM_H2HpackEncodeCold);

// One connection's blocks decoded in order; at the end of the recording the
// inflater starts over (untimed) with block 0, so the table always matches.
void BM_H2HpackDecodeWarm(benchmark::State& state) {
  const auto& reqs = requests();
  const auto& blocks = encoded_ring();
  nghttp2_hd_inflater* inflater;
  nghttp2_hd_inflate_new(&inflater);
  inflate(inflater, blocks[0]);
  size_t i = 1, raw = 0, wire = 0;
  for (auto _ : state) {
    if (i == kRing) {
      state.PauseTiming();
      nghttp2_hd_inflate_del(inflater);
      nghttp2_hd_inflate_new(&inflater);
      inflate(inflater, blocks[0]);
      i = 1;
      state.ResumeTiming();
    }
    if (inflate(inflater, blocks[i]) != int(reqs.fields[i].size()))
      state.SkipWithError("inflate failed");
    raw += reqs.raw[i];
    wire += blocks[i].size();
    ++i;
  }
  nghttp2_hd_inflate_del(inflater);
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(head_label(reqs.fields[0], double(wire) / double(state.iterations())));
}
BENCHMARK(BM_H2HpackDecodeWarm);

void BM_H2HpackDecodeCold(benchmark::State& state) {
  const auto& reqs = requests();
  const auto& block = encoded_ring()[0];
  for (auto _ : state) {
    nghttp2_hd_inflater* inflater;
    nghttp2_hd_inflate_new(&inflater);
    if (inflate(inflater, block) != int(reqs.fields[0].size()))
      state.SkipWithError("inflate failed");
    nghttp2_hd_inflate_del(inflater);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * reqs.raw[0]));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(head_label(reqs.fields[0], double(block.size())));
}
BENCHMARK(BM_H2HpackDecodeCold);

// ------------------------------------------------- remora's translation

// The request head as H2Connection holds it after on_header: pseudo-headers
// apart, regular fields owned, lower case.
struct ReceivedHead {
  std::string method, path, authority;
  Fields fields;
};

ReceivedHead received(const Fields& request) {
  ReceivedHead head;
  for (const auto& [n, v] : request) {
    if (n == ":method")
      head.method = v;
    else if (n == ":path")
      head.path = v;
    else if (n == ":authority")
      head.authority = v;
    else if (!n.starts_with(":"))
      head.fields.emplace_back(n, v);
  }
  return head;
}

remora::http::HeaderMutation route_mutation() {
  remora::http::HeaderMutation mutation;  // as in the HTTP/1 benchmarks
  mutation.add.emplace_back("x-envoy-like", "1");
  mutation.remove.push_back("pragma");
  return mutation;
}

// serve_stream + exchange_h2 + H2Client::submit: HeaderList views of the
// owned fields, the H2RequestHead nghttp2 is given.
size_t translate_request(const ReceivedHead& head, const remora::http::HeaderMutation& mutation,
                         remora::proxy::WorkerContext& worker) {
  remora::http::HeaderList fields;
  fields.reserve(head.fields.size() + 1);
  for (const auto& [n, v] : head.fields) fields.add(n, v);
  const remora::proxy::H2RequestHead request(head.method, head.authority, head.path, fields,
                                             mutation, "10.1.2.3", worker);
  benchmark::DoNotOptimize(request.fields().data());
  return request.fields().size();
}

void BM_H2TranslateRequest(benchmark::State& state) {
  const auto& reqs = requests();
  const auto head = received(reqs.fields[0]);
  const auto mutation = route_mutation();
  remora::proxy::WorkerContext worker;
  for (auto _ : state) benchmark::DoNotOptimize(translate_request(head, mutation, worker));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * reqs.raw[0]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_H2TranslateRequest);

// The h1_to_h2 scenario's head: an HTTP/1.1 request (mixed-case names, Host)
// to an h2 upstream, as h1_connection passes its parsed fields; /connection:1
// with a "Connection: keep-alive" field (browsers, most HTTP/1.1 clients),
// which makes H2RequestHead look for the fields it names.
void BM_H2TranslateRequestFromH1(benchmark::State& state) {
  static const Fields h1 = {
      {"Host", "payments-authorizer.payments-prod.svc.cluster.local:8443"},
      {"User-Agent", "okhttp/4.12.0"},
      {"Accept", "application/json"},
      {"Accept-Encoding", "gzip"},
      {"Content-Type", "application/json"},
      {"Content-Length", "512"},
      {"Authorization", std::string(kToken)},
      {"X-Request-Id", "7f6c1f0e-3f5e-4a7b-9c1d-2b8f0e6a9d41"},
      {"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
      {"Tracestate", "acme=t61rcWkgMzE,rojo=00f067aa0ba902b7"},
      {"Baggage", "tenant=acme-eu,region=eu-west-1,canary=false,client=checkout-web"},
      {"X-Forwarded-For", "203.0.113.7"},
      {"X-Tenant-Id", "acme-eu-west-1"},
      {"X-Client-Version", "checkout-web/2026.11.3"},
      {"X-User-Id", "usr_01HF8Z3X6Q4W9N2B7K5M1R0T8V"},
      {"X-Session-Id", "sess_4c1f0e3f5e4a7b9c1d2b8f0e6a9d41aa"},
      {"X-Correlation-Id", "checkout-7f6c1f0e3f5e4a7b"},
      {"X-Feature-Flags", "payments.3ds2=on,payments.retry-v2=off,ledger.async=on"},
      {"Connection", "keep-alive"},
  };
  remora::http::HeaderList fields;
  for (const auto& [n, v] : h1)
    if (state.range(0) || n != "Connection") fields.add(n, v);
  const auto mutation = route_mutation();
  remora::proxy::WorkerContext worker;
  for (auto _ : state) {
    const remora::proxy::H2RequestHead request("POST", h1[0].second, "/v1/payments/authorize",
                                               fields, mutation, "10.1.2.3", worker);
    benchmark::DoNotOptimize(request.fields().data());
  }
  size_t raw = 0;
  for (const auto& f : fields) raw += f.name.size() + f.value.size();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * raw));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_H2TranslateRequestFromH1)->ArgName("connection")->Arg(0)->Arg(1);

// An h2 upstream's response head back to an h2 client: h2_response, then
// the nghttp2_nv array submit_response builds (:status first).
void BM_H2TranslateResponse(benchmark::State& state) {
  const auto upstream = grpc_response();
  const auto mutation = route_mutation();
  for (auto _ : state) {
    auto out = remora::proxy::h2_response(upstream, mutation);
    std::vector<nghttp2_nv> nva;
    nva.reserve(out.size() + 1);
    static char status[] = "200";
    nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(":status")),
                   reinterpret_cast<uint8_t*>(status), 7, 3, NGHTTP2_NV_FLAG_NONE});
    remora::upstream::append_nva(out, nva);
    benchmark::DoNotOptimize(nva.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * raw_bytes(upstream)));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_H2TranslateResponse);

// ---------------------------------------------- nghttp2 sessions in memory

// What one client connection wrote: the preface (magic + SETTINGS), then one
// HEADERS frame (END_STREAM) per ring request, on streams 1, 3, 5, ...
struct Recording {
  std::string preface;
  std::vector<std::string> heads;
};

void drain(nghttp2_session* session, std::string* out) {
  for (;;) {
    const uint8_t* data;
    ssize_t n = nghttp2_session_mem_send(session, &data);
    if (n <= 0) return;
    if (out) out->append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

nghttp2_session* client_session() {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_option* option;
  nghttp2_option_new(&option);
  nghttp2_option_set_peer_max_concurrent_streams(option, 1u << 30);
  nghttp2_session* session;
  nghttp2_session_client_new2(&session, callbacks, nullptr, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                       {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};
  nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  return session;
}

const Recording& recording() {
  static const Recording r = [] {
    Recording out;
    auto* client = client_session();
    drain(client, &out.preface);
    for (const auto& nva : requests().nva) {
      nghttp2_submit_request(client, nullptr, nva.data(), nva.size(), nullptr, nullptr);
      drain(client, &out.heads.emplace_back());
    }
    nghttp2_session_del(client);
    return out;
  }();
  return r;
}

// The server side: remora's session options and SETTINGS (start_session),
// and the stand-in callbacks described at the top.
class Server {
 public:
  using OnRequest = void (*)(Server&, int32_t stream_id, const ReceivedHead&);

  explicit Server(OnRequest on_request, void* user = nullptr)
      : on_request_(on_request), user_(user) {
    nghttp2_session_callbacks* callbacks;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_option* option;
    nghttp2_option_new(&option);
    nghttp2_option_set_no_auto_window_update(option, 1);
    nghttp2_option_set_stream_reset_rate_limit(option, 1000, 33);
    nghttp2_option_set_max_continuations(option, 8);
    nghttp2_option_set_max_settings(option, 32);
    nghttp2_option_set_max_outbound_ack(option, 1000);
    nghttp2_session_server_new2(&session_, callbacks, this, option);
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(callbacks);
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 64 * 1024},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 1024 * 1024);
  }
  ~Server() { nghttp2_session_del(session_); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Feeds bytes; then the frames the session answers with are taken (and
  // dropped). False on a protocol error.
  bool feed(std::string_view bytes) {
    ssize_t n = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(bytes.data()),
                                         bytes.size());
    drain(session_, nullptr);
    return n == static_cast<ssize_t>(bytes.size());
  }
  nghttp2_session* session() { return session_; }
  void* user() { return user_; }
  size_t requests = 0;
  size_t last_fields = 0;  // of the last request, pseudo-headers but :scheme included

 private:
  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto* head = new ReceivedHead;
    head->fields.reserve(16);  // as H2Stream does
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, head);
    return 0;
  }
  static int on_header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                       size_t name_len, const uint8_t* value, size_t value_len, uint8_t, void*) {
    auto* head = static_cast<ReceivedHead*>(
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (!head || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), name_len);
    std::string_view v(reinterpret_cast<const char*>(value), value_len);
    if (n == ":method")
      head->method = v;
    else if (n == ":path")
      head->path = v;
    else if (n == ":authority")
      head->authority = v;
    else if (!n.starts_with(":"))
      head->fields.emplace_back(n, v);
    return 0;
  }
  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<Server*>(user);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    auto* head = static_cast<ReceivedHead*>(
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (!head) return 0;
    ++self->requests;
    self->last_fields = head->fields.size() + 3;  // + :method, :path, :authority
    self->on_request_(*self, frame->hd.stream_id, *head);
    // The stream ends here (RST_STREAM NO_ERROR) in place of a response.
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
  }
  static int on_stream_close(nghttp2_session* session, int32_t stream_id, uint32_t, void*) {
    delete static_cast<ReceivedHead*>(nghttp2_session_get_stream_user_data(session, stream_id));
    return 0;
  }

  nghttp2_session* session_ = nullptr;
  OnRequest on_request_;
  void* user_;
};

void just_count(Server&, int32_t, const ReceivedHead& head) {
  benchmark::DoNotOptimize(head.fields.data());
}

// Runs `feed` over one recorded connection; at its end a fresh server
// (made untimed) takes the preface and request 0 again.
template <class MakeServer>
void serve_ring(benchmark::State& state, MakeServer make_server) {
  const auto& rec = recording();
  const auto& reqs = requests();
  auto server = make_server();
  server->feed(rec.preface);
  server->feed(rec.heads[0]);
  size_t i = 1, raw = 0, wire = 0;
  for (auto _ : state) {
    if (i == kRing) {
      state.PauseTiming();
      server = make_server();
      server->feed(rec.preface);
      server->feed(rec.heads[0]);
      i = 1;
      state.ResumeTiming();
    }
    const size_t before = server->requests;
    if (!server->feed(rec.heads[i]) || server->requests != before + 1 ||
        server->last_fields != reqs.fields[i].size() - 1)
      state.SkipWithError("the server session refused the request");
    raw += reqs.raw[i];
    wire += rec.heads[i].size();
    ++i;
  }
  state.SetBytesProcessed(static_cast<int64_t>(raw));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(
      head_label(reqs.fields[0], double(wire) / double(state.iterations()), "HEADERS frame"));
}

// Warm connection: one HEADERS frame in, the request head out (owned
// fields), the stream closed.
void BM_H2ServerRecvRequestHead(benchmark::State& state) {
  serve_ring(state, [] { return std::make_unique<Server>(just_count); });
}
BENCHMARK(BM_H2ServerRecvRequestHead);

// A new connection's first request: session set-up (remora's options and
// SETTINGS), preface, SETTINGS, the HEADERS with a cold table, teardown.
void BM_H2ServerRecvFirstRequest(benchmark::State& state) {
  const auto& rec = recording();
  const auto& reqs = requests();
  const std::string bytes = rec.preface + rec.heads[0];
  for (auto _ : state) {
    Server server(just_count);
    if (!server.feed(bytes) || server.requests != 1)
      state.SkipWithError("the server session refused the request");
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * reqs.raw[0]));
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(head_label(reqs.fields[0], double(rec.heads[0].size()), "HEADERS frame"));
}
BENCHMARK(BM_H2ServerRecvFirstRequest);

// The grpc_unary scenario's header work on a warm connection pair: the
// downstream HEADERS decoded (as above), remora's translation
// (H2RequestHead), and the upstream client session's HEADERS frame encoded and taken
// (nghttp2_submit_request + take_pending_frames, as H2Client does; the
// upstream stream is then reset, in place of its response). Routing is not
// included (router benchmarks).
struct Upstream {
  Upstream() : session(client_session()) { drain(session, nullptr); }
  ~Upstream() { nghttp2_session_del(session); }
  nghttp2_session* session;
  remora::http::HeaderMutation mutation = route_mutation();
  remora::proxy::WorkerContext worker;
  std::string out;
  bool failed = false;
};

void forward(Server& server, int32_t, const ReceivedHead& head) {
  auto& up = *static_cast<Upstream*>(server.user());
  remora::http::HeaderList fields;
  fields.reserve(head.fields.size() + 1);
  for (const auto& [n, v] : head.fields) fields.add(n, v);
  const remora::proxy::H2RequestHead request(head.method, head.authority, head.path, fields,
                                             up.mutation, "10.1.2.3", up.worker);
  const auto nva = request.fields();
  int32_t id =
      nghttp2_submit_request(up.session, nullptr, nva.data(), nva.size(), nullptr, nullptr);
  up.out.clear();
  remora::upstream::take_pending_frames(up.session, up.out);
  up.failed |= id < 0 || up.out.size() < 9 + 100;  // a HEADERS frame header + block
  benchmark::DoNotOptimize(up.out.data());
  nghttp2_submit_rst_stream(up.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  drain(up.session, nullptr);
}

void BM_H2ProxyRequestHead(benchmark::State& state) {
  std::unique_ptr<Upstream> upstream;
  bool failed = false;
  serve_ring(state, [&] {
    if (upstream) failed |= upstream->failed;
    upstream = std::make_unique<Upstream>();
    return std::make_unique<Server>(forward, upstream.get());
  });
  if (failed || upstream->failed) state.SkipWithError("the upstream session refused a request");
}
BENCHMARK(BM_H2ProxyRequestHead);

}  // namespace
