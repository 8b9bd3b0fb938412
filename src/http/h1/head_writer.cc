#include "remora/http/h1/head_writer.h"

#include <algorithm>
#include <array>
#include <charconv>

namespace remora::http::h1 {

// Literals as string_views: appended without a strlen each.
using namespace std::string_view_literals;

void append_field(std::string& out, std::string_view name, std::string_view value) {
  // One growth, then plain copies: appended piece by piece, each of a
  // head's dozen fields would cost four capacity checks and calls.
  const size_t at = out.size();
  out.resize(at + name.size() + value.size() + 4);
  char* to = std::copy_n(name.data(), name.size(), out.data() + at);
  *to++ = ':';
  *to++ = ' ';
  to = std::copy_n(value.data(), value.size(), to);
  *to++ = '\r';
  *to = '\n';
}

namespace {

void append_number(std::string& out, unsigned long long n) {
  char digits[24];
  auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, end);
}

// The fields a message's Connection header(s) name are hop-by-hop too. They
// are gathered once per message rather than searched for every field.
class ConnectionTokens {
 public:
  explicit ConnectionTokens(const HeaderList& headers) {
    for (const auto& field : headers)
      if (iequals(field.name, "connection") && count_ < values_.size()) values_[count_++] = field.value;
  }
  bool names(std::string_view name) const {
    for (size_t i = 0; i < count_; ++i)
      if (list_contains(values_[i], name)) return true;
    return false;
  }

 private:
  std::array<std::string_view, 4> values_{};
  size_t count_ = 0;
};

bool dropped(const ConnectionTokens& connection, const HeaderMutation* mutation,
             std::string_view name) {
  return is_hop_by_hop(name) || connection.names(name) || (mutation && mutation->removes(name));
}

void append_additions(std::string& out, const HeaderMutation* mutation) {
  if (!mutation) return;
  for (const auto& [name, value] : mutation->add) append_field(out, name, value);
}

}  // namespace

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2: return iequals(name, "te");
    case 7: return iequals(name, "upgrade") || iequals(name, "trailer");
    case 10: return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16: return iequals(name, "proxy-connection");
    case 17: return iequals(name, "transfer-encoding");
    default: return false;
  }
}

void write_request_head(std::string& out, const RequestHeadOut& head) {
  out.append(head.method).append(" "sv);
  out.append(head.target_prefix).append(head.target_rest).append(" HTTP/1.1\r\n"sv);
  const ConnectionTokens connection(*head.headers);
  bool has_forwarded_for = false;
  bool has_request_id = false;
  bool has_forwarded_proto = false;
  for (const auto& field : *head.headers) {
    const auto name = field.name;
    // "te: trailers" survives: an h2 (gRPC) client's promise to accept trailers.
    const bool te_trailers = iequals(name, "te") && iequals(field.value, "trailers");
    if (!te_trailers && dropped(connection, head.mutation, name)) continue;
    if (iequals(name, "x-forwarded-for")) {  // written below, as one list
      has_forwarded_for = true;
      continue;
    }
    if (head.drop_expect && iequals(name, "expect")) continue;
    // Kept when sent: behind an edge proxy it names the scheme the user saw.
    if (iequals(name, "x-forwarded-proto")) has_forwarded_proto = true;
    if (iequals(name, "x-request-id")) has_request_id = true;
    append_field(out, name, field.value);
  }
  // Every earlier hop, in order (repeated fields are one list), then ours.
  out.append("x-forwarded-for: "sv);
  if (has_forwarded_for)
    for (const auto& field : *head.headers)
      if (iequals(field.name, "x-forwarded-for")) out.append(field.value).append(", "sv);
  out.append(head.client_address).append("\r\n"sv);
  if (!has_forwarded_proto) append_field(out, "x-forwarded-proto", head.forwarded_proto);
  if (!has_request_id && !head.new_request_id.empty())
    append_field(out, "x-request-id", head.new_request_id);
  append_additions(out, head.mutation);
  if (head.chunked) out.append("transfer-encoding: chunked\r\n"sv);
  if (!head.upgrade.empty()) {
    out.append("connection: upgrade\r\n"sv);
    append_field(out, "upgrade", head.upgrade);
  }
  out.append("\r\n"sv);
}

void write_response_head(std::string& out, const ResponseHeadOut& head) {
  out.append("HTTP/1.1 "sv);
  append_number(out, head.status);
  out.append(" "sv).append(head.reason).append("\r\n"sv);
  const ConnectionTokens connection(*head.headers);
  for (const auto& field : *head.headers) {
    if (dropped(connection, head.mutation, field.name)) continue;
    append_field(out, field.name, field.value);
  }
  append_additions(out, head.mutation);
  if (head.chunked) out.append("transfer-encoding: chunked\r\n"sv);
  if (!head.upgrade.empty()) {
    out.append("connection: upgrade\r\n"sv);
    append_field(out, "upgrade", head.upgrade);
  } else if (head.close) {
    out.append("connection: close\r\n"sv);
  }
  out.append("\r\n"sv);
}

void write_local_reply(std::string& out, unsigned status, std::string_view status_text,
                       std::string_view reason, bool close) {
  out.append("HTTP/1.1 "sv);
  append_number(out, status);
  out.append(" "sv).append(status_text).append("\r\ncontent-type: text/plain\r\ncontent-length: "sv);
  append_number(out, reason.size() + 1);
  out.append("\r\nx-remora-reason: "sv).append(reason).append("\r\n"sv);
  if (close) out.append("connection: close\r\n"sv);
  out.append("\r\n"sv).append(reason).append("\n"sv);
}

}  // namespace remora::http::h1
