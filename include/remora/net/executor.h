#pragma once
// The one executor type of the request path: a worker's io_context's own.
//
// Asio's default for sockets, timers and coroutines is any_io_executor,
// which type-erases the executor: every post wraps its function in a heap
// object, every executor copy and comparison is an indirect call, and every
// completion checks whether it must hop executors. Every I/O object and
// coroutine on the request path names this concrete type instead (callgrind:
// 5 % fewer instructions per HTTP/2 request).
#include <chrono>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace remora::net {

using Executor = boost::asio::io_context::executor_type;

template <typename T = void>
using Awaitable = boost::asio::awaitable<T, Executor>;

using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
using Timer = boost::asio::basic_waitable_timer<
    std::chrono::steady_clock, boost::asio::wait_traits<std::chrono::steady_clock>, Executor>;

// The completion token of an Awaitable's co_await.
inline constexpr boost::asio::use_awaitable_t<Executor> use_awaitable;

// co_await without exceptions: the error lands in `ec`.
inline auto nothrow(boost::system::error_code& ec) {
  return boost::asio::redirect_error(use_awaitable, ec);
}

}  // namespace remora::net
