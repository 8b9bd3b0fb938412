// Load balancing across a cluster's endpoints, and what survives an endpoint
// set update: what decides which instance of a service gets a request.
#include <doctest/doctest.h>

#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "remora/upstream/cluster.h"
#include "remora/upstream/cluster_spec.h"
#include "remora/upstream/endpoint.h"

using namespace remora::upstream;

namespace {

EndpointAddress address(const std::string& ip, unsigned short port) {
  EndpointAddress a;
  a.address = remora::net::Endpoint(boost::asio::ip::make_address(ip), port);
  a.text = ip + ":" + std::to_string(port);
  a.source = "static";
  a.stats = std::make_shared<EndpointStats>();
  return a;
}

std::vector<EndpointAddress> addresses(int n) {
  std::vector<EndpointAddress> out;
  for (int i = 0; i < n; ++i) out.push_back(address("10.0.0." + std::to_string(i + 1), 8080));
  return out;
}

Cluster cluster(LbPolicy lb, int endpoints) {
  auto spec = std::make_shared<ClusterSpec>();
  spec->name = "backend";
  spec->lb = lb;
  Cluster c(spec);
  c.set_endpoints(addresses(endpoints));
  return c;
}

std::string text_of(const std::shared_ptr<UpstreamEndpoint>& e) {
  return e ? e->address().text : "<null>";
}

}  // namespace

TEST_CASE("an empty cluster picks nothing - whatever the policy") {
  for (auto lb : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest, LbPolicy::kRandom}) {
    auto c = cluster(lb, 0);
    CHECK(c.pick(0) == nullptr);
    CHECK(c.pick(123456789) == nullptr);
    // Endpoints that all went away leave it empty again.
    c.set_endpoints(addresses(2));
    CHECK(c.pick(1) != nullptr);
    c.set_endpoints({});
    CHECK(c.pick(1) == nullptr);
  }
}

TEST_CASE("round robin visits every endpoint in turn and spreads evenly") {
  auto c = cluster(LbPolicy::kRoundRobin, 3);
  std::vector<std::string> first;
  for (int i = 0; i < 6; ++i) first.push_back(text_of(c.pick(7)));  // `random` plays no part
  CHECK(first[0] != first[1]);
  CHECK(first[1] != first[2]);
  CHECK(first[0] != first[2]);
  CHECK(first[3] == first[0]);
  CHECK(first[4] == first[1]);
  CHECK(first[5] == first[2]);

  std::map<std::string, int> count;
  for (int i = 0; i < 300; ++i) ++count[text_of(c.pick(static_cast<uint64_t>(i) * 977))];
  CHECK(count.size() == 3);
  CHECK(count["10.0.0.1:8080"] == 100);
  CHECK(count["10.0.0.2:8080"] == 100);
  CHECK(count["10.0.0.3:8080"] == 100);
}

TEST_CASE("round robin keeps cycling over a changed endpoint set") {
  auto c = cluster(LbPolicy::kRoundRobin, 4);
  c.pick(0);
  c.pick(0);
  c.pick(0);  // cursor on the 4th endpoint
  c.set_endpoints(addresses(2));
  std::map<std::string, int> count;
  for (int i = 0; i < 10; ++i) ++count[text_of(c.pick(0))];
  CHECK(count.size() == 2);
  CHECK(count["10.0.0.1:8080"] == 5);
  CHECK(count["10.0.0.2:8080"] == 5);
}

TEST_CASE("least request (P2C) never picks the busier of two endpoints") {
  auto c = cluster(LbPolicy::kLeastRequest, 2);
  auto eps = c.endpoints();
  eps[0]->stats().active_requests = 5;
  eps[1]->stats().active_requests = 1;
  std::mt19937_64 rng(42);
  for (int i = 0; i < 1000; ++i) REQUIRE(text_of(c.pick(rng())) == "10.0.0.2:8080");

  eps[0]->stats().active_requests = 0;
  eps[1]->stats().active_requests = 3;
  for (int i = 0; i < 1000; ++i) REQUIRE(text_of(c.pick(rng())) == "10.0.0.1:8080");
}

