#include "remora/server/admin.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "remora/net/address.h"

namespace remora::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

struct AdminServer::Impl {
  asio::io_context& io;
  AdminHandler handler;
  tcp::acceptor acceptor{io};

  asio::awaitable<void> serve(beast::tcp_stream stream) {
    beast::flat_buffer buffer;
    for (;;) {
      boost::system::error_code ec;
      bhttp::request<bhttp::string_body> request;
      stream.expires_after(std::chrono::seconds(30));
      co_await bhttp::async_read(stream, buffer, request, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      std::string_view target = request.target();
      auto result = handler(target.substr(0, target.find('?')));
      bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(result.status),
                                                   request.version()};
      response.set(bhttp::field::content_type, result.content_type);
      response.keep_alive(request.keep_alive());
      if (request.method() != bhttp::verb::head) response.body() = std::move(result.body);
      response.prepare_payload();
      co_await bhttp::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !request.keep_alive()) break;
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  asio::awaitable<void> accept() {
    for (;;) {
      boost::system::error_code ec;
      auto socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open()) co_return;
      if (ec) continue;
      asio::co_spawn(io, serve(beast::tcp_stream(std::move(socket))), asio::detached);
    }
  }
};

AdminServer::AdminServer(asio::io_context& io, AdminHandler handler)
    : impl_(new Impl{io, std::move(handler)}) {}

AdminServer::~AdminServer() = default;

void AdminServer::listen(const tcp::endpoint& address, boost::system::error_code& ec) {
  impl_->acceptor.open(address.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(address, ec);
  if (!ec) impl_->acceptor.listen(128, ec);
  if (!ec) asio::co_spawn(impl_->io, impl_->accept(), asio::detached);
}

bool probe(const std::string& url, std::string& error) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  auto slash = rest.find('/');
  auto host_port = rest.substr(0, slash);
  std::string path = slash == std::string_view::npos ? "/ready" : std::string(rest.substr(slash));
  auto endpoint = net::parse_endpoint(host_port);
  if (!endpoint) {
    error = "not an http://ip:port/path URL: " + url;
    return false;
  }
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(5));
    stream.connect(*endpoint);
    bhttp::request<bhttp::empty_body> request{bhttp::verb::get, path, 11};
    request.set(bhttp::field::host, std::string(host_port));
    request.keep_alive(false);
    bhttp::write(stream, request);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> response;
    bhttp::read(stream, buffer, response);
    if (response.result_int() == 200) return true;
    error = "status " + std::to_string(response.result_int()) + ": " + response.body();
  } catch (const std::exception& e) {
    error = e.what();
  }
  return false;
}

}  // namespace remora::server
