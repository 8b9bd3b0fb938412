#include "remora/upstream/cluster.h"

namespace remora::upstream {

void Cluster::set_endpoints(const std::vector<EndpointAddress>& addresses) {
  std::vector<std::shared_ptr<UpstreamEndpoint>> next;
  next.reserve(addresses.size());
  for (const auto& address : addresses) {
    std::shared_ptr<UpstreamEndpoint> kept;
    for (auto& existing : endpoints_)
      if (existing && existing->address().address == address.address) kept = existing;
    next.push_back(kept ? kept : std::make_shared<UpstreamEndpoint>(address));
  }
  endpoints_ = std::move(next);
  if (next_ >= endpoints_.size()) next_ = 0;
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

std::shared_ptr<UpstreamEndpoint> Cluster::pick(uint64_t random) {
  const size_t n = endpoints_.size();
  if (n == 0) return nullptr;
  switch (spec_->lb) {
    case LbPolicy::kLeastRequest: {
      // Power of two choices: two distinct random endpoints, the less busy wins.
      if (n == 1) return endpoints_[0];
      size_t a = random % n;
      size_t b = (a + 1 + (random >> 32) % (n - 1)) % n;
      auto load = [&](size_t i) {
        return endpoints_[i]->stats().active_requests.load(std::memory_order_relaxed);
      };
      return endpoints_[load(b) < load(a) ? b : a];
    }
    case LbPolicy::kRandom:
      return endpoints_[random % n];
    default: {  // round robin (ring_hash and maglev come with the resilience release)
      auto& endpoint = endpoints_[next_];
      next_ = next_ + 1 == n ? 0 : next_ + 1;
      return endpoint;
    }
  }
}

void Cluster::sweep_idle(std::chrono::steady_clock::time_point now) {
  for (auto& endpoint : endpoints_) endpoint->sweep(now, spec_->pool_idle_timeout);
}

void Cluster::close_idle() {
  for (auto& endpoint : endpoints_) endpoint->close_idle();
}

}  // namespace remora::upstream