TEST_CASE("least request (P2C) never picks the single busiest endpoint - and favours the idlest") {
  auto c = cluster(LbPolicy::kLeastRequest, 4);
  auto eps = c.endpoints();
  const int64_t loads[] = {2, 0, 9, 4};
  for (size_t i = 0; i < eps.size(); ++i) eps[i]->stats().active_requests = loads[i];
  std::map<std::string, int> count;
  std::mt19937_64 rng(7);
  const int n = 12000;
  for (int i = 0; i < n; ++i) ++count[text_of(c.pick(rng()))];
  CHECK(count["10.0.0.3:8080"] == 0);  // load 9: the busier of every pair it is in
  // The idlest (load 0) wins every pair it is drawn into: 1/2 of all picks
  // with two distinct choices out of four.
  CHECK(count["10.0.0.2:8080"] > n * 45 / 100);
  CHECK(count["10.0.0.1:8080"] > count["10.0.0.4:8080"]);
  CHECK(count["10.0.0.4:8080"] > 0);  // beats load 9 when drawn with it
}

TEST_CASE("least request with equal loads still uses every endpoint") {
  auto c = cluster(LbPolicy::kLeastRequest, 3);
  std::map<std::string, int> count;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 3000; ++i) ++count[text_of(c.pick(rng()))];
  CHECK(count.size() == 3);
  for (const auto& [text, n] : count) CHECK_MESSAGE(n > 700, text);
}

TEST_CASE("least request with one endpoint returns it") {
  auto c = cluster(LbPolicy::kLeastRequest, 1);
  c.endpoints()[0]->stats().active_requests = 100;
  CHECK(text_of(c.pick(99)) == "10.0.0.1:8080");
}

TEST_CASE("random covers every endpoint") {
  auto c = cluster(LbPolicy::kRandom, 5);
  std::map<std::string, int> count;
  for (uint64_t r = 0; r < 500; ++r) ++count[text_of(c.pick(r))];
  REQUIRE(count.size() == 5);
  for (const auto& [text, n] : count) CHECK_MESSAGE(n == 100, text);

  count.clear();
  std::mt19937_64 rng(11);
  for (int i = 0; i < 5000; ++i) ++count[text_of(c.pick(rng()))];
  REQUIRE(count.size() == 5);
  for (const auto& [text, n] : count) CHECK_MESSAGE(n > 800, text);
}

TEST_CASE("set_endpoints keeps the endpoint (and its pool) of an address that stays") {
  auto spec = std::make_shared<ClusterSpec>();
  spec->lb = LbPolicy::kRoundRobin;
  Cluster c(spec);
  auto a = address("10.0.0.1", 8080), b = address("10.0.0.2", 8080), d = address("10.0.0.4", 8080);
  c.set_endpoints({a, b});
  REQUIRE(c.endpoints().size() == 2);
  auto kept_b = c.endpoints()[1];
  auto gone_a = c.endpoints()[0];
  kept_b->stats().requests = 17;

  // A DNS refresh brings fresh EndpointAddress values for the same addresses.
  auto b_again = address("10.0.0.2", 8080);
  c.set_endpoints({b_again, d});
  REQUIRE(c.endpoints().size() == 2);
  CHECK(c.endpoints()[0].get() == kept_b.get());  // same object, same idle connections
  CHECK(c.endpoints()[0]->stats().requests == 17);
  CHECK(c.endpoints()[1]->address().text == "10.0.0.4:8080");
  CHECK(c.endpoints()[1].get() != gone_a.get());
  for (const auto& e : c.endpoints()) CHECK(e->address().text != "10.0.0.1:8080");

  // Same IP, other port: a different endpoint.
  c.set_endpoints({address("10.0.0.2", 9090)});
  REQUIRE(c.endpoints().size() == 1);
  CHECK(c.endpoints()[0].get() != kept_b.get());
  CHECK(c.endpoints()[0]->address().text == "10.0.0.2:9090");
}

TEST_CASE("set_endpoints with an unchanged set changes nothing") {
  auto c = cluster(LbPolicy::kRoundRobin, 3);
  std::vector<UpstreamEndpoint*> before;
  for (const auto& e : c.endpoints()) before.push_back(e.get());
  c.set_endpoints(addresses(3));
  REQUIRE(c.endpoints().size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(c.endpoints()[i].get() == before[i]);
}

TEST_CASE("pick_other avoids the endpoint a retry comes from, where there is another") {
  for (auto lb : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest, LbPolicy::kRandom}) {
    CAPTURE(static_cast<int>(lb));
    auto three = cluster(lb, 3);
    for (uint64_t r = 0; r < 200; ++r) {
      auto first = three.pick(r);
      auto other = three.pick_other(first.get(), r * 7 + 1);
      REQUIRE(other);
      CHECK(other != first);
    }
    auto single = cluster(lb, 1);
    auto only = single.pick(1);
    CHECK(single.pick_other(only.get(), 2) == only);  // nowhere else to go
  }
}

