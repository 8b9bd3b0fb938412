#pragma once
// Entry point for an accepted downstream connection: hands it to the codec
// of the listener's protocol (`auto` starts as HTTP/1.1, which switches to
// HTTP/2 when the first bytes are the HTTP/2 client preface).
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

#include "remora/net/buffer_recycler.h"
#include "remora/net/executor.h"
#include "remora/proxy/snapshot.h"

namespace remora::proxy {

class WorkerContext;

void serve_downstream(net::Socket socket, WorkerContext& worker, std::string listener_name,
                      ListenerProtocol protocol);

// The protocol of a TLS connection: what ALPN negotiated ("h2",
// "http/1.1"), else the listener's own (`auto` still sniffs the preface).
// The TLS handshake passes its result here, then serves as for `protocol`.
ListenerProtocol protocol_for_alpn(std::string_view alpn, ListenerProtocol configured);

// `initial`: bytes already read from the socket. `detect_h2`: a listener in
// `auto` mode; a connection opening with the HTTP/2 client preface is handed
// to serve_h2.
void serve_h1(net::Socket socket, WorkerContext& worker, std::string listener_name,
              net::ReadBuffer initial, bool detect_h2);
void serve_h2(net::Socket socket, WorkerContext& worker, std::string listener_name,
              net::ReadBuffer initial);

// Downstream connections open in this process, all workers and protocols.
std::atomic<int64_t>& open_downstream_connections();

// A fresh read buffer for a downstream connection: bounded by the header
// limit plus two read chunks.
net::ReadBuffer downstream_read_buffer();

}  // namespace remora::proxy
