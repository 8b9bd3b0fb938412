#pragma once
// Replies remora makes itself (DESIGN §5): a status, a short body and the
// `x-remora-reason` header naming why.
#include <string_view>

namespace remora::http {

enum class LocalReason {
  kNoRoute,
  kUpstreamConnectFailure,
  kNoHealthyEndpoint,
  kUpstreamReset,
  kBadUpstreamResponse,
  kUpstreamTimeout,
  kBadRequest,
  kHeaderTooLarge,
  kUriTooLong,
  kRequestTimeout,
  kStreamIdleTimeout,
  kRateLimited,
  kCircuitOpen,
  kFaultAbort,  // the status is the route's fault.abort.status
  kOverloaded,
  kExpectationFailed,
  kNotImplemented,
};

struct LocalReply {
  unsigned status;
  std::string_view reason;  // the x-remora-reason value
  std::string_view status_text;
};

LocalReply local_reply(LocalReason reason);

}  // namespace remora::http