// ---- endpoints that are out: unhealthy (active checks) or ejected (outlier detection)

namespace {

// Ejects `endpoint` of `c` through the cluster's own detector.
void eject(Cluster& c, const std::string& text) {
  for (auto& e : c.endpoints())
    if (e->address().text == text)
      for (int i = 0; i < 5; ++i) c.record(*e, remora::policy::Outcome::kGatewayFailure);
}

Cluster detecting(LbPolicy lb, int endpoints, uint32_t max_percent = 100) {
  auto spec = std::make_shared<ClusterSpec>();
  spec->name = "backend";
  spec->lb = lb;
  spec->outlier = std::make_shared<remora::policy::OutlierDetector>(
      remora::policy::OutlierDetectionOptions{.max_ejection_percent = max_percent});
  Cluster c(spec);
  c.set_endpoints(addresses(endpoints));
  return c;
}

}  // namespace

TEST_CASE("every balancer skips ejected and unhealthy endpoints") {
  for (auto lb : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest, LbPolicy::kRandom,
                  LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    CAPTURE(static_cast<int>(lb));
    auto c = detecting(lb, 4);
    eject(c, "10.0.0.2:8080");
    c.endpoints()[2]->stats().healthy = false;  // 10.0.0.3
    std::map<std::string, int> count;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 400; ++i) ++count[text_of(c.pick(rng(), rng()))];
    CHECK(count.count("10.0.0.2:8080") == 0);
    CHECK(count.count("10.0.0.3:8080") == 0);
    CHECK(count["10.0.0.1:8080"] + count["10.0.0.4:8080"] == 400);
  }
}

TEST_CASE("a cluster with no usable endpoint balances over all of them (panic mode)") {
  auto c = detecting(LbPolicy::kRoundRobin, 3);
  for (auto& e : c.endpoints()) e->stats().healthy = false;
  std::map<std::string, int> count;
  for (int i = 0; i < 30; ++i) ++count[text_of(c.pick(0))];
  CHECK(count.size() == 3);
  CHECK(count["10.0.0.1:8080"] == 10);
  // One comes back: it takes everything.
  c.endpoints()[1]->stats().healthy = true;
  for (int i = 0; i < 10; ++i) CHECK(text_of(c.pick(0)) == "10.0.0.2:8080");
}

TEST_CASE("ejection respects max_ejection_percent, and the state follows the endpoint") {
  auto c = detecting(LbPolicy::kRoundRobin, 4, 50);  // two of four at most
  eject(c, "10.0.0.1:8080");
  eject(c, "10.0.0.2:8080");
  eject(c, "10.0.0.3:8080");
  const auto now = std::chrono::steady_clock::now();
  CHECK(c.endpoints()[0]->stats().outlier.is_ejected(now));
  CHECK(c.endpoints()[1]->stats().outlier.is_ejected(now));
  CHECK_FALSE(c.endpoints()[2]->stats().outlier.is_ejected(now));
  // A new endpoint set keeps the ejections of those that stay (the state
  // lives with the endpoint's stats, which the main thread keeps by address).
  std::vector<EndpointAddress> next;
  for (auto& e : c.endpoints()) next.push_back(e->address());
  next.erase(next.begin() + 3);
  c.set_endpoints(next);
  CHECK(c.endpoints()[0]->stats().outlier.is_ejected(now));
}

