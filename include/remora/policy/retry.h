#pragma once
// A route's retry policy, compiled: which failures are tried again, how
// often, how long to wait in between, and how much body may be kept for a
// replay. The decision is pure; the connection code supplies what happened.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "remora/policy/backoff.h"

namespace remora::policy {

// What ended a try, as far as retrying is concerned.
enum class TryOutcome : uint8_t {
  kConnectFailure,  // no connection (refused, unreachable, connect timeout)
  kReset,           // the connection or stream died before a response head
  kPerTryTimeout,   // no response head within per_try_timeout
  kResponse,        // a response head came: see its status / grpc-status
};

struct RetryPolicy {
  uint32_t attempts = 1;  // total tries, the first included: 1 = no retry
  std::chrono::milliseconds per_try_timeout{0};  // 0: only the route timeout
  bool on_5xx = false, on_gateway_error = false, on_reset = false, on_connect_failure = false,
       on_status_codes = false;
  std::vector<unsigned> status_codes;
  uint32_t grpc_statuses = 0;  // bit n: retry on grpc-status n
  Backoff backoff;
  size_t buffer_limit = 64 * 1024;
  bool non_idempotent = false;

  bool enabled() const { return attempts > 1; }

  static bool idempotent(std::string_view method) {
    return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
           method == "DELETE" || method == "TRACE";
  }
  bool allows_method(std::string_view method) const {
    return non_idempotent || idempotent(method);
  }

  // Does this outcome call for another try? (`status` 0 and `grpc_status`
  // -1 when there is none.)
  bool retriable(TryOutcome outcome, unsigned status = 0, int grpc_status = -1) const {
    switch (outcome) {
      case TryOutcome::kConnectFailure:
        return on_connect_failure || on_5xx || on_gateway_error;
      case TryOutcome::kReset:
      case TryOutcome::kPerTryTimeout:
        return on_reset || on_5xx || on_gateway_error;
      case TryOutcome::kResponse:
        break;
    }
    if (on_5xx && status >= 500 && status <= 599) return true;
    if (on_gateway_error && (status == 502 || status == 503 || status == 504)) return true;
    if (on_status_codes &&
        std::find(status_codes.begin(), status_codes.end(), status) != status_codes.end())
      return true;
    return grpc_status >= 0 && grpc_status < 32 && (grpc_statuses >> grpc_status & 1u);
  }
};

}  // namespace remora::policy
