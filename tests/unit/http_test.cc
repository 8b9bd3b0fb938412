// The HTTP/1.1 pieces a request meets first: the strict checks that stop
// smuggling and header injection, the parser that exposes the head, and the
// writer that decides which bytes the upstream and the client receive; and
// the memory an HTTP/2 session allocates from.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nghttp2/nghttp2.h>

#include <boost/asio/buffer.hpp>

#include "remora/http/byte_arena.h"
#include "remora/http/h1/head_parser.h"
#include "remora/http/h1/head_writer.h"
#include "remora/http/h1/request_checks.h"
#include "remora/http/h2_session_memory.h"
#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"
#include "remora/http/local_reply.h"

using namespace remora::http;
using namespace remora::http::h1;

namespace {

// Header fields from string literals (the list holds views, literals outlive it).
HeaderList fields(std::initializer_list<std::pair<std::string_view, std::string_view>> list) {
  HeaderList out;
  for (const auto& [name, value] : list) out.add(name, value);
  return out;
}

// The field lines of a written head ("name: value"), without the start line.
std::vector<std::string> field_lines(std::string_view head) {
  std::vector<std::string> lines;
  auto end = head.find("\r\n\r\n");
  REQUIRE(end != std::string_view::npos);
  head = head.substr(0, end + 2);
  head.remove_prefix(head.find("\r\n") + 2);  // start line
  while (!head.empty()) {
    auto eol = head.find("\r\n");
    lines.emplace_back(head.substr(0, eol));
    head.remove_prefix(eol + 2);
  }
  return lines;
}

bool has_line(const std::vector<std::string>& lines, std::string_view line) {
  for (const auto& l : lines)
    if (l == line) return true;
  return false;
}

// Any line whose field name is `name`, case-insensitively.
bool has_field(const std::vector<std::string>& lines, std::string_view name) {
  for (const auto& l : lines) {
    auto colon = l.find(':');
    if (colon != std::string::npos && iequals(std::string_view(l).substr(0, colon), name))
      return true;
  }
  return false;
}

std::string request_head(const RequestHeadOut& head) {
  std::string out;
  write_request_head(out, head);
  return out;
}

std::string response_head(const ResponseHeadOut& head) {
  std::string out;
  write_response_head(out, head);
  return out;
}

}  // namespace

// ------------------------------------------------------------- raw_head_is_clean

TEST_CASE("raw_head_is_clean: an ordinary request head passes") {
  CHECK(raw_head_is_clean("GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"));
}

