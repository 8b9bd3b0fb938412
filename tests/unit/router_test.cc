// Route matching as a user configures it: which route a request lands on, by
// path, host and headers, and how a weighted split spreads requests.
#include <doctest/doctest.h>

#include <cctype>
#include <map>
#include <regex>
#include <string>
#include <string_view>

#include "remora/http/header_list.h"
#include "remora/router/route.h"
#include "remora/router/route_table.h"

using remora::http::HeaderList;
using namespace remora::router;

namespace {

const HeaderList kNoHeaders;

bool hits(const Route& route, std::string_view host, std::string_view path,
          const HeaderList& headers = kNoHeaders) {
  return matches(route, RouteRequest{host, path, headers});
}

Route prefix_route(std::string prefix) {
  Route r;
  r.prefix = std::move(prefix);
  return r;
}

Route path_route(std::string path) {
  Route r;
  r.path = std::move(path);
  return r;
}

// A route for host `host` as the config writes it ("api.example.com",
// "*.example.com"), compiled the way the snapshot does: lower case, and a
// wildcard stored as ".suffix".
Route host_route(std::string host) {
  Route r;
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (host.starts_with("*.")) {
    r.host_wildcard = true;
    host.erase(0, 1);
  }
  r.host = std::move(host);
  return r;
}

HeaderMatcher exact(std::string name, std::string value) {
  HeaderMatcher m;
  m.name = std::move(name);
  m.kind = HeaderMatcher::Kind::kExact;
  m.value = std::move(value);
  return m;
}

HeaderMatcher present(std::string name) {
  HeaderMatcher m;
  m.name = std::move(name);
  m.kind = HeaderMatcher::Kind::kPresent;
  return m;
}

HeaderMatcher regex(std::string name, const std::string& pattern) {
  HeaderMatcher m;
  m.name = std::move(name);
  m.kind = HeaderMatcher::Kind::kRegex;
  m.value = pattern;
  m.regex = std::regex(pattern, std::regex::ECMAScript | std::regex::optimize);
  return m;
}

}  // namespace

TEST_CASE("a route without match criteria takes every request") {
  Route r;
  CHECK(hits(r, "anything", "/"));
  CHECK(hits(r, "", "/x/y?z=1"));
}

TEST_CASE("prefix: matches paths that start with it - the query not taking part") {
  auto r = prefix_route("/api/");
  CHECK(hits(r, "h", "/api/"));
  CHECK(hits(r, "h", "/api/users/7"));
  CHECK(hits(r, "h", "/api/users?limit=5"));
  CHECK_FALSE(hits(r, "h", "/api"));
  CHECK_FALSE(hits(r, "h", "/v1/api/users"));
  CHECK_FALSE(hits(r, "h", "/API/users"));  // paths are case-sensitive
  // A prefix that only appears in the query string is no match.
  CHECK_FALSE(hits(r, "h", "/search?next=/api/users"));
  CHECK_FALSE(hits(prefix_route("/search"), "h", "/?q=/search"));
}

TEST_CASE("exact path: the query is ignored - nothing else is") {
  auto r = path_route("/healthz");
  CHECK(hits(r, "h", "/healthz"));
  CHECK(hits(r, "h", "/healthz?verbose=1"));
  CHECK(hits(r, "h", "/healthz?"));
  CHECK_FALSE(hits(r, "h", "/healthz/"));
  CHECK_FALSE(hits(r, "h", "/healthzz"));
  CHECK_FALSE(hits(r, "h", "/health"));
  CHECK_FALSE(hits(r, "h", "/x/healthz"));
}

TEST_CASE("host: exact - case-insensitive - with any port ignored") {
  auto r = host_route("API.example.com");
  CHECK(hits(r, "api.example.com", "/"));
  CHECK(hits(r, "API.EXAMPLE.COM", "/"));
  CHECK(hits(r, "api.example.com:8080", "/"));
  CHECK(hits(r, "Api.Example.Com:443", "/"));
  CHECK_FALSE(hits(r, "www.api.example.com", "/"));
  CHECK_FALSE(hits(r, "api.example.com.evil.net", "/"));
  CHECK_FALSE(hits(r, "example.com", "/"));
  CHECK_FALSE(hits(r, "", "/"));
}

TEST_CASE("host: a bracketed IPv6 literal with and without port") {
  auto r = host_route("[::1]");
  CHECK(hits(r, "[::1]", "/"));
  CHECK(hits(r, "[::1]:15001", "/"));
  CHECK_FALSE(hits(r, "[::2]:15001", "/"));
}

TEST_CASE("host: *.suffix matches subdomains only - never the suffix itself") {
  auto r = host_route("*.Example.com");
  REQUIRE(r.host_wildcard);
  REQUIRE(r.host == ".example.com");
  CHECK(hits(r, "a.example.com", "/"));
  CHECK(hits(r, "a.b.example.com", "/"));
  CHECK(hits(r, "WWW.EXAMPLE.COM:8443", "/"));
  CHECK_FALSE(hits(r, "example.com", "/"));
  CHECK_FALSE(hits(r, "example.com:80", "/"));
  CHECK_FALSE(hits(r, ".example.com", "/"));
  CHECK_FALSE(hits(r, "badexample.com", "/"));
  CHECK_FALSE(hits(r, "a.example.com.evil.net", "/"));
  CHECK_FALSE(hits(r, "a.example.org", "/"));
}

