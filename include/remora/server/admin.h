#pragma once
// The admin listener (main thread): /ready /metrics /config /clusters.
#include <functional>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace remora::server {

struct AdminResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// path (without query) → response. Called on the main thread.
using AdminHandler = std::function<AdminResponse(std::string_view path)>;

class AdminServer {
 public:
  AdminServer(boost::asio::io_context& io, AdminHandler handler);
  ~AdminServer();
  void listen(const boost::asio::ip::tcp::endpoint& address, boost::system::error_code& ec);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `remora health`: GET `url` (http://host:port/path); true on a 200.
bool probe(const std::string& url, std::string& error);

}  // namespace remora::server
