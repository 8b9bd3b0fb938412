#pragma once
// Serves one accepted HTTP/1.1 downstream connection until it closes:
// read a request head, route it, stream it to an upstream, stream the
// response back; repeat while keep-alive holds.
#include <cstdint>
#include <string>

#include <boost/asio/ip/tcp.hpp>

namespace remora::proxy {

class WorkerContext;

// Downstream connections open in this process, all workers together.
int64_t open_downstream_connections();

void serve_h1(boost::asio::ip::tcp::socket socket, WorkerContext& worker,
              std::string listener_name);

}  // namespace remora::proxy
