#pragma once
// "host:port" text ↔ TCP endpoints. IP literals only; names go through
// upstream::DnsResolver, off the request path.
#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

namespace remora::net {

using Endpoint = boost::asio::ip::tcp::endpoint;

// "127.0.0.1:80", "[::1]:80", "0.0.0.0:15001" → endpoint; nullopt otherwise.
std::optional<Endpoint> parse_endpoint(std::string_view text);

// "dns:name:port" → {name, port}; nullopt when not of that form.
struct DnsName {
  std::string host;
  unsigned short port = 0;
};
std::optional<DnsName> parse_dns_name(std::string_view text);

std::string to_string(const Endpoint& endpoint);

}  // namespace remora::net
