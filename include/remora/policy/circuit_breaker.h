#pragma once
// A cluster's circuit breaker, shared by all workers: caps on what the
// cluster may have outstanding at once (connections, requests waiting for a
// connection, requests, retries). Past a cap the proxy refuses at once with
// 503 `circuit_open` instead of queueing onto an upstream that is already
// behind, so one slow service cannot take every worker's memory with it.
//
// Each gauge is one atomic raised by compare-exchange only while below its
// limit, so it never exceeds the limit, even for an instant, and needs no
// lock. A Guard gives the slot back when it dies: a request cannot leak one
// on any exit path. Limits are atomics too, so a reload can change them
// without losing the counts of what is in flight.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace remora::policy {

enum class Resource : uint8_t { kConnections, kPending, kRequests, kRetries };

struct CircuitBreakerLimits {
  uint32_t max_connections = 1024;
  uint32_t max_pending = 1024;
  uint32_t max_requests = 1024;
  uint32_t max_retries = 3;
};

class CircuitBreaker {
 public:
  // One held slot; empty (false) when the breaker refused. Movable, so it
  // can live in the request or connection it accounts for.
  class Guard {
   public:
    Guard() = default;
    Guard(Guard&& other) noexcept : gauge_(std::exchange(other.gauge_, nullptr)) {}
    Guard& operator=(Guard&& other) noexcept {
      if (this != &other) {
        release();
        gauge_ = std::exchange(other.gauge_, nullptr);
      }
      return *this;
    }
    ~Guard() { release(); }

    explicit operator bool() const { return gauge_ != nullptr; }
    void release() noexcept {
      if (gauge_) std::exchange(gauge_, nullptr)->fetch_sub(1, std::memory_order_relaxed);
    }

   private:
    friend class CircuitBreaker;
    explicit Guard(std::atomic<uint32_t>* gauge) : gauge_(gauge) {}
    std::atomic<uint32_t>* gauge_ = nullptr;
  };

  explicit CircuitBreaker(CircuitBreakerLimits limits = {}) { set_limits(limits); }
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Lowering a limit below what is held refuses new slots until enough are
  // released; nothing held is taken back.
  void set_limits(const CircuitBreakerLimits& limits) noexcept {
    gauges_[index(Resource::kConnections)].limit.store(limits.max_connections,
                                                       std::memory_order_relaxed);
    gauges_[index(Resource::kPending)].limit.store(limits.max_pending, std::memory_order_relaxed);
    gauges_[index(Resource::kRequests)].limit.store(limits.max_requests, std::memory_order_relaxed);
    gauges_[index(Resource::kRetries)].limit.store(limits.max_retries, std::memory_order_relaxed);
  }

  [[nodiscard]] Guard try_acquire(Resource resource) noexcept {
    Gauge& gauge = gauges_[index(resource)];
    const uint32_t limit = gauge.limit.load(std::memory_order_relaxed);
    uint32_t used = gauge.used.load(std::memory_order_relaxed);
    do {
      if (used >= limit) return Guard();
    } while (!gauge.used.compare_exchange_weak(used, used + 1, std::memory_order_relaxed));
    return Guard(&gauge.used);
  }

  uint32_t occupancy(Resource resource) const noexcept {
    return gauges_[index(resource)].used.load(std::memory_order_relaxed);
  }
  uint32_t limit(Resource resource) const noexcept {
    return gauges_[index(resource)].limit.load(std::memory_order_relaxed);
  }

 private:
  // One cache line each: connection churn does not slow request accounting.
  struct alignas(64) Gauge {
    std::atomic<uint32_t> used{0};
    std::atomic<uint32_t> limit{0};
  };
  static constexpr size_t index(Resource resource) { return static_cast<size_t>(resource); }

  std::array<Gauge, 4> gauges_;
};

}  // namespace remora::policy
