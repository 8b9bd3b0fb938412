#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <type_traits>

namespace remora::net {

// Socket I/O done in place, without a trip through the event loop.

// Sends what a plain TCP socket's kernel buffer takes right now, in place,
// and leaves in `rest` what it did not take; true when nothing is left.
//
// Why not just async_write: an async write that completes at once (the usual
// case: the kernel takes the bytes) is still posted to the event loop, and
// each posted completion costs the loop one more epoll_wait before the
// coroutine goes on. Under light load that is two extra syscalls per proxied
// request. Other streams (TLS) send nothing here and take the async path.
//
// Usage:
//   boost::beast::buffers_suffix rest(buffers);
//   if (!net::send_now(socket, rest, ec)) co_await asio::async_write(socket, rest, ...);
template <class Stream, class Buffers>
bool send_now(Stream& stream, boost::beast::buffers_suffix<Buffers>& rest,
              boost::system::error_code& ec) {
  if constexpr (std::is_same_v<Stream, boost::asio::ip::tcp::socket>) {
    if (!stream.non_blocking()) {
      stream.non_blocking(true, ec);  // once per socket; async operations ignore it
      if (ec) return false;
    }
    const size_t sent = stream.write_some(rest, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
      ec = {};
      return false;
    }
    if (ec) return true;  // failed: nothing more to try; the caller sees `ec`
    rest.consume(sent);
    return boost::asio::buffer_size(rest) == 0;
  } else {
    (void)stream;
    (void)rest;
    (void)ec;
    return false;
  }
}

// Reads what a plain TCP socket has received already into `buffers`, in
// place, without waiting: the bytes read (0 when none are there yet, or for
// other streams). For a peer's bytes that are most likely there (a small body
// right behind its head) and worth having before the next write.
template <class Stream, class Buffers>
size_t receive_now(Stream& stream, const Buffers& buffers, boost::system::error_code& ec) {
  if constexpr (std::is_same_v<Stream, boost::asio::ip::tcp::socket>) {
    if (!stream.non_blocking()) {
      stream.non_blocking(true, ec);
      if (ec) return 0;
    }
    const size_t n = stream.read_some(buffers, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) ec = {};
    return n;
  } else {
    (void)stream;
    (void)buffers;
    (void)ec;
    return 0;
  }
}

}  // namespace remora::net