TEST_CASE("raw_head_is_clean: tabs and obs-text (bytes >= 0x80) in values pass") {
  CHECK(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\tb\r\n\r\n"));
  CHECK(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xc3\xa9 \xff\r\n\r\n"));
  // A colon inside a value is just a value byte.
  CHECK(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h:8080\r\nX-Time: 12:30:00\r\n\r\n"));
}

TEST_CASE("raw_head_is_clean: NUL anywhere is refused") {
  using namespace std::string_literals;
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"s));
  CHECK_FALSE(raw_head_is_clean("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"s));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nX\0A: a\r\nHost: h\r\n\r\n"s));
}

TEST_CASE("raw_head_is_clean: a bare CR is refused") {
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rX-B: b\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\rHost: h\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r"));  // CR as the last byte
}

TEST_CASE("raw_head_is_clean: a bare LF is refused") {
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\nHost: h\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\nX-A: a\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\n\n"));
  CHECK_FALSE(raw_head_is_clean("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"));
}

TEST_CASE("raw_head_is_clean: obs-fold (a field line starting with SP or HTAB) is refused") {
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"));
  // Whitespace before the first field line too (RFC 9112 §2.2).
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\n Host: h\r\n\r\n"));
}

TEST_CASE("raw_head_is_clean: control characters inside a field value are refused") {
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x01z\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x1b[31m\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\x0b\r\n\r\n"));
  // The same bytes in the second field line, after a value that contained a colon.
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h:1\r\nX-A: \x1f\r\n\r\n"));
}

TEST_CASE("raw_head_is_clean: control characters in the request line or a field name are refused") {
  CHECK_FALSE(raw_head_is_clean("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX\x7f-A: a\r\n\r\n"));
  CHECK_FALSE(raw_head_is_clean("GET / HTTP/1.1\r\nHost: h\r\nX\x1b: a\r\n\r\n"));
  // HTAB stays allowed where the grammar has whitespace (around a value).
  CHECK(raw_head_is_clean("GET / HTTP/1.1\r\nHost:\th\t\r\n\r\n"));
}

// The rules one byte at a time, as plainly as they can be written: the real
// check skips 8 bytes at a time and must agree with this on every input.
bool clean_byte_by_byte(std::string_view head) {
  for (size_t i = 0; i < head.size(); ++i) {
    const auto c = static_cast<unsigned char>(head[i]);
    if (c == '\r') {
      if (i + 1 == head.size() || head[i + 1] != '\n') return false;
    } else if (c == '\n') {
      if (i == 0 || head[i - 1] != '\r') return false;
      if (i + 1 < head.size() && (head[i + 1] == ' ' || head[i + 1] == '\t')) return false;
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return false;
    }
  }
  return true;
}

TEST_CASE("raw_head_is_clean: agrees with the byte-by-byte rules on 100 000 random heads") {
  // Mostly ordinary bytes, so that runs of clean 8-byte words occur, with
  // every byte class the rules distinguish at every offset.
  const std::string alphabet = "aZ:/ aaaaaaaaaaaa\t\r\n\r\n\x01\x1f\x7f\x80\xff";
  const std::string with_nul = alphabet + std::string(1, '\0');
  std::mt19937 random(42);
  size_t clean = 0;
  for (int round = 0; round < 100'000; ++round) {
    std::string head(random() % 40, 'a');
    for (auto& c : head) c = with_nul[random() % with_nul.size()];
    if (round % 2) head = "GET / HTTP/1.1\r\nHost: h\r\n" + head;  // clean prefixes shift the rest
    const bool expected = clean_byte_by_byte(head);
    clean += expected;
    if (raw_head_is_clean(head) != expected) FAIL_CHECK("disagrees on " << doctest::toString(head));
  }
  CHECK(clean > 1000);  // both outcomes were exercised
}

// --------------------------------------------------------- framing_is_unambiguous

TEST_CASE("framing: one Host and one Content-Length or one chunked TE are fine") {
  CHECK(framing_is_unambiguous(fields({{"Host", "h"}}), 11));
  CHECK(framing_is_unambiguous(fields({{"Host", "h"}, {"Content-Length", "5"}}), 11));
  CHECK(framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", "chunked"}}), 11));
  // Transfer codings are case-insensitive.
  CHECK(framing_is_unambiguous(fields({{"host", "h"}, {"transfer-encoding", "Chunked"}}), 11));
}

TEST_CASE("framing: Content-Length together with Transfer-Encoding is refused") {
  CHECK_FALSE(framing_is_unambiguous(
      fields({{"Host", "h"}, {"Content-Length", "5"}, {"Transfer-Encoding", "chunked"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(
      fields({{"Host", "h"}, {"transfer-encoding", "chunked"}, {"CONTENT-LENGTH", "0"}}), 11));
}

TEST_CASE("framing: differing Content-Lengths are refused - identical duplicates allowed") {
  CHECK_FALSE(framing_is_unambiguous(
      fields({{"Host", "h"}, {"Content-Length", "5"}, {"Content-Length", "6"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(
      fields({{"Host", "h"}, {"Content-Length", "5"}, {"content-length", "5"}, {"Content-Length", "50"}}),
      11));
  CHECK(framing_is_unambiguous(
      fields({{"Host", "h"}, {"Content-Length", "5"}, {"content-length", "5"}}), 11));
}

TEST_CASE("framing: Transfer-Encoding must be exactly one `chunked`") {
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", "xchunked"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", "chunkedx"}}), 11));
  CHECK_FALSE(
      framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", "chunked, identity"}}), 11));
  CHECK_FALSE(
      framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", "gzip, chunked"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", "identity"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "h"}, {"Transfer-Encoding", ""}}), 11));
  CHECK_FALSE(framing_is_unambiguous(
      fields({{"Host", "h"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(
      fields({{"Host", "h"}, {"Transfer-Encoding", "identity"}, {"Transfer-Encoding", "chunked"}}),
      11));
}

TEST_CASE("framing: HTTP/1.1 needs exactly one Host - HTTP/1.0 may omit it") {
  CHECK_FALSE(framing_is_unambiguous(fields({{"Accept", "*/*"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "a"}, {"host", "b"}}), 11));
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "a"}, {"Host", "a"}}), 11));
  CHECK(framing_is_unambiguous(fields({{"Accept", "*/*"}}), 10));
  CHECK(framing_is_unambiguous(fields({}), 10));
  CHECK_FALSE(framing_is_unambiguous(fields({{"Host", "a"}, {"Host", "b"}}), 10));
}

// ------------------------------------------------------------------ header list

TEST_CASE("iequals compares ASCII letters case-insensitively and nothing else") {
  CHECK(iequals("Content-Length", "content-length"));
  CHECK(iequals("X-REQUEST-ID", "x-request-id"));
  CHECK(iequals("", ""));
  CHECK_FALSE(iequals("host", "hos"));
  CHECK_FALSE(iequals("host", "hosT "));
  CHECK_FALSE(iequals("a", "b"));
  // Bytes that differ only in bit 0x20 but are not letters are different.
  CHECK_FALSE(iequals("@", "`"));
  CHECK_FALSE(iequals("[", "{"));
  CHECK_FALSE(iequals("x-a", "x\x0d" "a"));  // '-' (0x2d) vs CR (0x0d)
  CHECK_FALSE(iequals("1", "\x11"));
}

TEST_CASE("list_contains finds a token in a comma list - ignoring case and spaces") {
  CHECK(list_contains("keep-alive, Upgrade", "upgrade"));
  CHECK(list_contains("close", "close"));
  CHECK(list_contains(" close ,\tX-Secret\t", "x-secret"));
  CHECK(list_contains("a,,b", "b"));
  CHECK_FALSE(list_contains("upgraded", "upgrade"));
  CHECK_FALSE(list_contains("x-upgrade, keep", "upgrade"));
  CHECK_FALSE(list_contains("", "close"));
}

TEST_CASE("HeaderList find/count are case-insensitive and find returns the first") {
  auto h = fields({{"X-A", "1"}, {"x-a", "2"}, {"Host", "h"}});
  REQUIRE(h.find("x-A") != nullptr);
  CHECK(h.find("x-A")->value == "1");
  CHECK(h.count("X-a") == 2);
  CHECK(h.find("missing") == nullptr);
  CHECK(h.count("missing") == 0);
}

// ------------------------------------------------------------------ head parser

TEST_CASE("RequestHeadParser exposes method - target and fields as views into the buffer") {
  std::string buffer =
      "POST /orders?id=7&x=%20 HTTP/1.1\r\n"
      "Host: shop.example.com:8080\r\n"
      "X-Trace:   abc  \r\n"
      "Content-Length: 5\r\n"
      "\r\n"
      "hello";
  HeaderList headers;
  RequestHeadParser parser(headers);
  parser.eager(false);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(buffer), ec);
  REQUIRE_FALSE(ec);
  CHECK(parser.is_header_done());
  // Only the head is consumed; the body is left for the proxy to forward as is.
  CHECK(used == buffer.find("\r\n\r\n") + 4);
  CHECK(parser.method == "POST");
  CHECK(parser.target == "/orders?id=7&x=%20");
  CHECK(parser.version == 11);
  REQUIRE(headers.size() == 3);
  CHECK(headers.find("host")->value == "shop.example.com:8080");
  CHECK(headers.find("x-trace")->value == "abc");  // optional whitespace trimmed
  CHECK(headers.find("x-trace")->name == "X-Trace");  // name as received
  CHECK(headers.find("content-length")->value == "5");
  // Views, not copies: they point into the caller's buffer.
  const char* begin = buffer.data();
  const char* end = buffer.data() + buffer.size();
  CHECK((parser.target.data() >= begin && parser.target.data() < end));
  CHECK((headers.find("x-trace")->value.data() >= begin && headers.find("x-trace")->value.data() < end));
  CHECK(framing_is_unambiguous(headers, parser.version));
  CHECK(raw_head_is_clean(std::string_view(buffer).substr(0, used)));
}

TEST_CASE("RequestHeadParser reports HTTP/1.0 and clears the caller's list") {
  std::string buffer = "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n";
  HeaderList headers;
  headers.add("stale", "from the previous message");
  RequestHeadParser parser(headers);
  CHECK(headers.size() == 0);  // cleared for reuse
  parser.eager(false);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(buffer), ec);
  REQUIRE_FALSE(ec);
  CHECK(used == buffer.size());
  CHECK(parser.method == "GET");
  CHECK(parser.target == "/");
  CHECK(parser.version == 10);
  REQUIRE(headers.size() == 1);
  CHECK(framing_is_unambiguous(headers, parser.version));
}

// A head that arrives in pieces. Beast's parser consumes the start line and
// every complete field line even while it answers need_more: the caller must
// feed only what follows the consumed bytes. Feeding the whole buffer again
// (what a read loop that ignores the count does) parses the start line as a
// field and fails with bad_field: a valid request answered 400.
TEST_CASE("RequestHeadParser: a head split across reads is parsed from where put() stopped") {
  const std::string head = "GET /split HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n";
  for (size_t cut : {size_t{5}, head.find("\r\n") + 2, head.find("X-A"), head.size() - 2,
                     head.size() - 1}) {
    CAPTURE(cut);
    std::string buffer = head;
    HeaderList headers;
    RequestHeadParser parser(headers);
    parser.eager(false);
    boost::beast::error_code ec;
    size_t consumed = parser.put(boost::asio::buffer(buffer.data(), cut), ec);
    CHECK(ec == boost::beast::http::error::need_more);
    CHECK(consumed <= cut);
    size_t rest = parser.put(boost::asio::buffer(buffer.data() + consumed, buffer.size() - consumed), ec);
    REQUIRE_FALSE(ec);
    CHECK(consumed + rest == head.size());  // the head size is the sum over all put() calls
    CHECK(parser.method == "GET");
    CHECK(parser.target == "/split");
    REQUIRE(headers.size() == 2);
    CHECK(headers.find("x-a")->value == "1");
  }
}

TEST_CASE("ResponseHeadParser exposes status - reason and fields") {
  std::string buffer =
      "HTTP/1.1 503 Service Unavailable\r\n"
      "Content-Type: text/plain\r\n"
      "Transfer-Encoding: chunked\r\n"
      "\r\n"
      "5\r\nhello\r\n0\r\n\r\n";
  HeaderList headers;
  ResponseHeadParser parser(headers);
  parser.eager(false);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(buffer), ec);
  REQUIRE_FALSE(ec);
  CHECK(used == buffer.find("\r\n\r\n") + 4);
  CHECK(parser.status == 503);
  CHECK(parser.reason == "Service Unavailable");
  CHECK(parser.version == 11);
  CHECK(parser.chunked());
  REQUIRE(headers.size() == 2);
  CHECK(headers.find("content-type")->value == "text/plain");
}

// ------------------------------------------------------------------ head writer

TEST_CASE("is_hop_by_hop names exactly the hop-by-hop fields") {
  for (auto name : {"Connection", "keep-alive", "Proxy-Connection", "TE", "Upgrade",
                    "Transfer-Encoding", "trailer"})
    CHECK_MESSAGE(is_hop_by_hop(name), name);
  for (auto name : {"Host", "Content-Length", "trailers", "x-te", "Upgrade-Insecure-Requests",
                    "connectionx", "Authorization"})
    CHECK_FALSE_MESSAGE(is_hop_by_hop(name), name);
}

TEST_CASE("write_request_head: a plain request - byte for byte") {
  auto h = fields({{"Host", "api.internal"}, {"Accept", "*/*"}, {"X-Request-Id", "abc-1"}});
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/v1/items?q=1";
  head.headers = &h;
  head.client_address = "10.0.0.7";
  head.forwarded_proto = "http";
  head.new_request_id = "generated-id";
  CHECK(request_head(head) ==
        "GET /v1/items?q=1 HTTP/1.1\r\n"
        "Host: api.internal\r\n"
        "Accept: */*\r\n"
        "X-Request-Id: abc-1\r\n"
        "x-forwarded-for: 10.0.0.7\r\n"
        "x-forwarded-proto: http\r\n"
        "\r\n");
}

TEST_CASE("write_request_head: a rewritten prefix goes before the rest of the target") {
  auto h = fields({{"Host", "h"}});
  RequestHeadOut head;
  head.method = "DELETE";
  head.target_prefix = "/internal/v2";
  head.target_rest = "/items/3";
  head.headers = &h;
  head.client_address = "1.2.3.4";
  head.forwarded_proto = "http";
  auto out = request_head(head);
  CHECK(out.starts_with("DELETE /internal/v2/items/3 HTTP/1.1\r\n"));
}

TEST_CASE("write_request_head: hop-by-hop fields and those named by Connection are dropped") {
  auto h = fields({{"Host", "h"},
                   {"Connection", "keep-alive, X-Secret"},
                   {"connection", "x-other"},
                   {"Keep-Alive", "timeout=5"},
                   {"Proxy-Connection", "keep-alive"},
                   {"TE", "gzip"},
                   {"Trailer", "x-checksum"},
                   {"Upgrade", "h2c"},
                   {"X-Secret", "s3cr3t"},
                   {"x-other", "o"},
                   {"X-Kept", "k"},
                   {"Content-Length", "3"}});
  RequestHeadOut head;
  head.method = "POST";
  head.target_rest = "/";
  head.headers = &h;
  head.client_address = "1.2.3.4";
  head.forwarded_proto = "http";
  auto lines = field_lines(request_head(head));
  for (auto name : {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
                    "x-secret", "x-other"})
    CHECK_FALSE_MESSAGE(has_field(lines, name), name);
  CHECK(has_line(lines, "Host: h"));
  CHECK(has_line(lines, "X-Kept: k"));
  CHECK(has_line(lines, "Content-Length: 3"));
}

TEST_CASE("write_request_head: te trailers is kept (a gRPC client's promise) and other te dropped") {
  auto h = fields({{"Host", "h"}, {"TE", "trailers"}});
  RequestHeadOut head;
  head.method = "POST";
  head.target_rest = "/";
  head.headers = &h;
  head.client_address = "1.2.3.4";
  head.forwarded_proto = "http";
  CHECK(has_line(field_lines(request_head(head)), "TE: trailers"));
}

TEST_CASE("write_request_head: x-forwarded-for appends the client to the incoming list") {
  auto h = fields({{"Host", "h"}, {"X-Forwarded-For", "203.0.113.1, 198.51.100.2"}});
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/";
  head.headers = &h;
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  auto lines = field_lines(request_head(head));
  CHECK(has_line(lines, "x-forwarded-for: 203.0.113.1, 198.51.100.2, 10.1.2.3"));
  size_t xff = 0;
  for (const auto& l : lines) xff += has_field({l}, "x-forwarded-for");
  CHECK(xff == 1);
}

TEST_CASE("write_request_head: x-forwarded-for split over two field lines keeps every hop") {
  // RFC 9110 §5.3: repeated field lines form one list, in order; a proxy must
  // not lose members of it.
  auto h = fields({{"Host", "h"},
                   {"X-Forwarded-For", "203.0.113.1"},
                   {"X-Forwarded-For", "198.51.100.2"}});
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/";
  head.headers = &h;
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  auto out = request_head(head);
  INFO(out);
  auto lines = field_lines(out);
  CHECK(has_line(lines, "x-forwarded-for: 203.0.113.1, 198.51.100.2, 10.1.2.3"));
}

// Behind an edge proxy the client is that proxy, and its x-forwarded-proto
// names the scheme the user saw: it is kept. Only when absent does remora set
// the scheme it accepted the connection with. Either way there is one.
TEST_CASE("write_request_head: x-forwarded-proto is kept when sent and set when absent") {
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/";
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  auto count = [](const std::vector<std::string>& lines) {
    size_t n = 0;
    for (const auto& l : lines) n += has_field({l}, "x-forwarded-proto");
    return n;
  };

  auto sent = fields({{"Host", "h"}, {"X-Forwarded-Proto", "https"}});
  head.headers = &sent;
  auto out = request_head(head);
  INFO(out);
  auto lines = field_lines(out);
  CHECK(has_line(lines, "X-Forwarded-Proto: https"));
  CHECK(count(lines) == 1);

  auto absent = fields({{"Host", "h"}});
  head.headers = &absent;
  lines = field_lines(request_head(head));
  CHECK(has_line(lines, "x-forwarded-proto: http"));
  CHECK(count(lines) == 1);
}

TEST_CASE("write_request_head: the client's x-request-id is kept - else the new one is set") {
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/";
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  head.new_request_id = "new-id-42";

  auto with_id = fields({{"Host", "h"}, {"x-request-id", "client-id"}});
  head.headers = &with_id;
  auto lines = field_lines(request_head(head));
  CHECK(has_line(lines, "x-request-id: client-id"));
  CHECK_FALSE(has_line(lines, "x-request-id: new-id-42"));

  auto without = fields({{"Host", "h"}});
  head.headers = &without;
  lines = field_lines(request_head(head));
  CHECK(has_line(lines, "x-request-id: new-id-42"));
}

TEST_CASE("write_request_head: the route's mutation removes and adds fields") {
  HeaderMutation mutation;
  mutation.remove = {"authorization", "x-env"};
  mutation.add = {{"x-env", "prod"}, {"x-route", "orders"}};
  auto h = fields({{"Host", "h"}, {"Authorization", "Bearer t"}, {"X-Env", "dev"}, {"X-Keep", "1"}});
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/";
  head.headers = &h;
  head.mutation = &mutation;
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  auto lines = field_lines(request_head(head));
  CHECK_FALSE(has_field(lines, "authorization"));
  CHECK_FALSE(has_line(lines, "X-Env: dev"));
  CHECK(has_line(lines, "x-env: prod"));
  CHECK(has_line(lines, "x-route: orders"));
  CHECK(has_line(lines, "X-Keep: 1"));
}

TEST_CASE("write_request_head: a chunked body is re-framed with one chunked line") {
  auto h = fields({{"Host", "h"}, {"Transfer-Encoding", "chunked"}});
  RequestHeadOut head;
  head.method = "POST";
  head.target_rest = "/upload";
  head.headers = &h;
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  head.chunked = true;
  auto out = request_head(head);
  auto lines = field_lines(out);
  CHECK(has_line(lines, "transfer-encoding: chunked"));
  size_t te = 0;
  for (const auto& l : lines) te += has_field({l}, "transfer-encoding");
  CHECK(te == 1);
  CHECK(out.ends_with("\r\n\r\n"));

  head.chunked = false;
  auto plain = fields({{"Host", "h"}, {"Content-Length", "10"}});
  head.headers = &plain;
  lines = field_lines(request_head(head));
  CHECK_FALSE(has_field(lines, "transfer-encoding"));
}

TEST_CASE("write_request_head: an upgrade passes through with Connection: upgrade") {
  auto h = fields({{"Host", "h"},
                   {"Connection", "Upgrade"},
                   {"Upgrade", "websocket"},
                   {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                   {"Sec-WebSocket-Version", "13"}});
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/ws";
  head.headers = &h;
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  head.upgrade = "websocket";
  auto lines = field_lines(request_head(head));
  CHECK(has_line(lines, "connection: upgrade"));
  CHECK(has_line(lines, "upgrade: websocket"));
  CHECK(has_line(lines, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="));
  size_t connection = 0, upgrade = 0;
  for (const auto& l : lines) {
    connection += has_field({l}, "connection");
    upgrade += has_field({l}, "upgrade");
  }
  CHECK(connection == 1);
  CHECK(upgrade == 1);

  // Without an accepted upgrade the client's Upgrade never reaches the upstream.
  head.upgrade = {};
  lines = field_lines(request_head(head));
  CHECK_FALSE(has_field(lines, "upgrade"));
  CHECK_FALSE(has_field(lines, "connection"));
}

TEST_CASE("write_request_head: Expect is dropped only when remora answered 100-continue") {
  auto h = fields({{"Host", "h"}, {"Expect", "100-continue"}, {"Content-Length", "4"}});
  RequestHeadOut head;
  head.method = "PUT";
  head.target_rest = "/";
  head.headers = &h;
  head.client_address = "10.1.2.3";
  head.forwarded_proto = "http";
  CHECK(has_line(field_lines(request_head(head)), "Expect: 100-continue"));
  head.drop_expect = true;
  CHECK_FALSE(has_field(field_lines(request_head(head)), "expect"));
}

TEST_CASE("write_request_head appends to the caller's buffer") {
  auto h = fields({{"Host", "h"}});
  RequestHeadOut head;
  head.method = "GET";
  head.target_rest = "/";
  head.headers = &h;
  head.client_address = "1.1.1.1";
  head.forwarded_proto = "http";
  std::string out = "previous";
  write_request_head(out, head);
  CHECK(out.starts_with("previousGET / HTTP/1.1\r\n"));
}

TEST_CASE("write_response_head: a response - byte for byte - without hop-by-hop fields") {
  auto h = fields({{"Content-Type", "application/json"},
                   {"Connection", "keep-alive, X-Internal"},
                   {"Keep-Alive", "timeout=60"},
                   {"X-Internal", "debug"},
                   {"Content-Length", "2"}});
  ResponseHeadOut head;
  head.status = 201;
  head.reason = "Created";
  head.headers = &h;
  CHECK(response_head(head) ==
        "HTTP/1.1 201 Created\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 2\r\n"
        "\r\n");
}

TEST_CASE("write_response_head: close - chunked - mutation and 101 upgrade") {
  HeaderMutation mutation;
  mutation.remove = {"server"};
  mutation.add = {{"x-served-by", "remora"}};
  auto h = fields({{"Server", "gunicorn"}, {"Transfer-Encoding", "chunked"}, {"Connection", "close"}});
  ResponseHeadOut head;
  head.status = 200;
  head.reason = "OK";
  head.headers = &h;
  head.mutation = &mutation;
  head.chunked = true;
  head.close = true;
  auto lines = field_lines(response_head(head));
  CHECK_FALSE(has_field(lines, "server"));
  CHECK(has_line(lines, "x-served-by: remora"));
  CHECK(has_line(lines, "transfer-encoding: chunked"));
  CHECK(has_line(lines, "connection: close"));
  CHECK(lines.size() == 3);

  auto switching = fields({{"Connection", "Upgrade"}, {"Upgrade", "websocket"},
                           {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}});
  ResponseHeadOut up;
  up.status = 101;
  up.reason = "Switching Protocols";
  up.headers = &switching;
  up.upgrade = "websocket";
  up.close = true;  // an upgrade is not answered with close
  auto out = response_head(up);
  CHECK(out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
  lines = field_lines(out);
  CHECK(has_line(lines, "connection: upgrade"));
  CHECK(has_line(lines, "upgrade: websocket"));
  CHECK(has_line(lines, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
  CHECK(lines.size() == 3);
}

// ------------------------------------------------------------------ local reply

TEST_CASE("write_local_reply: exact bytes - with and without close") {
  std::string out;
  write_local_reply(out, 404, "Not Found", "no_route", false);
  CHECK(out ==
        "HTTP/1.1 404 Not Found\r\n"
        "content-type: text/plain\r\n"
        "content-length: 9\r\n"
        "x-remora-reason: no_route\r\n"
        "\r\n"
        "no_route\n");

  out.clear();
  write_local_reply(out, 504, "Gateway Timeout", "upstream_timeout", true);
  CHECK(out ==
        "HTTP/1.1 504 Gateway Timeout\r\n"
        "content-type: text/plain\r\n"
        "content-length: 17\r\n"
        "x-remora-reason: upstream_timeout\r\n"
        "connection: close\r\n"
        "\r\n"
        "upstream_timeout\n");
}

TEST_CASE("a local reply parses as a valid response whose body is its content-length") {
  auto reply = local_reply(LocalReason::kHeaderTooLarge);
  std::string out;
  write_local_reply(out, reply.status, reply.status_text, reply.reason, true);
  HeaderList headers;
  ResponseHeadParser parser(headers);
  boost::beast::error_code ec;
  parser.eager(true);  // head and body in one call
  size_t used = parser.put(boost::asio::buffer(out), ec);
  REQUIRE_FALSE(ec);
  CHECK(parser.is_done());
  CHECK(used == out.size());
  CHECK(parser.status == 431);
  CHECK(headers.find("x-remora-reason")->value == "request_header_too_large");
}

TEST_CASE("local_reply: the statuses and reasons of DESIGN §5") {
  struct Case {
    LocalReason reason;
    unsigned status;
    std::string_view text;
  };
  for (auto c : {Case{LocalReason::kNoRoute, 404, "no_route"},
                 Case{LocalReason::kBadUpstreamResponse, 502, "bad_upstream_response"},
                 Case{LocalReason::kUpstreamReset, 502, "upstream_reset"},
                 Case{LocalReason::kNoHealthyEndpoint, 503, "no_healthy_endpoint"},
                 Case{LocalReason::kUpstreamConnectFailure, 503, "upstream_connect_failure"},
                 Case{LocalReason::kOverloaded, 503, "overloaded"},
                 Case{LocalReason::kUpstreamTimeout, 504, "upstream_timeout"},
                 Case{LocalReason::kBadRequest, 400, "bad_request"},
                 Case{LocalReason::kUriTooLong, 414, "uri_too_long"},
                 Case{LocalReason::kRequestTimeout, 408, "request_timeout"},
                 Case{LocalReason::kStreamIdleTimeout, 408, "stream_idle_timeout"},
                 Case{LocalReason::kRateLimited, 429, "rate_limited"},
                 Case{LocalReason::kCircuitOpen, 503, "circuit_open"}}) {
    auto reply = local_reply(c.reason);
    CHECK_MESSAGE(reply.status == c.status, c.text);
    CHECK(reply.reason == c.text);
  }
}

TEST_CASE("h2 session memory: blocks of every size are distinct, aligned and keep their bytes") {
  remora::http::H2SessionMemory memory;
  nghttp2_mem* mem = memory.mem();
  std::vector<std::pair<unsigned char*, size_t>> blocks;
  for (int round = 0; round < 3; ++round) {  // later rounds take recycled blocks
    for (size_t size : {1, 40, 64, 65, 200, 1000, 2048, 2049, 10000}) {
      auto* p = static_cast<unsigned char*>(mem->malloc(size, mem->mem_user_data));
      REQUIRE(p != nullptr);
      CHECK(reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t) == 0);
      std::memset(p, static_cast<int>(size & 0xff), size);
      blocks.emplace_back(p, size);
    }
    for (auto [p, size] : blocks)  // no block overlaps another
      CHECK(std::all_of(p, p + size, [&](unsigned char c) { return c == (size & 0xff); }));
    for (auto [p, size] : blocks) mem->free(p, mem->mem_user_data);
    blocks.clear();
  }
  mem->free(nullptr, mem->mem_user_data);

  auto* zeroed = static_cast<unsigned char*>(mem->calloc(30, 10, mem->mem_user_data));
  CHECK(std::all_of(zeroed, zeroed + 300, [](unsigned char c) { return c == 0; }));
  std::memcpy(zeroed, "header", 6);
  for (size_t size : {400, 3000, 50000, 10}) {  // in place, to a bigger class, to malloc, back
    zeroed = static_cast<unsigned char*>(mem->realloc(zeroed, size, mem->mem_user_data));
    REQUIRE(zeroed != nullptr);
    CHECK(std::memcmp(zeroed, "header", 6) == 0);
  }
  mem->free(zeroed, mem->mem_user_data);
}

TEST_CASE("h2 session memory: a real nghttp2 session runs on it and ends clean") {
  remora::http::H2SessionMemory memory;
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session* client = nullptr;
  REQUIRE(nghttp2_session_client_new3(&client, callbacks, nullptr, nullptr, memory.mem()) == 0);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_nv head[] = {
      {(uint8_t*)":method", (uint8_t*)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)":scheme", (uint8_t*)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)":authority", (uint8_t*)"a.test", 10, 6, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t*)":path", (uint8_t*)"/", 5, 1, NGHTTP2_NV_FLAG_NONE},
  };
  size_t sent = 0;
  for (int i = 0; i < 50; ++i) {
    REQUIRE(nghttp2_submit_request(client, nullptr, head, 4, nullptr, nullptr) > 0);
    const uint8_t* out;
    for (ssize_t n; (n = nghttp2_session_mem_send(client, &out)) > 0;)
      sent += static_cast<size_t>(n);
  }
  CHECK(sent > 50 * 9);         // 50 HEADERS frames (and the preface) went out
  nghttp2_session_del(client);  // ASan: every block nghttp2 took is back
}

TEST_CASE("ByteArena: views stay valid and unchanged as the arena grows past its blocks") {
  remora::http::ByteArena arena;
  std::vector<std::pair<std::string, std::string_view>> kept;
  for (int i = 0; i < 200; ++i) {  // ~6 KiB: the inline block and two heap blocks
    std::string text = "field-" + std::to_string(i) + std::string(static_cast<size_t>(i % 50), 'x');
    kept.emplace_back(text, arena.keep(text));
  }
  const std::string big(10000, 'b');  // larger than a block: a block of its own
  kept.emplace_back(big, arena.keep(big));
  kept.emplace_back("", arena.keep(""));
  for (const auto& [text, view] : kept) CHECK(view == text);
}
