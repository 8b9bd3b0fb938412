#include "remora/router/route.h"

#include "remora/router/route_table.h"

namespace remora::router {
namespace {

std::string_view strip_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {  // [v6]:port
    auto end = host.find(']');
    return end == std::string_view::npos ? host : host.substr(0, end + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

bool ends_with_icase(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         http::iequals(text.substr(text.size() - suffix.size()), suffix);
}

bool host_matches(const Route& route, std::string_view request_host) {
  if (route.host.empty()) return true;
  auto host = strip_port(request_host);
  if (!route.host_wildcard) return http::iequals(host, route.host);
  // "*.example.com" is stored as ".example.com": needs at least one label before it.
  return host.size() > route.host.size() && ends_with_icase(host, route.host);
}

bool header_matches(const HeaderMatcher& matcher, const http::HeaderList& headers) {
  const auto* field = headers.find(matcher.name);
  switch (matcher.kind) {
    case HeaderMatcher::Kind::kPresent:
      return field != nullptr;
    case HeaderMatcher::Kind::kExact:
      return field != nullptr && field->value == matcher.value;
    case HeaderMatcher::Kind::kRegex:
      return field != nullptr &&
             std::regex_match(field->value.begin(), field->value.end(), matcher.regex);
  }
  return false;
}

}  // namespace

const RouteTarget& Route::pick_target(uint32_t random) const {
  for (const auto& target : targets) {
    if (random < target.weight) return target;
    random -= target.weight;
  }
  return targets.back();
}

bool matches(const Route& route, const RouteRequest& request) {
  auto path = request.path.substr(0, request.path.find('?'));
  if (!route.path.empty() && path != route.path) return false;
  if (!route.prefix.empty() && !path.starts_with(route.prefix)) return false;
  if (!host_matches(route, request.host)) return false;
  for (const auto& matcher : route.headers)
    if (!header_matches(matcher, request.headers)) return false;
  return true;
}

const Route* RouteTable::match(const RouteRequest& request) const {
  for (const auto& route : routes)
    if (matches(route, request)) return &route;
  return nullptr;
}

}  // namespace remora::router
