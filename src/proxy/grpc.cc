#include "remora/proxy/grpc.h"

namespace remora::proxy {

std::optional<std::chrono::milliseconds> parse_grpc_timeout(std::string_view v) {
  if (v.size() < 2 || v.size() > 9) return std::nullopt;
  uint64_t n = 0;
  for (char c : v.substr(0, v.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  using namespace std::chrono;
  switch (v.back()) {
    case 'H':
      return duration_cast<milliseconds>(hours(n));
    case 'M':
      return duration_cast<milliseconds>(minutes(n));
    case 'S':
      return duration_cast<milliseconds>(seconds(n));
    case 'm':
      return milliseconds(n);
    case 'u':
      return duration_cast<milliseconds>(microseconds(n));
    case 'n':
      return duration_cast<milliseconds>(nanoseconds(n));
    default:
      return std::nullopt;
  }
}

int grpc_status_for(http::LocalReason reason) {
  using http::LocalReason;
  switch (reason) {
    case LocalReason::kNoRoute:
      return 12;  // UNIMPLEMENTED
    case LocalReason::kUpstreamTimeout:
    case LocalReason::kStreamIdleTimeout:
      return 4;  // DEADLINE_EXCEEDED
    case LocalReason::kOverloaded:
    case LocalReason::kRateLimited:
      return 8;  // RESOURCE_EXHAUSTED
    case LocalReason::kBadRequest:
    case LocalReason::kHeaderTooLarge:
      return 13;  // INTERNAL
    default:
      return 14;  // UNAVAILABLE
  }
}

namespace {
int grpc_status_value(std::string_view value) {
  constexpr int kUnknown = 2;
  if (value.empty() || value.size() > 2) return kUnknown;
  int code = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return kUnknown;
    code = code * 10 + (c - '0');
  }
  return code;
}
}  // namespace

int grpc_status_in(const upstream::Fields& fields) {
  for (const auto& [name, value] : fields)
    if (name == "grpc-status") return grpc_status_value(value);
  return -1;
}

int grpc_status_in(const http::HeaderList& fields) {
  const auto* field = fields.find("grpc-status");
  return field ? grpc_status_value(field->value) : -1;
}

int grpc_status_in(std::span<const nghttp2_nv> fields) {
  const auto value = upstream::nva_value(fields, "grpc-status");
  return value ? grpc_status_value(*value) : -1;
}

}  // namespace remora::proxy
