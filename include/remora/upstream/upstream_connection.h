#pragma once
// One connection to an upstream endpoint: its socket and read buffer.
#include <chrono>

#include <boost/asio/ip/tcp.hpp>
#include "remora/net/buffer_recycler.h"

namespace remora::observe {
class Gauge;
}

namespace remora::upstream {

struct UpstreamConnection {
  UpstreamConnection(boost::asio::ip::tcp::socket s, observe::Gauge* active);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  // False when it is closed or holds unread bytes; with `peek`, also when the
  // peer closed it or sent bytes nobody asked for (one recv syscall).
  bool still_usable(bool peek);

  boost::asio::ip::tcp::socket socket;
  net::ReadBuffer buffer;
  std::chrono::steady_clock::time_point idle_since{};
  observe::Gauge* active_gauge;
};

}  // namespace remora::upstream
