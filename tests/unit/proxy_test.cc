// The protocol-level decisions of the proxy module that need no socket:
// gRPC deadlines and statuses, the ALPN protocol choice, header blocks,
// request ids, and the coroutines' wake-up (Signal).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "remora/proxy/downstream.h"
#include "remora/proxy/grpc.h"
#include "remora/proxy/h2_translate.h"
#include "remora/proxy/request_id.h"
#include "remora/proxy/signal.h"
#include "remora/proxy/worker_context.h"

using namespace remora::proxy;
using remora::http::LocalReason;
using std::chrono::milliseconds;

TEST_CASE("grpc-timeout: every unit, and what is not a timeout") {
  CHECK(parse_grpc_timeout("1H") == milliseconds(3'600'000));
  CHECK(parse_grpc_timeout("2M") == milliseconds(120'000));
  CHECK(parse_grpc_timeout("3S") == milliseconds(3'000));
  CHECK(parse_grpc_timeout("250m") == milliseconds(250));
  CHECK(parse_grpc_timeout("1500u") == milliseconds(1));
  CHECK(parse_grpc_timeout("99999999n") == milliseconds(99));
  CHECK_FALSE(parse_grpc_timeout("S"));           // no digits
  CHECK_FALSE(parse_grpc_timeout("123456789S"));  // more than 8 digits
  CHECK_FALSE(parse_grpc_timeout("10s"));         // lower-case s is no unit
  CHECK_FALSE(parse_grpc_timeout("1.5S"));
  CHECK_FALSE(parse_grpc_timeout(""));
}

TEST_CASE("local replies map to DESIGN §5's gRPC statuses") {
  CHECK(grpc_status_for(LocalReason::kNoRoute) == 12);
  CHECK(grpc_status_for(LocalReason::kUpstreamTimeout) == 4);
  CHECK(grpc_status_for(LocalReason::kStreamIdleTimeout) == 4);
  CHECK(grpc_status_for(LocalReason::kOverloaded) == 8);
  CHECK(grpc_status_for(LocalReason::kRateLimited) == 8);
  CHECK(grpc_status_for(LocalReason::kCircuitOpen) == 14);
  CHECK(grpc_status_for(LocalReason::kHeaderTooLarge) == 13);
  CHECK(grpc_status_for(LocalReason::kUpstreamConnectFailure) == 14);
  CHECK(grpc_status_for(LocalReason::kUpstreamReset) == 14);
}

TEST_CASE("grpc-status of a response: absent, a code, or UNKNOWN when malformed") {
  using remora::upstream::Fields;
  CHECK(grpc_status_in(Fields{{"content-type", "application/grpc"}}) == -1);
  CHECK(grpc_status_in(Fields{{"grpc-status", "0"}}) == 0);
  CHECK(grpc_status_in(Fields{{"grpc-message", "x"}, {"grpc-status", "14"}}) == 14);
  CHECK(grpc_status_in(Fields{{"grpc-status", ""}}) == 2);
  CHECK(grpc_status_in(Fields{{"grpc-status", "1x"}}) == 2);
  CHECK(grpc_status_in(Fields{{"grpc-status", "123"}}) == 2);
  CHECK(is_grpc("application/grpc+proto"));
  CHECK_FALSE(is_grpc("application/json"));
}

TEST_CASE("ALPN picks the codec; without it the listener's protocol stands") {
  CHECK(protocol_for_alpn("h2", ListenerProtocol::kHttp1) == ListenerProtocol::kHttp2);
  CHECK(protocol_for_alpn("http/1.1", ListenerProtocol::kAuto) == ListenerProtocol::kHttp1);
  CHECK(protocol_for_alpn("", ListenerProtocol::kAuto) == ListenerProtocol::kAuto);
  CHECK(protocol_for_alpn("h3", ListenerProtocol::kHttp2) == ListenerProtocol::kHttp2);
}

TEST_CASE("H2RequestHead: fields an HTTP/1.1 Connection header names stay behind, the rest pass lower-cased") {
  remora::http::HeaderList fields;
  fields.add("Connection", "keep-alive, X-Hop");
  fields.add("X-Hop", "1");
  fields.add("connection", "x-second");
  fields.add("X-Second", "2");
  fields.add("Keep-Alive", "timeout=5");
  fields.add("X-End-To-End", "3");
  fields.add("X-Forwarded-For", "10.0.0.1");
  fields.add("X-Forwarded-For", "10.0.0.2");
  remora::http::HeaderMutation mutation;
  mutation.add = {{"x-route", "blue"}};
  WorkerContext worker;
  H2RequestHead head("GET", "api", "/v1", fields, mutation, "127.0.0.1", worker);
  auto value = [&head](std::string_view name) -> std::string {
    return std::string(head.value(name).value_or("<absent>"));
  };
  const auto nva = head.fields();
  REQUIRE(nva.size() >= 4);
  CHECK(std::string_view(reinterpret_cast<const char*>(nva[0].name), nva[0].namelen) == ":method");
  CHECK(value(":method") == "GET");
  CHECK(value(":authority") == "api");
  CHECK(value(":path") == "/v1");
  CHECK(value("x-end-to-end") == "3");
  CHECK(value("x-hop") == "<absent>");
  CHECK(value("x-second") == "<absent>");
  CHECK(value("connection") == "<absent>");
  CHECK(value("keep-alive") == "<absent>");
  CHECK(value("x-forwarded-for") == "10.0.0.1, 10.0.0.2, 127.0.0.1");
  CHECK(value("x-forwarded-proto") == "http");
  CHECK(value("x-request-id").size() == kRequestIdSize);
  CHECK(value("x-route") == "blue");
  CHECK(value("x-remora-attempt") == "<absent>");
  // A retry rewrites the attempt in place: one field, the latest number.
  head.set_attempt(1);
  head.set_attempt(12);
  CHECK(value("x-remora-attempt") == "12");
  CHECK(head.fields().size() == nva.size() + 1);
}

TEST_CASE("H2RequestHead: its views stay valid after the fields it came from are gone") {
  WorkerContext worker;
  remora::http::HeaderMutation mutation;
  std::string buffer = "X-Long-Name-For-A-Field: " + std::string(300, 'v');
  std::optional<H2RequestHead> head;
  {
    remora::http::HeaderList fields;
    fields.add(std::string_view(buffer).substr(0, 23), std::string_view(buffer).substr(25));
    for (int i = 0; i < 40; ++i) fields.add("x-many", std::string_view(buffer).substr(25, 40));
    head.emplace("POST", "api.internal", "/v1/long", fields, mutation, "10.9.8.7", worker);
  }
  std::fill(buffer.begin(), buffer.end(), '#');  // as a reused read buffer would be
  CHECK(head->value("x-long-name-for-a-field") == std::string(300, 'v'));
  CHECK(head->value(":authority") == "api.internal");
  size_t many = 0;
  for (const auto& nv : head->fields())
    many += std::string_view(reinterpret_cast<const char*>(nv.name), nv.namelen) == "x-many";
  CHECK(many == 40);
}

TEST_CASE("h2_response_head: :status first, names lower-cased, hop-by-hop and removals out, additions last, its own bytes") {
  std::string buffer = "Content-Type: text/plain Connection: keep-alive X-Drop: 1 X-Kept: yes";
  remora::http::HeaderList fields;
  fields.add(std::string_view(buffer).substr(0, 12), std::string_view(buffer).substr(14, 10));
  fields.add("Connection", "keep-alive");
  fields.add("Transfer-Encoding", "chunked");
  fields.add("X-Drop", "1");
  fields.add(std::string_view(buffer).substr(58, 6), std::string_view(buffer).substr(66, 3));
  remora::http::HeaderMutation mutation;
  mutation.remove = {"x-drop"};
  mutation.add = {{"x-served-by", "remora"}};
  H2HeaderBlock head;
  h2_response_head(head, 204, fields, mutation);
  std::fill(buffer.begin(), buffer.end(), '#');  // the read buffer moves on
  std::vector<std::string> names;
  for (const auto& nv : head.fields())
    names.emplace_back(reinterpret_cast<const char*>(nv.name), nv.namelen);
  CHECK(names == std::vector<std::string>{":status", "content-type", "x-kept", "x-served-by"});
  CHECK(head.value(":status") == "204");
  CHECK(head.value("content-type") == "text/plain");
  CHECK(head.value("x-kept") == "yes");
  CHECK(head.value("x-served-by") == "remora");
}

TEST_CASE("make_request_id: UUID layout (8-4-4-4-12 lower-case hex, version 4), new each time") {
  WorkerContext worker;
  worker.seed(7);
  char first[kRequestIdSize], second[kRequestIdSize];
  const auto a = make_request_id(worker, first);
  const auto b = make_request_id(worker, second);
  CHECK(a != b);
  for (auto id : {a, b}) {
    REQUIRE(id.size() == 36);
    for (size_t i = 0; i < id.size(); ++i) {
      if (i == 8 || i == 13 || i == 18 || i == 23)
        CHECK(id[i] == '-');
      else
        CHECK(((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')));
    }
    CHECK(id[14] == '4');
  }
}

TEST_CASE("make_request_id: every hex digit turns up in every random position") {
  WorkerContext worker;
  worker.seed(11);
  std::array<std::set<char>, kRequestIdSize> seen;
  char id[kRequestIdSize];
  for (int n = 0; n < 2000; ++n) {
    const auto text = make_request_id(worker, id);
    for (size_t i = 0; i < text.size(); ++i) seen[i].insert(text[i]);
  }
  for (size_t i = 0; i < kRequestIdSize; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23)
      CHECK(seen[i] == std::set<char>{'-'});
    else if (i == 14)
      CHECK(seen[i] == std::set<char>{'4'});
    else
      CHECK(seen[i].size() == 16);  // '0'-'9' and 'a'-'f', checked above
  }
}

TEST_CASE("Signal: a notify before the wait is kept, several wake once, the waiter resumes later, not inside notify") {
  boost::asio::io_context io;
  Signal signal(io.get_executor());
  std::vector<std::string> steps;
  signal.notify();
  signal.notify();
  boost::asio::co_spawn(
      io,
      [&]() -> remora::net::Awaitable<void> {
        co_await signal.wait();  // the notifies before it: returns
        steps.push_back("first wait");
        co_await signal.wait();  // both were one: parks
        steps.push_back("second wait");
      },
      boost::asio::detached);
  io.run_for(std::chrono::milliseconds(50));
  REQUIRE(steps == std::vector<std::string>{"first wait"});
  io.restart();
  boost::asio::post(io, [&] {
    signal.notify();
    steps.push_back("notified");  // before the waiter runs
  });
  io.run_for(std::chrono::milliseconds(50));
  CHECK(steps == std::vector<std::string>{"first wait", "notified", "second wait"});
}

TEST_CASE("Signal: wait_until ends at its deadline, or sooner on a notify") {
  boost::asio::io_context io;
  Signal signal(io.get_executor());
  using Clock = std::chrono::steady_clock;
  Clock::duration alone{}, notified{};
  boost::asio::co_spawn(
      io,
      [&]() -> remora::net::Awaitable<void> {
        auto start = Clock::now();
        co_await signal.wait_until(start + std::chrono::milliseconds(30));
        alone = Clock::now() - start;
        start = Clock::now();
        boost::asio::post(io, [&] { signal.notify(); });
        co_await signal.wait_until(start + std::chrono::seconds(10));
        notified = Clock::now() - start;
      },
      boost::asio::detached);
  io.run_for(std::chrono::seconds(5));
  CHECK(alone >= std::chrono::milliseconds(30));
  CHECK(notified > Clock::duration::zero());
  CHECK(notified < std::chrono::seconds(5));
}

TEST_CASE("Signal: abandon drops a parked waiter without resuming it") {
  boost::asio::io_context io;
  Signal signal(io.get_executor());
  bool resumed = false;
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  boost::asio::co_spawn(
      io,
      [&, alive = std::move(alive)]() -> remora::net::Awaitable<void> {
        auto held = alive;  // lives in the coroutine's frame
        co_await signal.wait();
        resumed = true;
      },
      boost::asio::detached);
  io.run_for(std::chrono::milliseconds(20));
  REQUIRE_FALSE(watch.expired());  // parked: its frame holds `held`
  signal.abandon();
  io.restart();
  io.run_for(std::chrono::milliseconds(20));
  CHECK(watch.expired());  // the frame is gone
  CHECK_FALSE(resumed);
  signal.notify();  // nobody waits: kept for a next wait, no crash
}
