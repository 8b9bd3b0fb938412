// net/: the splice pipe that moves large bodies between two TCP sockets.
#include <doctest/doctest.h>

#include <string>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "remora/net/splice_pipe.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using remora::net::SplicePipe;

namespace {
// Two connected loopback TCP sockets.
struct Connected {
  explicit Connected(asio::io_context& io) : near(io), far(io) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    far.connect(acceptor.local_endpoint());
    near = acceptor.accept();
    near.non_blocking(true);  // as the proxy's sockets are when it splices
  }
  tcp::socket near, far;
};
}  // namespace

TEST_CASE("splice pipe: moves bytes from one socket to another, unchanged") {
  asio::io_context io;
  Connected from(io), to(io);
  SplicePipe pipe;
  REQUIRE(pipe.ok());
  CHECK(pipe.room() >= 64 * 1024);

  std::string sent(1024 * 1024, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + i * 7 % 26);
  std::thread writer([&] { asio::write(from.far, asio::buffer(sent)); });

  std::string received;
  char block[64 * 1024];
  auto take_available = [&] {  // the receiver keeps reading, or its window closes
    while (to.far.available() > 0) received.append(block, to.far.read_some(asio::buffer(block)));
  };
  size_t moved = 0;
  boost::system::error_code ec;
  while (moved < sent.size()) {
    pipe.fill(from.near.native_handle(), std::min(pipe.room(), sent.size() - moved), ec);
    REQUIRE((!ec || ec == asio::error::would_block));
    moved += pipe.drain(to.near.native_handle(), ec);
    REQUIRE((!ec || ec == asio::error::would_block));
    take_available();
  }
  writer.join();
  CHECK(pipe.held() == 0);
  while (received.size() < sent.size())
    received.append(block, to.far.read_some(asio::buffer(block)));
  CHECK(received == sent);
}

TEST_CASE("splice pipe: nothing received yet is would_block, a closed peer is eof") {
  asio::io_context io;
  Connected from(io), to(io);
  SplicePipe pipe;
  REQUIRE(pipe.ok());
  boost::system::error_code ec;
  CHECK(pipe.fill(from.near.native_handle(), 1024, ec) == 0);
  CHECK(ec == asio::error::would_block);

  asio::write(from.far, asio::buffer(std::string("tail")));
  from.far.close();
  size_t n = 0;
  while (n < 4) {
    n += pipe.fill(from.near.native_handle(), 1024, ec);
    REQUIRE((!ec || ec == asio::error::would_block));
  }
  CHECK(pipe.held() == 4);
  CHECK(pipe.fill(from.near.native_handle(), 1024, ec) == 0);
  CHECK(ec == asio::error::eof);
}
