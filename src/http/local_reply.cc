#include "remora/http/local_reply.h"

namespace remora::http {

LocalReply local_reply(LocalReason reason) {
  switch (reason) {
    case LocalReason::kNoRoute: return {404, "no_route", "Not Found"};
    case LocalReason::kUpstreamConnectFailure:
      return {503, "upstream_connect_failure", "Service Unavailable"};
    case LocalReason::kNoHealthyEndpoint: return {503, "no_healthy_endpoint", "Service Unavailable"};
    case LocalReason::kUpstreamReset: return {502, "upstream_reset", "Bad Gateway"};
    case LocalReason::kBadUpstreamResponse: return {502, "bad_upstream_response", "Bad Gateway"};
    case LocalReason::kUpstreamTimeout: return {504, "upstream_timeout", "Gateway Timeout"};
    case LocalReason::kBadRequest: return {400, "bad_request", "Bad Request"};
    case LocalReason::kHeaderTooLarge:
      return {431, "request_header_too_large", "Request Header Fields Too Large"};
    case LocalReason::kUriTooLong: return {414, "uri_too_long", "URI Too Long"};
    case LocalReason::kRequestTimeout: return {408, "request_timeout", "Request Timeout"};
    case LocalReason::kStreamIdleTimeout: return {408, "stream_idle_timeout", "Request Timeout"};
    case LocalReason::kRateLimited: return {429, "rate_limited", "Too Many Requests"};
    case LocalReason::kCircuitOpen: return {503, "circuit_open", "Service Unavailable"};
    case LocalReason::kFaultAbort: return {503, "fault_abort", "Service Unavailable"};
    case LocalReason::kOverloaded: return {503, "overloaded", "Service Unavailable"};
    case LocalReason::kExpectationFailed: return {417, "expectation_failed", "Expectation Failed"};
    case LocalReason::kNotImplemented: return {501, "not_implemented", "Not Implemented"};
  }
  return {500, "internal", "Internal Server Error"};
}

}  // namespace remora::http
