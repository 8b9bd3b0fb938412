#pragma once
// Header translation toward HTTP/2 peers (RFC 9113 §8.2): lower-case names,
// no connection-specific fields, pseudo-headers first.
#include <string>
#include <string_view>

#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"
#include "remora/upstream/h2_client.h"

namespace remora::proxy {

class WorkerContext;

std::string lower_case(std::string_view s);

// Fields that are about one connection and never cross a proxy; `te` passes
// only as "trailers", which gRPC needs.
bool connection_specific(std::string_view name, std::string_view value);

// The request an HTTP/2 upstream gets, from a request of either protocol:
// route mutations applied, x-forwarded-for appended, x-forwarded-proto and
// x-request-id kept if sent and set if not.
upstream::Fields h2_request(std::string_view method, std::string_view authority,
                            std::string_view path, const http::HeaderList& fields,
                            const http::HeaderMutation& mutation, std::string_view client_ip,
                            WorkerContext& worker);

// A response's fields for the other side: lower-case names, no
// connection-specific fields, route mutations applied. Done in place on
// `fields` (move them in: no copy of a field).
upstream::Fields h2_response(upstream::Fields fields, const http::HeaderMutation& mutation);

}  // namespace remora::proxy
