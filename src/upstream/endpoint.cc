#include "remora/upstream/endpoint.h"

#include <sys/socket.h>

#include "remora/observe/metrics.h"
#include "remora/upstream/h2_client.h"

namespace remora::upstream {

UpstreamConnection::UpstreamConnection(net::Socket s, observe::Gauge* active)
    : socket(std::move(s)), active_gauge(active) {
  if (active_gauge) active_gauge->add(1);
}

UpstreamConnection::~UpstreamConnection() {
  if (active_gauge) active_gauge->add(-1);
}

ConnectionSlots reserve_connection(policy::CircuitBreaker* breaker) {
  ConnectionSlots slots;
  if (!breaker) return slots;
  slots.pending = breaker->try_acquire(policy::Resource::kPending);
  if (slots.pending) slots.connection = breaker->try_acquire(policy::Resource::kConnections);
  slots.granted = static_cast<bool>(slots.connection);
  if (!slots.granted) slots.pending.release();
  return slots;
}

bool UpstreamConnection::still_usable(bool peek) {
  if (!socket.is_open() || buffer.size() != 0) return false;
  if (!peek) return true;
  // A closed keep-alive connection is readable (EOF) while idle; so is one
  // where the upstream sent something unasked. Either way it is not reusable.
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

std::unique_ptr<UpstreamConnection> UpstreamEndpoint::acquire(
    std::chrono::steady_clock::time_point now, std::chrono::milliseconds idle_timeout) {
  while (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    // A connection back in the pool for under 200 ms is taken without the
    // peek (a syscall per request under load): a close racing that window is
    // the same race the peek itself has, and a bodiless request that meets
    // it is sent again on a fresh connection (H1Connection::proxy).
    const auto idle = now - connection->idle_since;
    if (idle < idle_timeout && connection->still_usable(idle >= std::chrono::milliseconds(200)))
      return connection;
  }
  return nullptr;
}

void UpstreamEndpoint::release(std::unique_ptr<UpstreamConnection> connection,
                               std::chrono::steady_clock::time_point now, size_t max_idle) {
  if (idle_.size() >= max_idle) return;  // dropping it closes it
  connection->idle_since = now;
  connection->buffer.shrink_to_fit();  // an idle connection holds no read buffer
  idle_.push_back(std::move(connection));
}

void UpstreamEndpoint::sweep(std::chrono::steady_clock::time_point now,
                             std::chrono::milliseconds idle_timeout) {
  std::erase_if(idle_, [&](const auto& c) { return now - c->idle_since >= idle_timeout; });
}

void UpstreamEndpoint::close_idle() {
  idle_.clear();
  for (auto& client : h2_clients) client->close();
  h2_clients.clear();
}

}  // namespace remora::upstream
