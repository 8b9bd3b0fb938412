#include "remora/proxy/downstream.h"

namespace remora::proxy {

using tcp = boost::asio::ip::tcp;

std::atomic<int64_t>& open_downstream_connections() {
  static std::atomic<int64_t> count{0};
  return count;
}

net::ReadBuffer downstream_read_buffer() {
  return net::ReadBuffer(64 * 1024 + 2 * net::kRecycledBlock);
}

ListenerProtocol protocol_for_alpn(std::string_view alpn, ListenerProtocol configured) {
  if (alpn == "h2") return ListenerProtocol::kHttp2;
  if (alpn == "http/1.1") return ListenerProtocol::kHttp1;
  return configured;
}

void serve_downstream(net::Socket socket, WorkerContext& worker, std::string listener_name,
                      ListenerProtocol protocol) {
  switch (protocol) {
    case ListenerProtocol::kHttp1:
    case ListenerProtocol::kAuto:
      serve_h1(std::move(socket), worker, std::move(listener_name), downstream_read_buffer(),
               protocol == ListenerProtocol::kAuto);
      return;
    case ListenerProtocol::kHttp2:
      serve_h2(std::move(socket), worker, std::move(listener_name), downstream_read_buffer());
      return;
  }
}

}  // namespace remora::proxy
