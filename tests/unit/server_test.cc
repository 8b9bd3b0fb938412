// server/: a listening socket bound on the main thread and handed to a worker
// as a plain descriptor.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include <boost/asio/ip/tcp.hpp>

#include "remora/server/worker.h"

using remora::server::BoundListener;
using remora::server::Worker;

namespace {
bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

BoundListener bind_loopback() {
  boost::system::error_code ec;
  auto bound = Worker::bind("test", {boost::asio::ip::make_address("127.0.0.1"), 0}, ec);
  REQUIRE_FALSE(ec);
  return bound;
}
}  // namespace

TEST_CASE("a bound listener is a listening descriptor until a worker adopts it") {
  auto bound = bind_loopback();
  REQUIRE(bound.fd >= 0);
  CHECK(bound.acceptor == nullptr);
  int listening = 0;
  socklen_t size = sizeof listening;
  REQUIRE(::getsockopt(bound.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0);
  CHECK(listening == 1);
}

TEST_CASE("a listener never adopted closes its descriptor, once, with its last owner") {
  int fd = -1;
  {
    auto bound = bind_loopback();
    fd = bound.fd;
    BoundListener moved(std::move(bound));
    CHECK(bound.fd == -1);  // the moved-from one owns nothing
    CHECK(moved.fd == fd);
    CHECK(is_open(fd));
  }
  CHECK_FALSE(is_open(fd));
}