TEST_CASE("headers: exact value (case-sensitive) - name case-insensitive") {
  Route r;
  r.headers.push_back(exact("x-env", "canary"));
  HeaderList canary, prod, upper, missing;
  canary.add("X-Env", "canary");
  prod.add("x-env", "prod");
  upper.add("x-env", "CANARY");
  missing.add("x-other", "canary");
  CHECK(hits(r, "h", "/", canary));
  CHECK_FALSE(hits(r, "h", "/", prod));
  CHECK_FALSE(hits(r, "h", "/", upper));
  CHECK_FALSE(hits(r, "h", "/", missing));
  CHECK_FALSE(hits(r, "h", "/"));
}

TEST_CASE("headers: present matches any value - even empty") {
  Route r;
  r.headers.push_back(present("authorization"));
  HeaderList with, empty, without;
  with.add("Authorization", "Bearer x");
  empty.add("authorization", "");
  without.add("x-authorization", "Bearer x");
  CHECK(hits(r, "h", "/", with));
  CHECK(hits(r, "h", "/", empty));
  CHECK_FALSE(hits(r, "h", "/", without));
}

TEST_CASE("headers: regex must match the whole value") {
  Route r;
  r.headers.push_back(regex("x-version", "v[0-9]+"));
  HeaderList v12, prefixed, suffixed, none;
  v12.add("X-Version", "v12");
  prefixed.add("X-Version", "xv12");
  suffixed.add("X-Version", "v12-beta");
  CHECK(hits(r, "h", "/", v12));
  CHECK_FALSE(hits(r, "h", "/", prefixed));
  CHECK_FALSE(hits(r, "h", "/", suffixed));
  CHECK_FALSE(hits(r, "h", "/", none));
}

TEST_CASE("every criterion of a route must hold") {
  Route r = host_route("*.svc.local");
  r.prefix = "/orders";
  r.headers.push_back(exact("x-tenant", "acme"));
  r.headers.push_back(present("x-user"));
  HeaderList all, no_user;
  all.add("x-tenant", "acme");
  all.add("x-user", "u1");
  no_user.add("x-tenant", "acme");
  CHECK(hits(r, "orders.svc.local", "/orders/1", all));
  CHECK_FALSE(hits(r, "svc.local", "/orders/1", all));
  CHECK_FALSE(hits(r, "orders.svc.local", "/carts/1", all));
  CHECK_FALSE(hits(r, "orders.svc.local", "/orders/1", no_user));
}

TEST_CASE("RouteTable: the first matching route wins - none → null") {
  RouteTable table;
  table.name = "inbound";
  Route health = path_route("/healthz");
  health.name = "health";
  Route canary = prefix_route("/api");
  canary.name = "canary";
  canary.headers.push_back(exact("x-canary", "1"));
  Route api = prefix_route("/api");
  api.name = "api";
  Route admin = host_route("admin.local");
  admin.name = "admin";
  table.routes = {health, canary, api, admin};

  auto route_of = [&](std::string_view host, std::string_view path,
                      const HeaderList& headers = kNoHeaders) -> std::string {
    const Route* r = table.match(RouteRequest{host, path, headers});
    return r ? r->name : "<none>";
  };
  HeaderList canary_header;
  canary_header.add("X-Canary", "1");
  CHECK(route_of("h", "/healthz") == "health");
  CHECK(route_of("h", "/api/x", canary_header) == "canary");
  CHECK(route_of("h", "/api/x") == "api");
  // /api comes before the admin host route, so admin's /api requests go to api.
  CHECK(route_of("admin.local", "/api/x") == "api");
  CHECK(route_of("admin.local", "/dashboard") == "admin");
  CHECK(route_of("h", "/dashboard") == "<none>");

  // Reordered, the more general route shadows the specific one.
  table.routes = {api, canary};
  CHECK(route_of("h", "/api/x", canary_header) == "api");
  table.routes.clear();
  CHECK(route_of("h", "/") == "<none>");
}

TEST_CASE("pick_target: each target gets exactly its weight's share of 0..total-1") {
  Route r;
  r.targets = {RouteTarget{0, 70}, RouteTarget{1, 20}, RouteTarget{2, 0}, RouteTarget{3, 10}};
  r.total_weight = 100;
  std::map<size_t, int> picked;
  for (uint32_t random = 0; random < r.total_weight; ++random) ++picked[r.pick_target(random).cluster];
  CHECK(picked[0] == 70);
  CHECK(picked[1] == 20);
  CHECK(picked[2] == 0);  // weight 0 takes no traffic
  CHECK(picked[3] == 10);
  // The boundaries: the first and last value of each share.
  CHECK(r.pick_target(0).cluster == 0);
  CHECK(r.pick_target(69).cluster == 0);
  CHECK(r.pick_target(70).cluster == 1);
  CHECK(r.pick_target(89).cluster == 1);
  CHECK(r.pick_target(90).cluster == 3);
  CHECK(r.pick_target(99).cluster == 3);
}

TEST_CASE("pick_target: a single target takes everything") {
  Route r;
  r.targets = {RouteTarget{5, 1}};
  r.total_weight = 1;
  CHECK(r.pick_target(0).cluster == 5);
}
