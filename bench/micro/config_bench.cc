// The config compile of 10 000 routes / 1 000 clusters: YAML → typed and
// validated config (config::load_yaml), then the runtime snapshot
// (proxy::compile_snapshot). The acceptance target is < 1 s for the whole.
#include <benchmark/benchmark.h>

#include <memory>
#include <string>

#include "remora/config/loader.h"
#include "remora/observe/metrics.h"
#include "remora/proxy/snapshot.h"

namespace {

using namespace remora;

std::string make_yaml(int routes, int clusters) {
  std::string y;
  y.reserve(static_cast<size_t>(routes) * 120 + static_cast<size_t>(clusters) * 120);
  y += "node: { id: bench-1, service: bench }\n"
       "admin: { address: 127.0.0.1:19901 }\n"
       "workers: 1\n"
       "listeners:\n"
       "  - name: outbound\n"
       "    address: 127.0.0.1:15001\n"
       "    route_table: outbound\n"
       "route_tables:\n"
       "  - name: outbound\n"
       "    routes:\n";
  for (int i = 0; i < routes; ++i) {
    auto c = std::to_string(i % clusters);
    y += "      - name: r" + std::to_string(i) + "\n";
    if (i % 10 == 0)
      y += "        match: { prefix: /svc-" + std::to_string(i) + "/, host: svc-" + c +
           ".mesh.local }\n";
    else
      y += "        match: { prefix: /svc-" + std::to_string(i) + "/ }\n";
    if (i % 20 == 0)
      y += "        split: [ { cluster: c" + c + ", weight: 90 }, { cluster: c" +
           std::to_string((i + 1) % clusters) + ", weight: 10 } ]\n";
    else
      y += "        cluster: c" + c + "\n";
    if (i % 5 == 0) y += "        timeout: 2s\n";
  }
  y += "clusters:\n";
  for (int i = 0; i < clusters; ++i) {
    y += "  - name: c" + std::to_string(i) + "\n";
    y += "    endpoints: [ 10." + std::to_string(i / 250) + "." + std::to_string(i % 250) +
         ".1:8080, 10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".2:8080 ]\n";
    if (i % 3 == 0) y += "    lb: least_request\n";
  }
  return y;
}

const std::string& big_yaml() {
  static const std::string yaml = make_yaml(10'000, 1'000);
  return yaml;
}

void BM_ConfigLoadYaml_10kRoutes_1kClusters(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = config::load_yaml(big_yaml(), "bench.yaml");
    if (!loaded.ok()) {
      state.SkipWithError(("config rejected: " + loaded.errors.front().to_string()).c_str());
      break;
    }
    benchmark::DoNotOptimize(loaded.config.get());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * big_yaml().size()));
}
BENCHMARK(BM_ConfigLoadYaml_10kRoutes_1kClusters)->Unit(benchmark::kMillisecond);

void BM_ConfigCompileSnapshot_10kRoutes_1kClusters(benchmark::State& state) {
  auto loaded = config::load_yaml(big_yaml(), "bench.yaml");
  if (!loaded.ok()) {
    state.SkipWithError(("config rejected: " + loaded.errors.front().to_string()).c_str());
    return;
  }
  observe::Metrics metrics;  // series found again from the 2nd compile on, as on a reload
  for (auto _ : state) {
    auto result = proxy::compile_snapshot(loaded.config, metrics);
    if (!result.snapshot) {
      state.SkipWithError("compile failed");
      break;
    }
    benchmark::DoNotOptimize(result.snapshot.get());
  }
}
BENCHMARK(BM_ConfigCompileSnapshot_10kRoutes_1kClusters)->Unit(benchmark::kMillisecond);

// Both, from text to snapshot, with fresh metrics: what a cold start costs.
void BM_ConfigTotal_10kRoutes_1kClusters(benchmark::State& state) {
  for (auto _ : state) {
    auto loaded = config::load_yaml(big_yaml(), "bench.yaml");
    if (!loaded.ok()) {
      state.SkipWithError("config rejected");
      break;
    }
    observe::Metrics metrics;
    auto result = proxy::compile_snapshot(loaded.config, metrics);
    benchmark::DoNotOptimize(result.snapshot.get());
  }
}
BENCHMARK(BM_ConfigTotal_10kRoutes_1kClusters)->Unit(benchmark::kMillisecond);

}  // namespace
