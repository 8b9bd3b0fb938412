#pragma once
// Consistent hashing for the ring_hash and maglev balancers: the same key
// (a user id, a session cookie) goes to the same endpoint, and when an
// endpoint leaves only the keys it held move (ring) or about that many
// (maglev), so caches behind the cluster stay warm. Both tables depend only
// on the endpoints' ids and weights, never on their order or on when they
// were built, so every worker and every rebuild agrees. They are immutable
// once built: build once per endpoint set and share across workers.
//
// RingHash: ketama-style ring of weighted virtual nodes, lookup by binary
// search. Maglev (Eisenbud et al., NSDI '16): a prime-sized lookup table,
// lookup by one index; better balance and faster lookup, slightly more keys
// move when the set changes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace remora::upstream {

// Stable across builds, platforms and releases (a key's endpoint must not
// change with a remora upgrade): FNV-1a over the bytes, started from the
// seed, then murmur3's 64-bit finalizer so that every input bit reaches
// every output bit.
constexpr uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

constexpr uint64_t hash64(std::string_view data, uint64_t seed = 0) {
  uint64_t h = 0xcbf29ce484222325ULL ^ fmix64(seed + 0x9e3779b97f4a7c15ULL);
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return fmix64(h);
}

struct HashEndpoint {
  std::string_view id;  // e.g. "10.0.0.1:8080"; only read while building
  uint32_t weight = 1;  // 0 = takes no keys
};

class RingHash {
 public:
  // `vnodes_per_weight` virtual nodes per unit of weight, so an endpoint's
  // nodes do not depend on the others and a change elsewhere moves none of
  // its keys; 1024 keeps shares within ~10 % of fair. Past `max_ring_size`
  // all counts are scaled down (balance and minimal movement both suffer).
  explicit RingHash(std::span<const HashEndpoint> endpoints, uint32_t vnodes_per_weight = 1024,
                    size_t max_ring_size = size_t{1} << 22);

  // Index into the endpoints given to the constructor; none when empty.
  std::optional<size_t> pick(uint64_t key) const noexcept;
  size_t ring_size() const { return hashes_.size(); }

 private:
  std::vector<uint64_t> hashes_;     // sorted
  std::vector<uint32_t> endpoints_;  // endpoints_[i] owns (hashes_[i-1], hashes_[i]]
};

class Maglev {
 public:
  static constexpr uint32_t kDefaultTableSize = 65537;

  // `table_size` is rounded up to a prime (the permutations need one); it
  // should be well above 100 × the endpoint count for even shares.
  explicit Maglev(std::span<const HashEndpoint> endpoints, uint32_t table_size = kDefaultTableSize);

  std::optional<size_t> pick(uint64_t key) const noexcept {
    if (table_.empty()) return std::nullopt;
    return table_[key % table_.size()];
  }
  size_t table_size() const { return table_.size(); }

 private:
  std::vector<uint32_t> table_;
};

}  // namespace remora::upstream
