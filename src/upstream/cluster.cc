#include "remora/upstream/cluster.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "remora/observe/metrics.h"

namespace remora::upstream {

void Cluster::set_endpoints(const std::vector<EndpointAddress>& addresses) {
  std::vector<std::shared_ptr<UpstreamEndpoint>> next;
  next.reserve(addresses.size());
  for (const auto& address : addresses) {
    std::shared_ptr<UpstreamEndpoint> kept;
    for (auto& existing : endpoints_)
      if (existing && existing->address().address == address.address) kept = existing;
    if (kept) kept->set_weight(address.weight);
    next.push_back(kept ? kept : std::make_shared<UpstreamEndpoint>(address));
  }
  endpoints_ = std::move(next);
  if (next_ >= endpoints_.size()) next_ = 0;
  stats_.clear();
  outlier_states_.clear();
  cumulative_.clear();
  uint64_t total = 0;
  for (auto& endpoint : endpoints_) {
    stats_.push_back(&endpoint->stats());
    outlier_states_.push_back(&endpoint->stats().outlier);
    total += endpoint->address().weight;
    cumulative_.push_back(total);
  }
  weighted_ = total != endpoints_.size();
  current_.assign(endpoints_.size(), 0);

  ring_.reset();
  maglev_.reset();
  if (spec_->lb == LbPolicy::kRingHash || spec_->lb == LbPolicy::kMaglev) {
    std::vector<HashEndpoint> ids;
    for (auto& endpoint : endpoints_)
      ids.push_back({endpoint->address().text, endpoint->address().weight});
    if (spec_->lb == LbPolicy::kRingHash) ring_ = std::make_unique<RingHash>(ids);
    else maglev_ = std::make_unique<Maglev>(ids);
  }
}

size_t Cluster::random_index(uint64_t random) const {
  if (!weighted_) return random % endpoints_.size();
  const uint64_t point = random % cumulative_.back();
  return static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), point) -
                             cumulative_.begin());
}

// Inlined into choose(), its only caller: one stack frame per pick.
[[gnu::always_inline]] inline size_t Cluster::balance(uint64_t random, const uint64_t* key) {
  const size_t n = endpoints_.size();
  switch (spec_->lb) {
    case LbPolicy::kLeastRequest: {
      // Power of two choices: two distinct random endpoints, the less busy
      // for its weight wins (requests in flight ÷ weight, compared crosswise).
      if (n == 1) return 0;
      size_t a = random % n;
      size_t b = (a + 1 + (random >> 32) % (n - 1)) % n;
      if (const bool usable_a = usable(a); usable_a != usable(b)) return usable_a ? a : b;
      auto load = [&](size_t i, size_t other) {
        const auto active = stats_[i]->active_requests.load(std::memory_order_relaxed);
        if (!weighted_) return active;
        return (active + 1) * static_cast<int64_t>(endpoints_[other]->address().weight);
      };
      // Which one wins is a coin toss to the branch predictor: an indexed
      // load instead of a branch it would miss half the time.
      const size_t pair[2] = {a, b};
      return pair[load(b, a) < load(a, b)];
    }
    case LbPolicy::kRingHash:
    case LbPolicy::kMaglev:
      if (key) {
        auto picked = ring_ ? ring_->pick(*key) : maglev_ ? maglev_->pick(*key) : std::nullopt;
        if (picked) return *picked;
      }
      return random_index(random);  // no key: spread at random
    case LbPolicy::kRandom:
      return random_index(random);
    case LbPolicy::kRoundRobin:
      break;
  }
  if (weighted_) return weighted_round_robin();
  const size_t i = next_;
  next_ = next_ + 1 == n ? 0 : next_ + 1;
  return i;
}

size_t Cluster::weighted_round_robin() {
  // Smooth weighted round robin: each endpoint gains its weight, the one
  // furthest ahead is chosen and pays the total, so the picks interleave
  // (weights 5:1:1 give a a b a c a a, not a a a a a b c).
  size_t best = 0;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    current_[i] += endpoints_[i]->address().weight;
    if (current_[i] > current_[best]) best = i;
  }
  current_[best] -= static_cast<int64_t>(cumulative_.back());
  return best;
}

bool Cluster::ended(Clock::time_point until) {
  if (!seen_is_now_) {
    seen_ = Clock::now();
    seen_is_now_ = true;
  }
  return until <= seen_;
}

std::shared_ptr<UpstreamEndpoint> Cluster::choose(uint64_t random, const uint64_t* key) {
  if (endpoints_.empty()) return nullptr;
  seen_is_now_ = false;
  const size_t chosen = balance(random, key);
  if (usable(chosen)) [[likely]] return endpoints_[chosen];
  return stand_in(chosen, key ? *key : random);
}

std::shared_ptr<UpstreamEndpoint> Cluster::stand_in(size_t chosen, uint64_t seed) {
  // A few weighted draws over the cluster (seeded by the key under a hash,
  // so each key's stand-in stays the same and the keys spread over the
  // others instead of piling onto one neighbour), then the first usable
  // endpoint in list order.
  const size_t n = endpoints_.size();
  for (uint64_t draw = 1; draw <= 4; ++draw) {
    const size_t i = random_index(fmix64(seed + draw * 0x9E3779B97F4A7C15ULL));
    if (usable(i)) return endpoints_[i];
  }
  for (size_t step = 1; step < n; ++step) {
    const size_t i = (chosen + step) % n;
    if (usable(i)) return endpoints_[i];
  }
  if (spec_->stats) spec_->stats->panic_picks.add();
  return endpoints_[chosen];
}

std::shared_ptr<UpstreamEndpoint> Cluster::pick_other(const UpstreamEndpoint* avoid,
                                                      uint64_t random) {
  std::shared_ptr<UpstreamEndpoint> picked;
  for (int i = 0; i < 3; ++i) {
    picked = pick(random);
    if (!picked || picked.get() != avoid) break;
    random = random * 0x9E3779B97F4A7C15ULL + 1;  // another draw for random / P2C
  }
  return picked;
}

void Cluster::record(UpstreamEndpoint& endpoint, policy::Outcome outcome) {
  if (!spec_->outlier) return;
  auto& state = endpoint.stats().outlier;
  // A success on an endpoint that is not ejected only clears its counters,
  // and any time after its ejection ended says so: one already seen spares
  // the clock read on most requests.
  const bool settled = outcome == policy::Outcome::kSuccess && state.ejected_until() <= seen_;
  if (!spec_->outlier->record(state, outcome, outlier_states_, settled ? seen_ : Clock::now()))
    return;
  if (spec_->stats) spec_->stats->ejections.add();
  const auto out_for = std::chrono::duration_cast<std::chrono::milliseconds>(
      state.ejected_until() - Clock::now());
  spdlog::warn("cluster {}: endpoint {} ejected for {} ms ({} time{} in a row), too many failures",
               spec_->name, endpoint.address().text, out_for.count(), state.times_ejected(),
               state.times_ejected() == 1 ? "" : "s");
}

void Cluster::sweep_idle(Clock::time_point now) {
  for (auto& endpoint : endpoints_) endpoint->sweep(now, spec_->pool_idle_timeout);
}

void Cluster::close_idle() {
  for (auto& endpoint : endpoints_) endpoint->close_idle();
}

}  // namespace remora::upstream
