// Consistent hashing (ring_hash, maglev): a key keeps its endpoint across
// rebuilds and workers, endpoints get keys in proportion to their weight, and
// removing one endpoint moves about its share of the keys and no more.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "remora/upstream/hash_ring.h"

using namespace remora::upstream;

namespace {

constexpr int kKeys = 100000;

std::vector<std::string> ids(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("10.0.0." + std::to_string(i + 1) + ":8080");
  return out;
}

std::vector<HashEndpoint> weighted(const std::vector<std::string>& names,
                                   const std::vector<uint32_t>& weights = {}) {
  std::vector<HashEndpoint> out;
  for (size_t i = 0; i < names.size(); ++i)
    out.push_back({names[i], weights.empty() ? 1u : weights[i]});
  return out;
}

// Keys as the proxy makes them: hashes of request attributes (here user ids).
std::vector<uint64_t> keys() {
  std::vector<uint64_t> out;
  for (int i = 0; i < kKeys; ++i) out.push_back(hash64("user-" + std::to_string(i)));
  return out;
}

// The endpoint id each key goes to.
template <class Table>
std::vector<std::string> assign(const Table& table, const std::vector<HashEndpoint>& endpoints) {
  std::vector<std::string> out;
  for (uint64_t key : keys()) {
    auto index = table.pick(key);
    out.push_back(index ? std::string(endpoints.at(*index).id) : "<none>");
  }
  return out;
}

template <class Table>
void check_shares(const std::vector<uint32_t>& weights, double tolerance) {
  const auto names = ids(static_cast<int>(weights.size()));
  const auto endpoints = weighted(names, weights);
  const Table table(endpoints);
  std::map<std::string, int> count;
  for (const auto& id : assign(table, endpoints)) count[id]++;
  double total = 0;
  for (auto w : weights) total += w;
  for (size_t i = 0; i < names.size(); ++i) {
    const double share = static_cast<double>(count[names[i]]) / kKeys;
    const double fair = weights[i] / total;
    INFO(names[i], " share ", share, " fair ", fair);
    CHECK(share > fair * (1 - tolerance));
    CHECK(share < fair * (1 + tolerance));
  }
}

// Share of keys that change endpoint when endpoint `gone` leaves a set of n.
template <class Table>
double moved_on_removal(int n, int gone) {
  const auto names = ids(n);
  const auto before_set = weighted(names);
  auto after_names = names;
  after_names.erase(after_names.begin() + gone);
  const auto after_set = weighted(after_names);
  const auto before = assign(Table(before_set), before_set);
  const auto after = assign(Table(after_set), after_set);
  int moved = 0, moved_from_others = 0;
  for (size_t k = 0; k < before.size(); ++k) {
    if (before[k] == after[k]) continue;
    ++moved;
    if (before[k] != names[gone]) ++moved_from_others;
  }
  if constexpr (std::is_same_v<Table, RingHash>)
    CHECK(moved_from_others == 0);  // only the ring is minimal
  return static_cast<double>(moved) / kKeys;
}

}  // namespace

TEST_CASE("hash64 is pinned: a key's endpoint must not change with a remora upgrade") {
  CHECK(hash64("") == 10913815165318057850ULL);
  CHECK(hash64("user-42") == 7467487079354622597ULL);
  CHECK(hash64("10.0.0.1:8080", 7) == 5018207270855724226ULL);
  CHECK(hash64("a") != hash64("b"));
  CHECK(hash64("a", 1) != hash64("a", 2));
}

TEST_CASE("no endpoints, or only weight 0, picks none") {
  std::vector<HashEndpoint> none;
  CHECK_FALSE(RingHash(none).pick(1).has_value());
  CHECK_FALSE(Maglev(none).pick(1).has_value());
  std::vector<HashEndpoint> zero = {{"10.0.0.1:8080", 0}, {"10.0.0.2:8080", 0}};
  CHECK_FALSE(RingHash(zero).pick(1).has_value());
  CHECK_FALSE(Maglev(zero).pick(1).has_value());
  CHECK(RingHash(zero).ring_size() == 0);
}

TEST_CASE("one endpoint takes every key; a weight-0 endpoint takes none") {
  std::vector<HashEndpoint> set = {{"10.0.0.1:8080", 0}, {"10.0.0.2:8080", 3}};
  const RingHash ring(set);
  const Maglev maglev(set);
  for (uint64_t key : keys()) {
    CHECK(ring.pick(key) == std::optional<size_t>(1));
    CHECK(maglev.pick(key) == std::optional<size_t>(1));
  }
}

TEST_CASE("ring hash: shares follow weights within 10 % over 100k keys") {
  check_shares<RingHash>({1, 1, 1}, 0.10);
  check_shares<RingHash>({1, 1, 1, 1, 1}, 0.10);
  check_shares<RingHash>({1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 0.10);
  check_shares<RingHash>({1, 2, 3, 4}, 0.10);
}

TEST_CASE("maglev: shares follow weights within 5 % over 100k keys") {
  check_shares<Maglev>({1, 1, 1}, 0.05);
  check_shares<Maglev>({1, 1, 1, 1, 1}, 0.05);
  check_shares<Maglev>({1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, 0.05);
  check_shares<Maglev>({1, 2, 3, 4}, 0.05);
  check_shares<Maglev>({100, 1, 10}, 0.05);
}

TEST_CASE("removing one of N endpoints moves at most 1/N + 5 % of the keys") {
  for (int n : {3, 5, 10}) {
    for (int gone : {0, n / 2, n - 1}) {
      INFO("n=", n, " removed=", gone);
      CHECK(moved_on_removal<RingHash>(n, gone) <= 1.0 / n + 0.05);
      CHECK(moved_on_removal<Maglev>(n, gone) <= 1.0 / n + 0.05);
    }
  }
}

TEST_CASE("the same endpoints give the same table, whatever their order") {
  const auto names = ids(7);
  const auto set = weighted(names, {1, 2, 1, 3, 1, 1, 2});
  auto reversed = set;
  std::reverse(reversed.begin(), reversed.end());
  CHECK(assign(RingHash(set), set) == assign(RingHash(set), set));
  CHECK(assign(RingHash(set), set) == assign(RingHash(reversed), reversed));
  CHECK(assign(Maglev(set), set) == assign(Maglev(set), set));
  CHECK(assign(Maglev(set), set) == assign(Maglev(reversed), reversed));
}

TEST_CASE("maglev rounds its table size up to a prime") {
  const auto names = ids(3);
  const auto set = weighted(names);
  CHECK(Maglev(set).table_size() == 65537);
  CHECK(Maglev(set, 1000).table_size() == 1009);
  CHECK(Maglev(set, 0).table_size() == 2);
}
