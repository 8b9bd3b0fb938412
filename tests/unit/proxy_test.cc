// The protocol-level decisions of the proxy module that need no socket:
// gRPC deadlines and statuses, the ALPN protocol choice.
#include <doctest/doctest.h>

#include "remora/proxy/downstream.h"
#include "remora/proxy/grpc.h"

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
