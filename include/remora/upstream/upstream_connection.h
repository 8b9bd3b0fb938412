#pragma once
// One connection to an upstream endpoint: its socket and read buffer.
#include <chrono>

#include "remora/net/buffer_recycler.h"
#include "remora/net/executor.h"
#include "remora/policy/circuit_breaker.h"

namespace remora::observe {
class Gauge;
}

namespace remora::upstream {

struct UpstreamConnection {
  UpstreamConnection(net::Socket s, observe::Gauge* active);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // False when it is closed or holds unread bytes; with `peek`, also when the
  // peer closed it or sent bytes nobody asked for (one recv syscall).
  bool still_usable(bool peek);

  net::Socket socket;
  net::ReadBuffer buffer;
  std::chrono::steady_clock::time_point idle_since{};
  observe::Gauge* active_gauge;
  policy::CircuitBreaker::Guard slot;  // the cluster breaker's max_connections, while it lives
};

// The breaker slots a new upstream connection needs: one of max_pending
// while it connects (the request waits for it), one of max_connections for
// as long as it lives. Not granted when the breaker refuses either, which
// the caller answers with 503 circuit_open: nothing is queued.
struct ConnectionSlots {
  bool granted = true;
  policy::CircuitBreaker::Guard pending;
  policy::CircuitBreaker::Guard connection;
};
ConnectionSlots reserve_connection(policy::CircuitBreaker* breaker);

}  // namespace remora::upstream