// Whether an ejection still runs is first compared with a time the cluster
// already read; only an ejection that may still run reads the clock. These
// pin down that the time is never stale: an ejection that begins after the
// cluster last read it is honoured at once, and one that ends lets its
// endpoint back in with no other event (no record, no endpoint set change).
TEST_CASE("an ejection is honoured at once, and its end lets the endpoint back in, by itself") {
  using namespace std::chrono_literals;
  const std::vector<LbPolicy> policies = {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest,
                                          LbPolicy::kRandom, LbPolicy::kRingHash,
                                          LbPolicy::kMaglev};
  std::vector<Cluster> clusters;
  for (auto lb : policies) {
    auto spec = std::make_shared<ClusterSpec>();
    spec->name = "backend";
    spec->lb = lb;
    spec->outlier = std::make_shared<remora::policy::OutlierDetector>(
        remora::policy::OutlierDetectionOptions{.base_ejection_time = 1s,
                                                .max_ejection_time = 1s,
                                                .max_ejection_percent = 100});
    clusters.emplace_back(spec);
    clusters.back().set_endpoints(addresses(4));
  }
  auto spread = [](Cluster& c) {
    std::map<std::string, int> count;
    std::mt19937_64 rng(9);
    for (int i = 0; i < 400; ++i) ++count[text_of(c.pick(rng(), rng()))];
    return count;
  };
  for (auto& c : clusters) {
    CHECK(spread(c).size() == 4);  // reads no clock: nothing was ever ejected
    // A first ejection, then (once the cluster has read the clock) a second.
    eject(c, "10.0.0.2:8080");
    CHECK(spread(c).count("10.0.0.2:8080") == 0);
    eject(c, "10.0.0.3:8080");
  }
  const auto first_end = clusters.front().endpoints()[1]->stats().outlier.ejected_until();
  const auto last_end = clusters.back().endpoints()[2]->stats().outlier.ejected_until();
  for (size_t k = 0; k < clusters.size(); ++k) {
    CAPTURE(static_cast<int>(policies[k]));
    const auto count = spread(clusters[k]);
    // A second of ejection is far longer than these picks take.
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < first_end, "the test thread stalled 1 s");
    CHECK(count.count("10.0.0.2:8080") == 0);
    CHECK(count.count("10.0.0.3:8080") == 0);
  }
  std::this_thread::sleep_until(last_end + 10ms);
  for (size_t k = 0; k < clusters.size(); ++k) {
    CAPTURE(static_cast<int>(policies[k]));
    auto count = spread(clusters[k]);
    CHECK(count["10.0.0.2:8080"] > 0);
    CHECK(count["10.0.0.3:8080"] > 0);
  }
}

TEST_CASE("outcomes recorded through the cluster: ignored while ejected, counted once it ends") {
  using namespace std::chrono_literals;
  auto spec = std::make_shared<ClusterSpec>();
  spec->name = "backend";
  spec->lb = LbPolicy::kRoundRobin;
  spec->outlier = std::make_shared<remora::policy::OutlierDetector>(
      remora::policy::OutlierDetectionOptions{.base_ejection_time = 1s,
                                              .max_ejection_time = 1s,
                                              .max_ejection_percent = 100});
  Cluster c(spec);
  c.set_endpoints(addresses(3));
  auto& endpoint = *c.endpoints()[0];
  const auto& state = endpoint.stats().outlier;
  auto record = [&](remora::policy::Outcome outcome, int times) {
    for (int i = 0; i < times; ++i) c.record(endpoint, outcome);
  };
  using remora::policy::Outcome;
  record(Outcome::kSuccess, 3);
  record(Outcome::kGatewayFailure, 5);
  const auto until = state.ejected_until();
  REQUIRE(state.is_ejected(std::chrono::steady_clock::now()));
  // In-flight outcomes while it is out change nothing.
  record(Outcome::kGatewayFailure, 5);
  record(Outcome::kSuccess, 1);
  record(Outcome::kGatewayFailure, 5);
  REQUIRE_MESSAGE(std::chrono::steady_clock::now() < until, "the test thread stalled 1 s");
  CHECK(state.ejected_until() == until);
  CHECK(state.times_ejected() == 1);
  std::this_thread::sleep_until(until + 10ms);
  for (int i = 0; i < 3; ++i) c.pick(0);  // the cluster reads the clock past the ejection
  CHECK(text_of(c.pick(0)) == "10.0.0.1:8080");
  // A success between failures still resets the count...
  record(Outcome::kGatewayFailure, 4);
  record(Outcome::kSuccess, 1);
  record(Outcome::kGatewayFailure, 4);
  CHECK_FALSE(state.is_ejected(std::chrono::steady_clock::now()));
  // ...and the fifth in a row ejects it again.
  record(Outcome::kGatewayFailure, 1);
  CHECK(state.is_ejected(std::chrono::steady_clock::now()));
}

