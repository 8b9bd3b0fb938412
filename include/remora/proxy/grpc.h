#pragma once
// gRPC over HTTP/2 as a proxy sees it: the request deadline, the status a
// local reply maps to (DESIGN §5), and the status a response carries.
#include <chrono>
#include <optional>
#include <span>
#include <string_view>

#include "remora/http/local_reply.h"
#include "remora/policy/outlier_detector.h"
#include "remora/upstream/h2_client.h"

namespace remora::proxy {

inline bool is_grpc(std::string_view content_type) {
  return content_type.starts_with("application/grpc");
}

// A grpc-timeout value: 1-8 digits and a unit ("100m", "2S", "1H").
std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view value);

// The grpc-status of a local reply for `reason`.
int grpc_status_for(http::LocalReason reason);

// The grpc-status among `fields`: -1 when there is none, 2 (UNKNOWN) when it
// is not a number.
int grpc_status_in(const upstream::Fields& fields);
int grpc_status_in(const http::HeaderList& fields);
int grpc_status_in(std::span<const nghttp2_nv> fields);

// What a response tells outlier detection: by its HTTP status, or for a
// trailers-only gRPC answer (`grpc` ≥ 0) by its grpc-status, as gRPC maps
// them to HTTP: UNAVAILABLE and DEADLINE_EXCEEDED are gateway failures,
// UNKNOWN, INTERNAL and DATA_LOSS server errors, the rest the caller's.
constexpr policy::Outcome outlier_outcome(unsigned status, int grpc) {
  if (grpc < 0 || status != 200) return policy::outcome_of_status(status);
  switch (grpc) {
    case 4:   // DEADLINE_EXCEEDED
    case 14:  // UNAVAILABLE
      return policy::Outcome::kGatewayFailure;
    case 2:   // UNKNOWN
    case 13:  // INTERNAL
    case 15:  // DATA_LOSS
      return policy::Outcome::kServerError;
    default:
      return policy::Outcome::kSuccess;
  }
}

}  // namespace remora::proxy
