#pragma once
// A route's fault injection (chaos testing in production traffic): delay
// some requests, abort others with a chosen status, before the upstream call.
// Optionally only for requests that carry a given header, so one client can
// test its own resilience without touching anyone else's traffic.
#include <chrono>
#include <cstdint>
#include <string>

namespace remora::policy {

struct Fault {
  std::string header;  // lower case; empty: every request of the route
  std::chrono::milliseconds delay{0};
  double delay_percent = 0;
  unsigned abort_status = 0;       // HTTP status; 0: derived from abort_grpc_status
  unsigned abort_grpc_status = 0;  // gRPC requests; 0: derived from abort_status
  double abort_percent = 0;

  bool any() const { return delay_percent > 0 || abort_percent > 0; }

  struct Decision {
    std::chrono::milliseconds delay{0};
    bool abort = false;
  };
  // `random` is uniform over uint64; each fault draws from its own bits.
  Decision decide(uint64_t random) const {
    Decision d;
    if (hit(random & 0xffffffffu, delay_percent)) d.delay = delay;
    d.abort = hit(random >> 32, abort_percent);
    return d;
  }

  // The status of an abort for a plain HTTP request, and for a gRPC one.
  unsigned http_status() const { return abort_status ? abort_status : 503; }
  unsigned grpc_status() const {
    if (abort_grpc_status) return abort_grpc_status;
    switch (abort_status) {  // the gRPC spec's HTTP → status mapping
      case 400: return 13;   // INTERNAL
      case 401: return 16;   // UNAUTHENTICATED
      case 403: return 7;    // PERMISSION_DENIED
      case 404: return 12;   // UNIMPLEMENTED
      case 429: return 14;   // UNAVAILABLE
      case 502:
      case 503:
      case 504: return 14;   // UNAVAILABLE
      default: return 2;     // UNKNOWN
    }
  }

 private:
  static bool hit(uint64_t random32, double percent) {
    return percent > 0 && static_cast<double>(random32) < percent / 100.0 * 4294967296.0;
  }
};

}  // namespace remora::policy
