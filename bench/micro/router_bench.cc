// Route matching against tables of 10 / 100 / 1 000 / 10 000 routes, to show
// how the cost grows with the table (the acceptance asks for sub-linear
// growth). Routes are built by hand the way the snapshot compiler builds
// them, then indexed as it does (build_index(), which leaves tables under 16
// routes to the linear scan); the *Linear variants leave the index out and
// show what trying every route in order costs.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "remora/http/header_list.h"
#include "remora/router/route.h"
#include "remora/router/route_table.h"

namespace {

using namespace remora;

router::Route route_to(int cluster) {
  router::Route r;
  router::RouteTarget target{};
  target.cluster = static_cast<size_t>(cluster % 1000);
  target.weight = 1;
  r.targets.push_back(target);
  r.total_weight = 1;
  return r;
}

router::HeaderMatcher exact_header(std::string name, std::string value) {
  router::HeaderMatcher m;
  m.name = std::move(name);
  m.value = std::move(value);
  return m;
}

// n routes: service i has a prefix route "/svc-i/"; every 10th also pins a
// host, every 50th also needs a header, as a mesh's outbound table would.
router::RouteTable make_table(int n, bool indexed) {
  router::RouteTable table;
  table.name = "outbound";
  table.routes.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    router::Route r = route_to(i);
    r.name = "route-" + std::to_string(i);
    r.prefix = "/svc-" + std::to_string(i) + "/";
    if (i % 10 == 0) r.host = "svc-" + std::to_string(i) + ".mesh.local";
    if (i % 50 == 0) r.headers.push_back(exact_header("x-version", "2"));
    table.routes.push_back(std::move(r));
  }
  if (indexed) table.build_index();
  return table;
}

// Which route the request hits: the first, the middle, the last, or none.
enum Where { kFirst, kMiddle, kLast, kMiss };

void match(benchmark::State& state, Where where, bool indexed) {
  const int n = static_cast<int>(state.range(0));
  auto table = make_table(n, indexed);
  int i = where == kFirst ? 1 : where == kMiddle ? n / 2 + 1 : n - 1;
  if (i % 10 == 0) ++i;  // keep to host-less routes so that one path fits all
  std::string path = where == kMiss ? "/nowhere/at/all" : "/svc-" + std::to_string(i) + "/items/42";
  http::HeaderList headers;
  headers.add("host", "items.mesh.local");
  headers.add("x-version", "1");
  router::RouteRequest request{"items.mesh.local", path, headers};
  const router::Route* hit = nullptr;
  for (auto _ : state) {
    hit = table.match(request);
    benchmark::DoNotOptimize(hit);
  }
  if ((hit == nullptr) != (where == kMiss)) state.SkipWithError("matched the wrong route");
  state.SetItemsProcessed(state.iterations());
  state.SetComplexityN(n);
}

// A mesh's inbound table of about n routes: /healthz and /ready first; then
// per service "svc-s.ns-k.svc.cluster.local" a canary route (header
// x-canary: 1), an /api/v2/ route and a catch-all, and a host-less "/svc-s/"
// route for path-based ingress; last, a wildcard for the whole cluster
// domain and a host-less default.
router::RouteTable make_mesh_table(int n, bool indexed) {
  router::RouteTable table;
  table.name = "inbound";
  auto add = [&](router::Route r) {
    r.name = "route-" + std::to_string(table.routes.size());
    table.routes.push_back(std::move(r));
  };
  router::Route health = route_to(0);
  health.path = "/healthz";
  add(health);
  router::Route ready = route_to(0);
  ready.path = "/ready";
  add(ready);
  for (int s = 0; static_cast<int>(table.routes.size()) + 4 <= n - 2; ++s) {
    std::string host =
        "svc-" + std::to_string(s) + ".ns-" + std::to_string(s % 8) + ".svc.cluster.local";
    router::Route canary = route_to(2 * s + 1);
    canary.host = host;
    canary.headers.push_back(exact_header("x-canary", "1"));
    add(canary);
    router::Route v2 = route_to(2 * s + 1);
    v2.host = host;
    v2.prefix = "/api/v2/";
    add(v2);
    router::Route all = route_to(2 * s);
    all.host = host;
    add(all);
    router::Route ingress = route_to(2 * s);
    ingress.prefix = "/svc-" + std::to_string(s) + "/";
    add(ingress);
  }
  router::Route domain = route_to(1);
  domain.host = ".svc.cluster.local";
  domain.host_wildcard = true;
  add(domain);
  add(route_to(0));  // the default: any host, any path
  if (indexed) table.build_index();
  return table;
}

// 256 requests spread over the services of a mesh table with `services`
// services, some for hosts it does not know, some with the canary header.
struct MeshRequests {
  struct Request {
    std::string host, path;
    http::HeaderList headers;
  };
  std::vector<Request> requests;

  explicit MeshRequests(int services) : requests(256) {
    std::mt19937 rng(7);
    auto below = [&rng](int n) {
      return std::uniform_int_distribution<int>(0, std::max(n, 1) - 1)(rng);
    };
    for (auto& r : requests) {  // filled in place: the header list views the strings
      int s = below(services + services / 10 + 1);  // one in 11 to a host the table lacks
      r.host = "svc-" + std::to_string(s) + ".ns-" + std::to_string(s % 8) + ".svc.cluster.local";
      if (below(2)) r.host += ":8080";
      const std::string paths[] = {"/api/v2/orders/" + std::to_string(below(1000)), "/",
                                   "/svc-" + std::to_string(below(services + 1)) + "/items?page=2",
                                   "/healthz", "/static/app.js"};
      r.path = paths[below(5)];
      r.headers.add("host", r.host);
      r.headers.add("user-agent", "bench");
      if (below(10) == 0) r.headers.add("x-canary", "1");
    }
  }
};

void match_mesh(benchmark::State& state, bool indexed) {
  const int n = static_cast<int>(state.range(0));
  auto table = make_mesh_table(n, indexed);
  MeshRequests mesh((n - 4) / 4);
  std::vector<router::RouteRequest> requests;
  for (const auto& r : mesh.requests) {
    requests.push_back({r.host, r.path, r.headers});
    const router::Route* expected = nullptr;  // the first in order, by hand
    for (const auto& route : table.routes)
      if (router::matches(route, requests.back())) {
        expected = &route;
        break;
      }
    if (table.match(requests.back()) != expected) state.SkipWithError("matched the wrong route");
  }
  size_t next = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(table.match(requests[next]));
    next = (next + 1) % requests.size();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetComplexityN(n);
}

void BM_RouteMatchFirst(benchmark::State& state) { match(state, kFirst, true); }
void BM_RouteMatchMiddle(benchmark::State& state) { match(state, kMiddle, true); }
void BM_RouteMatchLast(benchmark::State& state) { match(state, kLast, true); }
void BM_RouteMatchMiss(benchmark::State& state) { match(state, kMiss, true); }
void BM_RouteMatchMesh(benchmark::State& state) { match_mesh(state, true); }
void BM_RouteMatchLastLinear(benchmark::State& state) { match(state, kLast, false); }
void BM_RouteMatchMissLinear(benchmark::State& state) { match(state, kMiss, false); }
void BM_RouteMatchMeshLinear(benchmark::State& state) { match_mesh(state, false); }
BENCHMARK(BM_RouteMatchFirst)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_RouteMatchMiddle)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchLast)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchMiss)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchMesh)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchLastLinear)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchMissLinear)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchMeshLinear)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();

}  // namespace