TEST_CASE("ring_hash and maglev send a key to the same endpoint, and only its keys move") {
  for (auto lb : {LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    CAPTURE(static_cast<int>(lb));
    auto c = detecting(lb, 5);
    std::map<uint64_t, std::string> first;
    for (uint64_t key = 0; key < 2000; ++key) {
      const uint64_t hash = hash64(std::to_string(key));
      first[key] = text_of(c.pick(key * 31, hash));
      CHECK(text_of(c.pick(key * 17 + 3, hash)) == first[key]);  // `random` plays no part
    }
    eject(c, "10.0.0.4:8080");
    int moved = 0;
    for (uint64_t key = 0; key < 2000; ++key) {
      auto now = text_of(c.pick(0, hash64(std::to_string(key))));
      CHECK(now != "10.0.0.4:8080");
      moved += now != first[key];
    }
    int held = 0;
    for (auto& [key, text] : first) held += text == "10.0.0.4:8080";
    CHECK(moved == held);  // exactly the ejected endpoint's keys
    // A request without a key is balanced at random, over the usable ones.
    std::map<std::string, int> spread;
    for (uint64_t r = 0; r < 400; ++r) ++spread[text_of(c.pick(r * 0x9E3779B97F4A7C15ULL))];
    CHECK(spread.size() == 4);
  }
}

// ---- endpoint weights, under every balancer

namespace {

Cluster weighted(LbPolicy lb, std::vector<uint32_t> weights) {
  auto spec = std::make_shared<ClusterSpec>();
  spec->name = "backend";
  spec->lb = lb;
  Cluster c(spec);
  auto set = addresses(static_cast<int>(weights.size()));
  for (size_t i = 0; i < weights.size(); ++i) set[i].weight = weights[i];
  c.set_endpoints(set);
  return c;
}

}  // namespace

TEST_CASE("weighted round robin interleaves in proportion to the weights") {
  auto c = weighted(LbPolicy::kRoundRobin, {5, 1, 1});
  std::string order;
  for (int i = 0; i < 7; ++i) order += text_of(c.pick(0)).substr(7, 1);  // "1", "2" or "3"
  CHECK(order == "1121311");  // smooth: the light ones are not bunched at the end
  std::map<std::string, int> count;
  for (int i = 0; i < 700; ++i) ++count[text_of(c.pick(0))];
  CHECK(count["10.0.0.1:8080"] == 500);
  CHECK(count["10.0.0.2:8080"] == 100);
  CHECK(count["10.0.0.3:8080"] == 100);
}

TEST_CASE("weighted random, ring_hash and maglev share in proportion to the weights") {
  for (auto lb : {LbPolicy::kRandom, LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    CAPTURE(static_cast<int>(lb));
    auto c = weighted(lb, {3, 1});
    std::mt19937_64 rng(11);
    int heavy = 0;
    constexpr int kPicks = 20000;
    for (int i = 0; i < kPicks; ++i) {
      const uint64_t r = rng();
      heavy += text_of(c.pick(r, hash64(std::to_string(r)))) == "10.0.0.1:8080";
    }
    CHECK(heavy > kPicks * 0.70);  // 75 % expected
    CHECK(heavy < kPicks * 0.80);
  }
}

TEST_CASE("weighted least request compares requests in flight per unit of weight") {
  auto c = weighted(LbPolicy::kLeastRequest, {4, 1});
  // 3 in flight on the weight-4 endpoint is less load than 1 on the weight-1 one.
  c.endpoints()[0]->stats().active_requests = 3;
  c.endpoints()[1]->stats().active_requests = 1;
  std::mt19937_64 rng(3);
  for (int i = 0; i < 100; ++i) CHECK(text_of(c.pick(rng())) == "10.0.0.1:8080");
  c.endpoints()[0]->stats().active_requests = 0;
  c.endpoints()[1]->stats().active_requests = 0;
}

TEST_CASE("a new weight for an endpoint that stays applies, and keeps its pool") {
  auto c = weighted(LbPolicy::kRoundRobin, {1, 1});
  auto kept = c.endpoints()[0];
  auto set = addresses(2);
  set[0].weight = 3;
  c.set_endpoints(set);
  CHECK(c.endpoints()[0] == kept);
  std::map<std::string, int> count;
  for (int i = 0; i < 40; ++i) ++count[text_of(c.pick(0))];
  CHECK(count["10.0.0.1:8080"] == 30);
  CHECK(count["10.0.0.2:8080"] == 10);
}

TEST_CASE("the share of an endpoint that is out spreads over the others, not onto its neighbour") {
  for (auto lb : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest, LbPolicy::kRandom,
                  LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    CAPTURE(static_cast<int>(lb));
    auto c = detecting(lb, 4);
    eject(c, "10.0.0.1:8080");
    std::map<std::string, int> count;
    std::mt19937_64 rng(5);
    constexpr int kPicks = 6000;
    for (int i = 0; i < kPicks; ++i) ++count[text_of(c.pick(rng(), rng()))];
    CHECK(count.count("10.0.0.1:8080") == 0);
    for (const char* other : {"10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"}) {
      CAPTURE(other);
      CHECK(count[other] > kPicks / 3 * 0.8);  // a third each, not half on 10.0.0.2
      CHECK(count[other] < kPicks / 3 * 1.2);
    }
  }
}
