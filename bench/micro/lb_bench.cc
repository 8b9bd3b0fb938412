// Load-balancer picks (Cluster::pick) per policy and cluster size.
#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <spdlog/spdlog.h>

#include "remora/upstream/cluster.h"
#include "remora/upstream/cluster_spec.h"
#include "remora/upstream/endpoint.h"

namespace {

using namespace remora::upstream;

Cluster make_cluster(LbPolicy lb, int n, bool outlier_detection = false) {
  auto spec = std::make_shared<ClusterSpec>();
  spec->name = "backend";
  spec->lb = lb;
  if (outlier_detection)
    spec->outlier = std::make_shared<remora::policy::OutlierDetector>(
        remora::policy::OutlierDetectionOptions{});
  std::vector<EndpointAddress> addresses;
  for (int i = 0; i < n; ++i) {
    EndpointAddress a;
    a.address = remora::net::Endpoint(
        boost::asio::ip::make_address_v4(0x0a000001u + static_cast<unsigned>(i)), 8080);
    a.text = a.address.address().to_string() + ":8080";
    a.source = "static";
    a.stats = std::make_shared<EndpointStats>();
    a.stats->active_requests = i % 7;  // some spread for least_request
    addresses.push_back(std::move(a));
  }
  Cluster c(spec);
  c.set_endpoints(addresses);
  return c;
}

void pick(benchmark::State& state, LbPolicy lb) {
  auto cluster = make_cluster(lb, static_cast<int>(state.range(0)));
  std::mt19937_64 rng(42);  // the worker's generator is of this kind
  for (auto _ : state) {
    auto e = cluster.pick(rng());
    benchmark::DoNotOptimize(e.get());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_LbPickRoundRobin(benchmark::State& state) { pick(state, LbPolicy::kRoundRobin); }
void BM_LbPickLeastRequest(benchmark::State& state) { pick(state, LbPolicy::kLeastRequest); }
void BM_LbPickRandom(benchmark::State& state) { pick(state, LbPolicy::kRandom); }
BENCHMARK(BM_LbPickRoundRobin)->Arg(3)->Arg(100);
BENCHMARK(BM_LbPickLeastRequest)->Arg(3)->Arg(100);
BENCHMARK(BM_LbPickRandom)->Arg(3)->Arg(100);

// One endpoint ejected (for the default 30 s): the picks that land on it
// read the clock and draw a stand-in.
void BM_LbPickRoundRobinEjected(benchmark::State& state) {
  auto cluster = make_cluster(LbPolicy::kRoundRobin, static_cast<int>(state.range(0)), true);
  const auto level = spdlog::get_level();
  spdlog::set_level(spdlog::level::err);  // not the ejection's warning on every run
  for (int i = 0; i < 5; ++i)
    cluster.record(*cluster.endpoints()[0], remora::policy::Outcome::kGatewayFailure);
  spdlog::set_level(level);
  std::mt19937_64 rng(42);
  for (auto _ : state) {
    auto e = cluster.pick(rng());
    benchmark::DoNotOptimize(e.get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LbPickRoundRobinEjected)->Arg(3)->Arg(100);

// The outlier detector's view of each finished request (the common case:
// a success on an endpoint that is not ejected).
void BM_LbRecordSuccess(benchmark::State& state) {
  auto cluster = make_cluster(LbPolicy::kRoundRobin, 3, true);
  auto& endpoint = *cluster.endpoints()[1];
  for (auto _ : state) cluster.record(endpoint, remora::policy::Outcome::kSuccess);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LbRecordSuccess);

}  // namespace
