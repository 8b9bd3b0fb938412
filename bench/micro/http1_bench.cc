// HTTP/1.1 codec hot paths without the network: parse a request head into
// views (RequestHeadParser), write the head remora sends upstream
// (write_request_head), and the same for a response.
#include <benchmark/benchmark.h>

#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>

#include "remora/http/h1/head_parser.h"
#include "remora/http/h1/head_writer.h"
#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"

namespace {

using namespace remora::http;

// What a service's HTTP client typically sends through a sidecar.
constexpr std::string_view kSmallRequest =
    "GET /api/v1/items/12345?expand=owner HTTP/1.1\r\n"
    "Host: items.default.svc.cluster.local:8080\r\n"
    "User-Agent: okhttp/4.12.0\r\n"
    "Accept: application/json\r\n"
    "Accept-Encoding: gzip\r\n"
    "X-Request-Id: 7f6c1f0e-3f5e-4a7b-9c1d-2b8f0e6a9d41\r\n"
    "Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

// A browser-like head: more and longer fields, cookies.
constexpr std::string_view kLargeRequest =
    "POST /checkout/v2/cart/submit?session=abc123&locale=en-GB HTTP/1.1\r\n"
    "Host: shop.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 512\r\n"
    "Origin: https://shop.example.com\r\n"
    "Referer: https://shop.example.com/checkout/v2/cart\r\n"
    "Cookie: session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0; "
    "theme=dark; consent=1; ab=variant-b; cart=7c9e6679-7425-40de-944b-e07fc1f90ae7\r\n"
    "Sec-Fetch-Dest: empty\r\n"
    "Sec-Fetch-Mode: cors\r\n"
    "Sec-Fetch-Site: same-origin\r\n"
    "X-Forwarded-For: 203.0.113.7\r\n"
    "X-Request-Id: 0d8a1f64-5b0e-4d53-8f2c-9e0b7a3c1d22\r\n"
    "Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
    "Tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\r\n"
    "Baggage: userId=alice,serverNode=DF%2028,isProduction=false\r\n"
    "Cache-Control: no-cache\r\n"
    "Pragma: no-cache\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Server: items/1.4.2\r\n"
    "Date: Thu, 26 Nov 2026 10:00:00 GMT\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 348\r\n"
    "Cache-Control: private, max-age=0\r\n"
    "Vary: Accept-Encoding\r\n"
    "X-Request-Id: 7f6c1f0e-3f5e-4a7b-9c1d-2b8f0e6a9d41\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

template <bool isRequest>
void parse(benchmark::State& state, std::string_view text) {
  HeaderList fields;  // reused, as the connection does
  for (auto _ : state) {
    h1::HeadParser<isRequest> parser(fields);
    parser.header_limit(60 * 1024);
    parser.eager(false);
    boost::beast::error_code ec;
    auto used = parser.put(boost::asio::buffer(text.data(), text.size()), ec);
    if (ec || used != text.size()) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(parser.headers.size());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.SetItemsProcessed(state.iterations());
}

void BM_H1ParseRequestSmall(benchmark::State& state) { parse<true>(state, kSmallRequest); }
void BM_H1ParseRequestLarge(benchmark::State& state) { parse<true>(state, kLargeRequest); }
void BM_H1ParseResponse(benchmark::State& state) { parse<false>(state, kResponse); }
BENCHMARK(BM_H1ParseRequestSmall);
BENCHMARK(BM_H1ParseRequestLarge);
BENCHMARK(BM_H1ParseResponse);

void write_request(benchmark::State& state, std::string_view text) {
  HeaderList fields;
  h1::RequestHeadParser parser(fields);
  parser.header_limit(60 * 1024);
  parser.eager(false);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(text.data(), text.size()), ec);
  HeaderMutation mutation;
  mutation.add.emplace_back("x-envoy-like", "1");
  mutation.remove.push_back("pragma");
  std::string out;  // reused, as the connection does
  for (auto _ : state) {
    out.clear();
    h1::RequestHeadOut head;
    head.method = parser.method;
    head.target_rest = parser.target;
    head.headers = &fields;
    head.mutation = &mutation;
    head.client_address = "10.1.2.3";
    head.forwarded_proto = "http";
    h1::write_request_head(out, head);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
  state.SetItemsProcessed(state.iterations());
}

void BM_H1WriteRequestSmall(benchmark::State& state) { write_request(state, kSmallRequest); }
void BM_H1WriteRequestLarge(benchmark::State& state) { write_request(state, kLargeRequest); }
BENCHMARK(BM_H1WriteRequestSmall);
BENCHMARK(BM_H1WriteRequestLarge);

void BM_H1WriteResponse(benchmark::State& state) {
  HeaderList fields;
  h1::ResponseHeadParser parser(fields);
  parser.header_limit(60 * 1024);
  parser.eager(false);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(kResponse.data(), kResponse.size()), ec);
  std::string out;
  for (auto _ : state) {
    out.clear();
    h1::ResponseHeadOut head;
    head.status = parser.status;
    head.reason = parser.reason;
    head.headers = &fields;
    h1::write_response_head(out, head);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_H1WriteResponse);

// The whole head round trip a proxied request costs in the codec.
void BM_H1ParseAndWriteRequestSmall(benchmark::State& state) {
  HeaderList fields;
  std::string out;
  for (auto _ : state) {
    h1::RequestHeadParser parser(fields);
    parser.header_limit(60 * 1024);
    parser.eager(false);
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(kSmallRequest.data(), kSmallRequest.size()), ec);
    out.clear();
    h1::RequestHeadOut head;
    head.method = parser.method;
    head.target_rest = parser.target;
    head.headers = &fields;
    head.client_address = "10.1.2.3";
    head.forwarded_proto = "http";
    h1::write_request_head(out, head);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_H1ParseAndWriteRequestSmall);

}  // namespace
