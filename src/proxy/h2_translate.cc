#include "remora/proxy/h2_translate.h"

#include <cassert>
#include <charconv>
#include <cstring>
#include <memory>

#include <boost/container/small_vector.hpp>

#include "remora/http/h1/head_writer.h"
#include "remora/proxy/request_id.h"

namespace remora::proxy {

std::string lower_case(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);  // ASCII only: no locale lookup
  return out;
}

bool connection_specific(std::string_view name, std::string_view value) {
  if (http::iequals(name, "te")) return !http::iequals(value, "trailers");
  return http::h1::is_hop_by_hop(name) || http::iequals(name, "host") ||
         http::iequals(name, "expect");
}

bool stays_behind(std::string_view name, std::string_view value,
                  const http::HeaderMutation& mutation) {
  return connection_specific(name, value) || mutation.removes(name);
}

void H2HeaderBlock::reserve(size_t bytes, size_t fields) {
  assert(!storage_);
  const size_t bytes_as_fields = (bytes + sizeof(nghttp2_nv) - 1) / sizeof(nghttp2_nv);
  storage_ = std::make_unique_for_overwrite<nghttp2_nv[]>(fields + bytes_as_fields);
  nva_ = storage_.get();
  room_ = fields;
  arena_ = reinterpret_cast<char*>(nva_ + fields);
  capacity_ = bytes;
}

std::string_view H2HeaderBlock::keep(std::string_view bytes, bool lower) {
  assert(used_ + bytes.size() <= capacity_);  // reserve() counted everything kept
  char* at = arena_ + used_;
  used_ += bytes.size();
  if (!lower) {
    std::memcpy(at, bytes.data(), bytes.size());
  } else {
    for (size_t i = 0; i < bytes.size(); ++i) {
      const char c = bytes[i];
      at[i] = c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c;
    }
  }
  return {at, bytes.size()};
}

void H2HeaderBlock::add(std::string_view name, std::string_view value) {
  auto bytes = [](std::string_view s) {
    return reinterpret_cast<uint8_t*>(const_cast<char*>(s.data()));
  };
  uint8_t flags = NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE;
  // Unique per request: indexing it would only churn the HPACK table.
  if (name == "x-request-id") flags |= NGHTTP2_NV_FLAG_NO_INDEX;
  assert(count_ < room_);  // reserve() counted every field
  nva_[count_++] = {bytes(name), bytes(value), name.size(), value.size(), flags};
}

H2RequestHead::H2RequestHead(std::string_view method, std::string_view authority,
                             std::string_view path, const http::HeaderList& fields,
                             const http::HeaderMutation& mutation, std::string_view client_ip,
                             WorkerContext& worker) {
  // Fields an h1 Connection header names are hop-by-hop too (h2 forbids the
  // header itself). Its values are gathered once, not looked up per field.
  boost::container::small_vector<std::string_view, 2> connection_lists;
  size_t bytes = method.size() + authority.size() + path.size() + client_ip.size() +
                 kRequestIdSize;
  for (const auto& field : fields) {
    if (http::iequals(field.name, "connection")) connection_lists.push_back(field.value);
    bytes += field.name.size() + field.value.size() + 2;  // 2: ", " in x-forwarded-for
  }
  for (const auto& [n, v] : mutation.add) bytes += n.size() + v.size();
  block_.reserve(bytes, fields.size() + mutation.add.size() + 8);

  block_.add(":method", block_.keep(method));
  block_.add(":scheme", "http");
  block_.add(":authority", block_.keep(authority));
  block_.add(":path", block_.keep(path));
  bool has_request_id = false, has_proto = false;
  auto passes = [&](const http::HeaderField& field) {
    if (stays_behind(field.name, field.value, mutation)) return false;
    for (auto list : connection_lists)
      if (http::list_contains(list, field.name)) return false;
    return true;
  };
  for (const auto& field : fields) {
    if (!passes(field) || http::iequals(field.name, "x-forwarded-for")) continue;
    has_request_id |= http::iequals(field.name, "x-request-id");
    has_proto |= http::iequals(field.name, "x-forwarded-proto");
    block_.add(block_.keep(field.name, true), block_.keep(field.value));
  }
  // x-forwarded-for: the values received, in order, then the client's address.
  size_t forwarded_for = 0;
  const char* first = nullptr;
  for (const auto& field : fields)
    if (http::iequals(field.name, "x-forwarded-for") && passes(field)) {
      const auto kept = block_.keep(field.value);
      if (!first) first = kept.data();
      forwarded_for += kept.size() + block_.keep(", ").size();
    }
  const auto ip = block_.keep(client_ip);
  if (!first) first = ip.data();
  block_.add("x-forwarded-for", std::string_view(first, forwarded_for + ip.size()));
  if (!has_proto) block_.add("x-forwarded-proto", "http");
  if (!has_request_id) {
    char id[kRequestIdSize];
    block_.add("x-request-id", block_.keep(make_request_id(worker, id)));
  }
  for (const auto& [n, v] : mutation.add) block_.add(block_.keep(n), block_.keep(v));
}

void H2RequestHead::set_attempt(unsigned number) {
  const auto* end = std::to_chars(attempt_, attempt_ + sizeof attempt_, number).ptr;
  const std::string_view value(attempt_, static_cast<size_t>(end - attempt_));
  if (attempt_index_ == 0) {
    attempt_index_ = block_.fields().size();
    block_.add("x-remora-attempt", value);
    block_.field(attempt_index_).flags &= ~NGHTTP2_NV_FLAG_NO_COPY_VALUE;
  } else {
    block_.field(attempt_index_).valuelen = value.size();
  }
}

void h2_response_head(H2HeaderBlock& out, unsigned status, const http::HeaderList& fields,
                      const http::HeaderMutation& mutation) {
  size_t bytes = 3;
  for (const auto& field : fields) bytes += field.name.size() + field.value.size();
  for (const auto& [n, v] : mutation.add) bytes += n.size() + v.size();
  out.reserve(bytes, fields.size() + mutation.add.size() + 1);
  const char status_text[3] = {static_cast<char>('0' + status / 100 % 10),
                               static_cast<char>('0' + status / 10 % 10),
                               static_cast<char>('0' + status % 10)};
  out.add(":status", out.keep({status_text, 3}));
  for (const auto& field : fields)
    if (!stays_behind(field.name, field.value, mutation))
      out.add(out.keep(field.name, true), out.keep(field.value));
  for (const auto& [n, v] : mutation.add) out.add(out.keep(n), out.keep(v));
}

upstream::Fields h2_response(upstream::Fields fields, const http::HeaderMutation& mutation) {
  std::erase_if(fields, [&mutation](const auto& f) {
    return stays_behind(f.first, f.second, mutation);
  });
  for (auto& [name, value] : fields)
    for (auto& c : name)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);
  for (const auto& [n, v] : mutation.add) fields.emplace_back(n, v);
  return fields;
}

}  // namespace remora::proxy
