#include "remora/upstream/hash_ring.h"

#include <algorithm>
#include <cmath>

namespace remora::upstream {

namespace {

// Distinct seeds for the independent hashes of one id.
constexpr uint64_t kMaglevOffsetSeed = 0x6d61676c65764f66ULL;  // "maglevOf"
constexpr uint64_t kMaglevSkipSeed = 0x6d61676c65765370ULL;    // "maglevSp"

bool is_prime(uint32_t n) {
  if (n < 2) return false;
  for (uint32_t d = 2; uint64_t{d} * d <= n; ++d)
    if (n % d == 0) return false;
  return true;
}

uint32_t prime_at_least(uint32_t n) {
  n = std::max<uint32_t>(n, 2);
  while (!is_prime(n)) ++n;  // primes are dense: a few dozen steps at most
  return n;
}

}  // namespace

RingHash::RingHash(std::span<const HashEndpoint> endpoints, uint32_t vnodes_per_weight,
                   size_t max_ring_size) {
  uint64_t total_weight = 0;
  for (const auto& endpoint : endpoints) total_weight += endpoint.weight;
  if (total_weight == 0) return;
  const double per_weight = std::min(static_cast<double>(std::max<uint32_t>(vnodes_per_weight, 1)),
                                     static_cast<double>(max_ring_size) / total_weight);

  struct Node {
    uint64_t hash;
    uint32_t endpoint;
  };
  std::vector<Node> nodes;
  nodes.reserve(static_cast<size_t>(per_weight * total_weight) + endpoints.size());
  for (uint32_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i].weight == 0) continue;
    const auto count = std::max<uint64_t>(1, std::llround(endpoints[i].weight * per_weight));
    // Node k of an id is the same whatever the other endpoints are.
    for (uint64_t k = 0; k < count; ++k) nodes.push_back({hash64(endpoints[i].id, k), i});
  }
  // Ties (two ids hashing alike) broken by id, so input order never matters.
  std::sort(nodes.begin(), nodes.end(), [&](const Node& a, const Node& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    if (endpoints[a.endpoint].id != endpoints[b.endpoint].id)
      return endpoints[a.endpoint].id < endpoints[b.endpoint].id;
    return a.endpoint < b.endpoint;
  });
  hashes_.reserve(nodes.size());
  endpoints_.reserve(nodes.size());
  for (const auto& node : nodes) {
    hashes_.push_back(node.hash);
    endpoints_.push_back(node.endpoint);
  }
}

std::optional<size_t> RingHash::pick(uint64_t key) const noexcept {
  if (hashes_.empty()) return std::nullopt;
  // The first node at or after the key, wrapping around.
  size_t i = std::lower_bound(hashes_.begin(), hashes_.end(), key) - hashes_.begin();
  if (i == hashes_.size()) i = 0;
  return endpoints_[i];
}

Maglev::Maglev(std::span<const HashEndpoint> endpoints, uint32_t table_size) {
  struct Entry {
    uint32_t endpoint;
    uint64_t weight;
    uint64_t position;  // the next slot in this endpoint's permutation
    uint64_t skip;
    uint64_t target = 0;  // takes a slot in round r when r·weight ≥ target
  };
  const uint64_t size = prime_at_least(table_size);
  std::vector<Entry> entries;
  uint64_t max_weight = 0;
  for (uint32_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i].weight == 0) continue;
    entries.push_back({i, endpoints[i].weight, hash64(endpoints[i].id, kMaglevOffsetSeed) % size,
                       hash64(endpoints[i].id, kMaglevSkipSeed) % (size - 1) + 1});
    max_weight = std::max(max_weight, entries.back().weight);
  }
  if (entries.empty()) return;
  // The fill order must not depend on input order: sort by id.
  std::stable_sort(entries.begin(), entries.end(), [&](const Entry& a, const Entry& b) {
    return endpoints[a.endpoint].id < endpoints[b.endpoint].id;
  });

  // Rounds: in each, every endpoint due by its weight claims its next free
  // preferred slot (Envoy's weighted variant of the paper's algorithm; an
  // endpoint of the highest weight is due every round, one of a third of it
  // every third round).
  constexpr uint32_t kEmpty = UINT32_MAX;
  table_.assign(size, kEmpty);
  uint64_t filled = 0;
  for (uint64_t round = 0; filled < size; ++round) {
    for (auto& entry : entries) {
      if (filled == size) break;
      if (round * entry.weight < entry.target) continue;
      entry.target += max_weight;
      while (table_[entry.position] != kEmpty)
        entry.position = (entry.position + entry.skip) % size;
      table_[entry.position] = entry.endpoint;
      entry.position = (entry.position + entry.skip) % size;
      ++filled;
    }
  }
}

}  // namespace remora::upstream
