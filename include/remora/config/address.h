#pragma once
// The address forms remora.yaml accepts. Listeners and the admin endpoint
// bind IP literals; cluster endpoints may also name a DNS name to resolve.
// The runtime parses endpoints with these same functions, so the validator
// and the proxy cannot disagree about what an address means.
#include <cstdint>
#include <string>
#include <string_view>

namespace remora::config {

struct HostPort {
  enum class Kind { ipv4, ipv6, dns };
  Kind kind = Kind::ipv4;
  std::string host;  // IP literal without brackets, or the DNS name
  std::uint16_t port = 0;
  std::uint32_t weight = 1;  // cluster endpoints: "10.0.0.1:80 weight=3" (1..128)

  // Canonical text (without the weight): "10.0.0.1:80", "[::1]:80", "dns:items.svc:8080".
  std::string to_string() const;
};

struct HostPortResult {
  HostPort value;
  std::string error;  // empty on success; says what is wrong, not where
  bool ok() const { return error.empty(); }
};

// "0.0.0.0:8080", "127.0.0.1:9901", "[::1]:8080", "[::]:80". Port 1..65535.
HostPortResult parse_ip_port(std::string_view text);

// A cluster endpoint: an IP literal with a port, or "dns:<hostname>:<port>",
// optionally followed by " weight=N" (1..128, default 1): the endpoint's
// share of traffic relative to the others, under every balancer.
HostPortResult parse_endpoint(std::string_view text);

// A dialled address (control plane): IP literal or hostname, with a port.
HostPortResult parse_host_port(std::string_view text);

// RFC 1123 hostname: dot-separated labels of letters, digits and '-'.
bool is_hostname(std::string_view text);

}  // namespace remora::config
