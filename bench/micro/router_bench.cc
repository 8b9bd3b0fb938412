// Route matching against tables of 100 / 1 000 / 10 000 routes, to show how
// the cost grows with the table (the acceptance asks for sub-linear growth).
// Routes are built by hand the way the snapshot compiler builds them.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "remora/http/header_list.h"
#include "remora/router/route.h"
#include "remora/router/route_table.h"

namespace {

using namespace remora;

// n routes: service i has a prefix route "/svc-i/"; every 10th also pins a
// host, every 50th also needs a header, as a mesh's outbound table would.
router::RouteTable make_table(int n) {
  router::RouteTable table;
  table.name = "outbound";
  table.routes.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    router::Route r;
    r.name = "route-" + std::to_string(i);
    r.prefix = "/svc-" + std::to_string(i) + "/";
    if (i % 10 == 0) r.host = "svc-" + std::to_string(i) + ".mesh.local";
    if (i % 50 == 0) {
      router::HeaderMatcher m;
      m.name = "x-version";
      m.value = "2";
      r.headers.push_back(std::move(m));
    }
    r.targets.push_back({static_cast<size_t>(i % 1000), 1, nullptr});
    r.total_weight = 1;
    table.routes.push_back(std::move(r));
  }
  return table;
}

// Which route the request hits: the first, the middle, the last, or none.
enum Where { kFirst, kMiddle, kLast, kMiss };

void match(benchmark::State& state, Where where) {
  const int n = static_cast<int>(state.range(0));
  auto table = make_table(n);
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

void BM_RouteMatchFirst(benchmark::State& state) { match(state, kFirst); }
void BM_RouteMatchMiddle(benchmark::State& state) { match(state, kMiddle); }
void BM_RouteMatchLast(benchmark::State& state) { match(state, kLast); }
void BM_RouteMatchMiss(benchmark::State& state) { match(state, kMiss); }
BENCHMARK(BM_RouteMatchFirst)->Arg(100)->Arg(1000)->Arg(10000);
BENCHMARK(BM_RouteMatchMiddle)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchLast)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();
BENCHMARK(BM_RouteMatchMiss)->Arg(100)->Arg(1000)->Arg(10000)->Complexity();

}  // namespace
