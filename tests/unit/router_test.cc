// Route matching as a user configures it: which route a request lands on, by
// path, host and headers, and how a weighted split spreads requests.
#include <doctest/doctest.h>

#include <cctype>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "remora/http/header_list.h"
#include "remora/router/route.h"
#include "remora/router/route_index.h"
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

RouteTarget target(size_t cluster, uint32_t weight) {
  RouteTarget t{};
  t.cluster = cluster;
  t.weight = weight;
  return t;
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

// --- The route index: the linear scan's answer, without trying every route.

namespace {

const Route* first_match_linear(const std::vector<Route>& routes, const RouteRequest& request) {
  for (const auto& route : routes)
    if (matches(route, request)) return &route;
  return nullptr;
}

Route named(Route r, std::string name) {
  r.name = std::move(name);
  return r;
}

// The name of the route that `table` picks, with and without its index, or
// "<differ>" when they disagree.
std::string pick(const RouteTable& table, std::string_view host, std::string_view path,
                 const HeaderList& headers = kNoHeaders) {
  RouteRequest request{host, path, headers};
  const Route* indexed = RouteIndex(table.routes).match(table.routes, request);
  const Route* linear = first_match_linear(table.routes, request);
  if (indexed != linear || table.match(request) != linear) return "<differ>";
  return linear ? linear->name : "<none>";
}

}  // namespace

TEST_CASE("route index: the first route in order wins - whatever bucket it is filed in") {
  RouteTable table;
  Route exact_host_path = host_route("api.example.com");
  exact_host_path.path = "/users";
  Route wildcard = host_route("*.example.com");
  wildcard.prefix = "/users";
  HeaderList canary;
  canary.add("x-env", "canary");

  SUBCASE("an earlier host-less prefix route beats a later exact-host exact-path route") {
    table.routes = {named(prefix_route("/u"), "prefix"), named(exact_host_path, "exact")};
    table.build_index();
    CHECK(pick(table, "api.example.com", "/users") == "prefix");
    CHECK(pick(table, "api.example.com", "/v") == "<none>");
  }
  SUBCASE("a later host-less route takes what the earlier host routes leave") {
    table.routes = {named(exact_host_path, "exact"), named(wildcard, "wildcard"),
                    named(prefix_route("/"), "any")};
    table.build_index();
    CHECK(pick(table, "API.Example.com:443", "/users?all=1") == "exact");
    CHECK(pick(table, "api.example.com", "/users/7") == "wildcard");
    CHECK(pick(table, "www.example.com", "/users") == "wildcard");
    CHECK(pick(table, "example.com", "/users") == "any");
    CHECK(pick(table, "www.example.com", "/orders") == "any");
  }
  SUBCASE("wildcard before exact host, and a narrower wildcard after a wider one") {
    Route narrow = host_route("*.api.example.com");
    table.routes = {named(wildcard, "wildcard"), named(exact_host_path, "exact"),
                    named(narrow, "narrow"), named(host_route("api.example.com"), "host")};
    table.build_index();
    CHECK(pick(table, "api.example.com", "/users") == "wildcard");
    CHECK(pick(table, "api.example.com", "/") == "host");
    CHECK(pick(table, "v1.api.example.com", "/users/1") == "wildcard");
    CHECK(pick(table, "v1.api.example.com", "/") == "narrow");
    CHECK(pick(table, "api.example.org", "/") == "<none>");
  }
  SUBCASE("a route whose headers fail falls through to the next one that fits") {
    Route gated = prefix_route("/users");
    gated.headers.push_back(exact("x-env", "canary"));
    table.routes = {named(gated, "canary"), named(exact_host_path, "exact"),
                    named(prefix_route("/"), "any")};
    table.build_index();
    CHECK(pick(table, "api.example.com", "/users", canary) == "canary");
    CHECK(pick(table, "api.example.com", "/users") == "exact");
    CHECK(pick(table, "other", "/users") == "any");
  }
  SUBCASE("first in order - not the longest prefix - wins") {
    table.routes = {named(prefix_route("/api"), "short"), named(prefix_route("/api/v1/"), "long"),
                    named(path_route("/api/v1/users"), "path")};
    table.build_index();
    CHECK(pick(table, "h", "/api/v1/users") == "short");
    table.routes = {named(path_route("/api/v1/users"), "path"),
                    named(prefix_route("/api/v1/"), "long"), named(prefix_route("/api"), "short")};
    table.build_index();
    CHECK(pick(table, "h", "/api/v1/users") == "path");
    CHECK(pick(table, "h", "/api/v1/users/") == "long");
    CHECK(pick(table, "h", "/api/v2") == "short");
    CHECK(pick(table, "h", "/ap") == "<none>");
  }
  SUBCASE("a route with both a path and a prefix needs both") {
    Route both = path_route("/api/x");
    both.prefix = "/api/";
    Route impossible = path_route("/other");
    impossible.prefix = "/api/";
    table.routes = {named(impossible, "impossible"), named(both, "both")};
    table.build_index();
    CHECK(pick(table, "h", "/api/x") == "both");
    CHECK(pick(table, "h", "/other") == "<none>");
  }
  SUBCASE("the query takes no part - a host's port and case take none either") {
    table.routes = {named(exact_host_path, "exact")};
    table.build_index();
    CHECK(pick(table, "API.EXAMPLE.COM:8080", "/users?x=/y") == "exact");
    CHECK(pick(table, "api.example.com", "/?/users") == "<none>");
  }
  SUBCASE("host names of any length") {
    const std::string label(300, 'x');
    table.routes = {named(host_route(label + ".example.com"), "long"), named(wildcard, "wildcard"),
                    named(host_route("*." + label + ".com"), "long wildcard")};
    table.build_index();
    CHECK(pick(table, label + ".EXAMPLE.com:80", "/") == "long");
    CHECK(pick(table, "a." + label + ".example.com", "/users") == "wildcard");
    CHECK(pick(table, "a." + label + ".com", "/") == "long wildcard");
    CHECK(pick(table, label + ".com", "/") == "<none>");
    // 255 bytes, ".y...y.com", is the longest suffix the index looks up by name.
    const std::string tail = std::string(250, 'y') + ".com";
    table.routes = {named(host_route("*." + tail), "255"), named(host_route("*.y" + tail), "256")};
    table.build_index();
    CHECK(pick(table, "a." + tail, "/") == "255");
    CHECK(pick(table, "a.y" + tail + ":80", "/") == "256");
  }
  SUBCASE("a wildcard suffix that does not start a label is still honoured") {
    Route odd;  // not what the snapshot compiles, but what matches() defines
    odd.host = "example.com";
    odd.host_wildcard = true;
    table.routes = {named(odd, "odd")};
    table.build_index();
    CHECK(pick(table, "badexample.com", "/") == "odd");
    CHECK(pick(table, "example.com", "/") == "<none>");
  }
}

TEST_CASE("route index: more candidate lists than it holds at once - still the first") {
  // Route i has the prefix "/" + (40 - i) a's: a request for 40 a's has 40
  // lists, met from the longest route number to the shortest.
  RouteTable table;
  for (int i = 0; i < 40; ++i) {
    Route r = prefix_route("/" + std::string(static_cast<size_t>(40 - i), 'a'));
    r.name = std::to_string(i);
    if (i != 3 && i != 35) r.headers.push_back(present("x-all"));
    table.routes.push_back(std::move(r));
  }
  table.build_index();
  HeaderList all;
  all.add("x-all", "1");
  const std::string path = "/" + std::string(40, 'a');
  CHECK(pick(table, "h", path, all) == "0");
  CHECK(pick(table, "h", path) == "3");
  CHECK(pick(table, "h", "/" + std::string(10, 'a')) == "35");
  CHECK(pick(table, "h", "/" + std::string(4, 'a')) == "<none>");
}

// Snapshot::route_tables grows by moving its tables, index and all.
static_assert(std::is_nothrow_move_constructible_v<RouteTable>);

TEST_CASE("RouteTable: without an up-to-date index, match() tries every route") {
  RouteTable table;
  for (int i = 0; i < 40; ++i)
    table.routes.push_back(named(prefix_route("/r" + std::to_string(i) + "/"), std::to_string(i)));
  auto name_of = [&](const RouteTable& t, std::string_view path) -> std::string {
    const Route* r = t.match(RouteRequest{"h", path, kNoHeaders});
    return r ? r->name : "<none>";
  };
  CHECK(name_of(table, "/r7/x") == "7");  // never indexed
  table.build_index();
  CHECK(name_of(table, "/r7/x") == "7");
  table.routes.insert(table.routes.begin(), named(prefix_route("/"), "any"));
  CHECK(name_of(table, "/r7/x") == "any");  // the index is stale: not used
  table.build_index();
  CHECK(name_of(table, "/r7/x") == "any");
  RouteTable copy = table;  // the index is of route numbers: it holds for a copy
  CHECK(copy.match(RouteRequest{"h", "/r7/", kNoHeaders}) == &copy.routes[0]);
  table.routes.erase(table.routes.begin());
  CHECK(name_of(table, "/r7/x") == "7");
  table.routes.clear();
  CHECK(name_of(table, "/r7/x") == "<none>");
  table.build_index();
  CHECK(name_of(table, "/r7/x") == "<none>");
}

TEST_CASE("route index: the same answer as the linear scan on random tables") {
  std::mt19937 rng(20240611);
  auto one_of = [&rng](const auto& choices) -> const auto& {
    return choices[std::uniform_int_distribution<size_t>(0, std::size(choices) - 1)(rng)];
  };
  auto chance = [&rng](double p) { return std::bernoulli_distribution(p)(rng); };
  auto number = [&rng](int n) {
    return std::to_string(std::uniform_int_distribution<int>(0, n - 1)(rng));
  };

  // Edge cases, and a mesh of hosts ("s3.ns1.mesh") and service paths ("/s7/v1/").
  // clang-format off
  std::vector<std::string> route_hosts = {
      "api.example.com", "API.Example.com", "b.example.com", "*.example.com", "*.b.example.com",
      "*.com", "other.net", "[::1]", "*.Other.NET"};
  std::vector<std::string> request_hosts = {
      "api.example.com", "API.EXAMPLE.COM:8443", "b.example.com", "x.b.example.com",
      "X.B.Example.Com", "example.com", "a.example.com", "a..example.com", ".example.com",
      "other.net", "Other.Net:80", "www.other.net", "[::1]:15001", "[::1]", "", "com", "x.com",
      "badexample.com", "example.com.evil.net", "b.example.com."};
  // clang-format on
  const std::string long_label(250, 'x');  // hosts longer than the index keeps in its maps
  route_hosts.push_back(long_label + ".example.com");
  route_hosts.push_back("*." + long_label + ".example.com");
  request_hosts.push_back(long_label + ".example.com");
  request_hosts.push_back("a." + long_label + ".Example.com:80");
  request_hosts.push_back("a.b." + long_label + ".example.com");
  const std::vector<std::string> exact_paths = {"/",       "/a",       "/a/b",         "/api",
                                                "/api/v1", "/healthz", "/api/v1/users"};
  const std::vector<std::string> prefixes = {"/",     "/a",       "/a/", "/ap",     "/api",
                                             "/api/", "/api/v1/", "/b",  "/healthz"};
  const std::vector<std::string> request_paths = {"/",
                                                  "/a",
                                                  "/a/",
                                                  "/a/b",
                                                  "/a/b/c",
                                                  "/ap",
                                                  "/api",
                                                  "/api/",
                                                  "/api/v1",
                                                  "/api/v1/",
                                                  "/api/v1/users",
                                                  "/api/v1/users?x=1",
                                                  "/healthz",
                                                  "/healthz?verbose",
                                                  "/b",
                                                  "/bb",
                                                  "",
                                                  "?/api",
                                                  "/x?/api/",
                                                  "/s1",
                                                  "/s1/"};
  const std::vector<HeaderMatcher> matchers = {exact("x-env", "canary"), exact("x-env", "prod"),
                                               present("x-user"), regex("x-version", "v[0-9]+")};

  auto random_route = [&](int number_in_table) {
    Route r;
    r.name = std::to_string(number_in_table);
    if (chance(0.5)) {
      if (chance(0.3)) {
        r = host_route(one_of(route_hosts));
      } else if (chance(0.1)) {  // a suffix that does not start at a label
        r.host = "example.com";
        r.host_wildcard = true;
      } else {
        r = host_route((chance(0.3) ? "*.ns" : "s" + number(20) + ".ns") + number(4) + ".mesh");
      }
      r.name = std::to_string(number_in_table);
    }
    bool mesh_path = chance(0.6);
    std::string service = "/s" + number(30);
    double kind = std::uniform_real_distribution<double>(0, 1)(rng);
    if (kind < 0.3) {
      r.path = mesh_path ? service + "/v" + number(3) + "/items" : one_of(exact_paths);
    } else if (kind < 0.85) {
      r.prefix =
          mesh_path ? service + (chance(0.5) ? "/" : "/v" + number(3) + "/") : one_of(prefixes);
    } else if (kind < 0.95) {
      r.path = mesh_path ? service + "/v1/items" : one_of(exact_paths);
      r.prefix = mesh_path ? service + "/" : one_of(prefixes);
    }  // else: any path
    // Few routes for any host and any path, or they would take every request.
    if (r.host.empty() && r.path.empty() && r.prefix.size() <= 1 && !chance(0.01))
      r.prefix = service + "/";
    if (chance(0.4)) r.headers.push_back(one_of(matchers));
    if (chance(0.1)) r.headers.push_back(one_of(matchers));
    return r;
  };

  int requests = 0, hits = 0, deep_hits = 0;
  for (int size : {0, 1, 2, 5, 10, 30, 100, 300, 1000, 3000}) {
    RouteTable table;
    for (int i = 0; i < size; ++i) table.routes.push_back(random_route(i));
    table.build_index();
    RouteIndex index(table.routes);
    for (int n = 0; n < 2000; ++n, ++requests) {
      std::string host, path;
      if (chance(0.5)) {
        host = one_of(request_hosts);
      } else {
        host = "s" + number(20) + ".ns" + number(4) + ".mesh";
        if (chance(0.2)) host = "x." + host + ":8080";
        if (chance(0.2)) host[0] = 'S';
      }
      if (chance(0.4)) {
        path = one_of(request_paths);
      } else {
        path = "/s" + number(30) + "/v" + number(3) + (chance(0.5) ? "/items" : "/other");
        if (chance(0.2)) path += "?q=1";
      }
      HeaderList headers;
      if (chance(0.4)) headers.add("X-Env", chance(0.5) ? "canary" : "prod");
      if (chance(0.3)) headers.add("x-user", "u1");
      if (chance(0.3)) headers.add("x-version", chance(0.5) ? "v12" : "beta");
      RouteRequest request{host, path, headers};

      const Route* expected = first_match_linear(table.routes, request);
      const Route* indexed = index.match(table.routes, request);
      const Route* from_table = table.match(request);
      if (indexed != expected || from_table != expected) {
        FAIL_CHECK("host=" << host << " path=" << path
                           << " linear=" << (expected ? expected->name : "<none>")
                           << " index=" << (indexed ? indexed->name : "<none>"));
      }
      if (expected) ++hits;
      if (expected && expected - table.routes.data() >= 100) ++deep_hits;
    }
  }
  // The tables are neither all-miss nor caught by their first few routes.
  CHECK(hits > requests / 4);
  CHECK(hits < requests * 3 / 4);
  CHECK(deep_hits > 500);
}

TEST_CASE("pick_target: each target gets exactly its weight's share of 0..total-1") {
  Route r;
  r.targets = {target(0, 70), target(1, 20), target(2, 0), target(3, 10)};
  r.total_weight = 100;
  std::map<size_t, int> picked;
  for (uint32_t random = 0; random < r.total_weight; ++random)
    ++picked[r.pick_target(random).cluster];
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
  r.targets = {target(5, 1)};
  r.total_weight = 1;
  CHECK(r.pick_target(0).cluster == 5);
}
