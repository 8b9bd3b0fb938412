#include "remora/config/address.h"

#include <arpa/inet.h>

#include "text.h"

namespace remora::config {
namespace {

HostPortResult fail(std::string why) {
  HostPortResult r;
  r.error = std::move(why);
  return r;
}

// Decimal 1..65535, nothing else (no sign, no service names).
bool parse_port(std::string_view text, std::uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

bool is_ipv4(const std::string& text) {
  in_addr a;
  return inet_pton(AF_INET, text.c_str(), &a) == 1;
}

bool is_ipv6(const std::string& text) {
  in6_addr a;
  return inet_pton(AF_INET6, text.c_str(), &a) == 1;
}

// One spelling per address ("::0001" → "::1"), so equal addresses compare equal.
std::string canonical(int family, const std::string& text) {
  unsigned char bytes[sizeof(in6_addr)];
  char out[INET6_ADDRSTRLEN];
  if (inet_pton(family, text.c_str(), bytes) != 1) return text;
  if (inet_ntop(family, bytes, out, sizeof out) == nullptr) return text;
  return out;
}

// Splits "host:port" / "[v6]:port"; `bracketed` tells whether [] were used.
HostPortResult split(std::string_view text, bool& bracketed) {
  HostPortResult r;
  std::string_view port_text;
  bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) return fail("missing ']' after the IPv6 address");
    r.value.host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return fail("missing :port after ']'");
    port_text = rest.substr(1);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("missing :port");
    r.value.host = std::string(text.substr(0, colon));
    if (r.value.host.find(':') != std::string::npos) {
      return fail("write IPv6 addresses in brackets, e.g. [::1]:8080");
    }
    port_text = text.substr(colon + 1);
  }
  if (r.value.host.empty()) return fail("missing host before :port");
  if (!parse_port(port_text, r.value.port)) {
    return fail("port must be a number from 1 to 65535, got " + detail::quoted(port_text));
  }
  return r;
}

}  // namespace

std::string HostPort::to_string() const {
  std::string p = std::to_string(port);
  switch (kind) {
    case Kind::ipv6:
      return "[" + host + "]:" + p;
    case Kind::dns:
      return "dns:" + host + ":" + p;
    case Kind::ipv4:
      break;
  }
  return host + ":" + p;
}

HostPortResult parse_ip_port(std::string_view text) {
  bool bracketed = false;
  HostPortResult r = split(text, bracketed);
  if (!r.ok()) return r;
  if (bracketed) {
    if (!is_ipv6(r.value.host))
      return fail(detail::quoted(r.value.host) + " is not an IPv6 address");
    r.value.kind = HostPort::Kind::ipv6;
    r.value.host = canonical(AF_INET6, r.value.host);
  } else {
    if (!is_ipv4(r.value.host)) {
      return fail(detail::quoted(r.value.host) +
                  " is not an IP address (use e.g. 127.0.0.1 or 0.0.0.0)");
    }
    r.value.kind = HostPort::Kind::ipv4;
    r.value.host = canonical(AF_INET, r.value.host);
  }
  return r;
}

namespace {
HostPortResult parse_plain_endpoint(std::string_view text);
}

HostPortResult parse_endpoint(std::string_view text) {
  std::uint32_t weight = 1;
  if (auto space = text.find(' '); space != std::string_view::npos) {
    std::string_view option = text.substr(space + 1);
    while (option.starts_with(' ')) option.remove_prefix(1);
    text = text.substr(0, space);
    if (!option.starts_with("weight="))
      return fail("unknown endpoint option " + detail::quoted(option) +
                  " (the only one is weight=N)");
    std::string_view digits = option.substr(7);
    unsigned value = 0;
    bool ok = !digits.empty() && digits.size() <= 3;
    for (char c : digits) {
      ok = ok && c >= '0' && c <= '9';
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (!ok || value < 1 || value > 128)
      return fail("weight must be a whole number from 1 to 128, got " + detail::quoted(digits));
    weight = value;
  }
  HostPortResult r = parse_plain_endpoint(text);
  if (r.ok()) r.value.weight = weight;
  return r;
}

namespace {
HostPortResult parse_plain_endpoint(std::string_view text) {
  if (text.starts_with("dns:")) {
    bool bracketed = false;
    HostPortResult r = split(text.substr(4), bracketed);
    if (!r.ok()) return r;
    if (bracketed || !is_hostname(r.value.host)) {
      return fail(detail::quoted(r.value.host) + " is not a valid hostname");
    }
    r.value.kind = HostPort::Kind::dns;
    return r;
  }
  HostPortResult r = parse_ip_port(text);
  if (!r.ok() && text.find(':') != std::string_view::npos && text.front() != '[') {
    // The common slip: a service name without the dns: prefix.
    std::string host(text.substr(0, text.rfind(':')));
    if (!is_ipv4(host) && is_hostname(host)) {
      return fail(detail::quoted(host) + " is not an IP address; write \"dns:" + std::string(text) +
                  "\" to resolve it by DNS");
    }
  }
  return r;
}

}  // namespace

HostPortResult parse_host_port(std::string_view text) {
  HostPortResult r = parse_ip_port(text);
  if (r.ok()) return r;
  bool bracketed = false;
  HostPortResult named = split(text, bracketed);
  if (!named.ok() || bracketed) return r;
  if (!is_hostname(named.value.host)) {
    return fail(detail::quoted(named.value.host) + " is neither an IP address nor a hostname");
  }
  named.value.kind = HostPort::Kind::dns;
  return named;
}

bool is_hostname(std::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  std::size_t label = 0;
  char previous = '.';
  for (char c : text) {
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (c == '.') {
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else if (alnum || c == '-') {
      if (c == '-' && label == 0) return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    previous = c;
  }
  return label > 0 && previous != '-';
}

}  // namespace remora::config
