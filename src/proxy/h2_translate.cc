#include "remora/proxy/h2_translate.h"

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

upstream::Fields h2_request(std::string_view method, std::string_view authority,
                            std::string_view path, const http::HeaderList& fields,
                            const http::HeaderMutation& mutation, std::string_view client_ip,
                            WorkerContext& worker) {
  upstream::Fields out;
  out.reserve(fields.size() + mutation.add.size() + 7);
  out.emplace_back(":method", method);
  out.emplace_back(":scheme", "http");
  out.emplace_back(":authority", authority);
  out.emplace_back(":path", path);
  // Fields an h1 Connection header names are hop-by-hop too (h2 forbids the
  // header itself). Its values are gathered once, not looked up per field.
  boost::container::small_vector<std::string_view, 2> connection_lists;
  for (const auto& field : fields)
    if (http::iequals(field.name, "connection")) connection_lists.push_back(field.value);
  std::string forwarded_for;
  bool has_request_id = false, has_proto = false;
  for (const auto& field : fields) {
    if (connection_specific(field.name, field.value) || mutation.removes(field.name)) continue;
    bool named = false;
    for (auto list : connection_lists) named |= http::list_contains(list, field.name);
    if (named) continue;
    auto name = lower_case(field.name);
    const std::string_view lower = name;
    if (lower == "x-forwarded-for") {
      forwarded_for.append(field.value).append(", ");
      continue;
    }
    has_request_id |= lower == "x-request-id";
    has_proto |= lower == "x-forwarded-proto";
    out.emplace_back(std::move(name), std::string(field.value));
  }
  out.emplace_back("x-forwarded-for", forwarded_for.append(client_ip));
  if (!has_proto) out.emplace_back("x-forwarded-proto", "http");
  if (!has_request_id) {
    char id[kRequestIdSize];
    out.emplace_back("x-request-id", std::string(make_request_id(worker, id)));
  }
  for (const auto& [n, v] : mutation.add) out.emplace_back(n, v);
  return out;
}

upstream::Fields h2_response(upstream::Fields fields, const http::HeaderMutation& mutation) {
  std::erase_if(fields, [&mutation](const auto& f) {
    return connection_specific(f.first, f.second) || mutation.removes(f.first);
  });
  for (auto& [name, value] : fields)
    for (auto& c : name)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);
  for (const auto& [n, v] : mutation.add) fields.emplace_back(n, v);
  return fields;
}

}  // namespace remora::proxy
