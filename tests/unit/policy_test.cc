// The resilience building blocks: how long a retry waits, how many retries a
// cluster may take, how fast a route may be called, how much a cluster may
// have outstanding, and when an endpoint is taken out of balancing.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "remora/policy/backoff.h"
#include "remora/policy/circuit_breaker.h"
#include "remora/policy/outlier_detector.h"
#include "remora/policy/retry_budget.h"
#include "remora/policy/token_bucket.h"

using namespace remora::policy;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A fixed origin well away from the clock's epoch, like a real uptime.
const Clock::time_point t0 = Clock::time_point(1000h);

}  // namespace

// ---- Backoff ----

TEST_CASE("backoff: the first retry waits at most base, each later one up to twice as long") {
  const Backoff b{25ms, 250ms};
  CHECK(b.cap(0) == 25ms);
  CHECK(b.cap(1) == 50ms);
  CHECK(b.cap(2) == 100ms);
  CHECK(b.cap(3) == 200ms);
  CHECK(b.cap(4) == 250ms);  // the max caps it
  CHECK(b.delay(0, 0) == 0ms);
  // The range is inclusive at both ends.
  CHECK(b.delay(0, static_cast<uint64_t>(std::chrono::nanoseconds(25ms).count())) == 25ms);
  std::mt19937_64 random(1);
  for (int i = 0; i < 1000; ++i) CHECK(b.delay(0, random()) <= 25ms);
}

TEST_CASE("backoff: never above the max and never negative, for any attempt and random value") {
  const std::array<Backoff, 4> configs = {Backoff{25ms, 250ms}, Backoff{1ns, 1h},
                                          Backoff{1h, std::chrono::nanoseconds::max()},
                                          Backoff{300ms, 100ms}};  // base above max: max wins
  std::mt19937_64 random(2);
  for (const auto& b : configs) {
    for (unsigned attempt : {0u, 1u, 2u, 10u, 31u, 32u, 62u, 63u, 64u, 100u, 1000u, ~0u}) {
      CHECK(b.cap(attempt) <= b.max);
      CHECK(b.cap(attempt) >= std::min(b.base, b.max));
      for (uint64_t r : {uint64_t{0}, std::numeric_limits<uint64_t>::max(), random(), random()}) {
        const auto d = b.delay(attempt, r);
        CHECK(d >= 0ns);
        CHECK(d <= b.cap(attempt));
      }
    }
  }
  CHECK(Backoff{1h, std::chrono::nanoseconds::max()}.cap(1000) == std::chrono::nanoseconds::max());
  // Unset durations mean no wait rather than a division by zero.
  CHECK(Backoff{0ns, 250ms}.delay(3, 12345) == 0ns);
  CHECK(Backoff{25ms, 0ns}.delay(3, 12345) == 0ns);
}

TEST_CASE("backoff: full jitter is uniform over [0, cap]") {
  const Backoff b{25ms, 250ms};
  std::mt19937_64 random(42);
  constexpr int kSamples = 10000;
  const double cap = static_cast<double>(std::chrono::nanoseconds(b.cap(6)).count());
  double sum = 0;
  std::array<int, 10> deciles{};
  for (int i = 0; i < kSamples; ++i) {
    const double d = static_cast<double>(b.delay(6, random()).count());
    sum += d;
    deciles[std::min(9, static_cast<int>(d / cap * 10))]++;
  }
  // Mean of U[0, cap] is cap/2; its standard error here is 0.3 % of cap.
  CHECK(sum / kSamples == doctest::Approx(cap / 2).epsilon(0.02));
  // Each tenth of the range gets 10 % ± 1.5 % (about 5 standard deviations).
  for (int n : deciles) {
    CHECK(n > kSamples / 10 - 150);
    CHECK(n < kSamples / 10 + 150);
  }
}

// ---- RetryBudget ----

TEST_CASE("retry budget: under a retry storm at most budget_percent of requests plus the minimum") {
  RetryBudget budget({.budget_percent = 20, .min_retries_per_second = 10, .window = 10s});
  // 1000 requests/s for 60 s, each failing and asking for up to 5 retries.
  std::vector<int> granted(60);
  for (int second = 0; second < 60; ++second) {
    for (int i = 0; i < 1000; ++i) {
      const auto now = t0 + std::chrono::seconds(second) + std::chrono::microseconds(i * 1000);
      budget.record_request(now);
      for (int attempt = 0; attempt < 5; ++attempt)
        granted[second] += budget.try_acquire_retry(now);
    }
  }
  // Whatever the window: never more than 20 % of its requests + 10/s × 10 s.
  for (int end = 0; end < 60; ++end) {
    int in_window = 0;
    for (int s = std::max(0, end - 9); s <= end; ++s) in_window += granted[s];
    const int requests = 1000 * (std::min(end, 9) + 1);
    CHECK(in_window <= requests / 5 + 100);
  }
  // Once the window is full: 200 + 10 retries a second on average. The
  // minimum is a reserve for the whole window, spent at once when the storm
  // starts (second 0: 100 + 20 %), and so again each time that second leaves
  // the window: 300 every tenth second, 200 in the others.
  CHECK(granted[0] == 300);
  int steady = 0;
  for (int second = 10; second < 60; ++second) {
    INFO("second ", second);
    CHECK(granted[second] == (second % 10 == 0 ? 300 : 200));
    steady += granted[second];
  }
  CHECK(steady / 50.0 == doctest::Approx(210).epsilon(0.001));
}

TEST_CASE("retry budget: the minimum lets a quiet service retry") {
  RetryBudget budget({.budget_percent = 20, .min_retries_per_second = 10, .window = 10s});
  // One request a second, each retried 3 times: all 30 retries are granted.
  int granted = 0;
  for (int second = 0; second < 10; ++second) {
    const auto now = t0 + std::chrono::seconds(second);
    budget.record_request(now);
    for (int attempt = 0; attempt < 3; ++attempt) granted += budget.try_acquire_retry(now);
  }
  CHECK(granted == 30);
  // No budget and no minimum: no retry at all.
  RetryBudget none({.budget_percent = 0, .min_retries_per_second = 0, .window = 10s});
  none.record_request(t0);
  CHECK_FALSE(none.try_acquire_retry(t0));
}

TEST_CASE("retry budget: requests and retries older than the window no longer count") {
  RetryBudget budget({.budget_percent = 20, .min_retries_per_second = 10, .window = 10s});
  for (int i = 0; i < 10000; ++i) budget.record_request(t0);
  CHECK(budget.allowed_retries(t0) == 2100);
  int granted = 0;
  while (budget.try_acquire_retry(t0 + 9s)) ++granted;
  CHECK(granted == 2100);  // 9 s later the burst of requests still backs retries
  CHECK_FALSE(budget.try_acquire_retry(t0 + 9s + 999ms));
  // 10 s later the requests and those retries have aged out: the minimum only.
  CHECK(budget.requests_in_window(t0 + 10s) == 0);
  CHECK(budget.retries_in_window(t0 + 19s) == 0);
  granted = 0;
  while (budget.try_acquire_retry(t0 + 19s)) ++granted;
  CHECK(granted == 100);
  // A bucket reused a whole window later starts from zero.
  budget.record_request(t0 + 20s);
  CHECK(budget.requests_in_window(t0 + 20s) == 1);
}

TEST_CASE("retry budget: four threads together never get more than the budget (slack 0)") {
  // The threads share each simulated second (a barrier between seconds), so
  // the exact bound can be checked: a retry is counted before the check and
  // taken back if it overdrew, so concurrent callers never overdraw together.
  // They may all back off at once near the limit: up to threads - 1 fewer.
  constexpr int kThreads = 4, kSeconds = 20;
  RetryBudget budget({.budget_percent = 20, .min_retries_per_second = 10, .window = 10s});
  std::barrier sync(kThreads);
  std::array<std::atomic<int>, kSeconds> granted{};
  std::vector<std::thread> threads;
  for (int n = 0; n < kThreads; ++n) {
    threads.emplace_back([&] {
      for (int second = 0; second < kSeconds; ++second) {
        const auto now = t0 + std::chrono::seconds(second);
        for (int i = 0; i < 250; ++i) {
          budget.record_request(now);
          for (int attempt = 0; attempt < 5; ++attempt)
            if (budget.try_acquire_retry(now)) granted[second].fetch_add(1);
        }
        sync.arrive_and_wait();
      }
    });
  }
  for (auto& t : threads) t.join();
  int total = 0;
  for (int end = 0; end < kSeconds; ++end) {
    int in_window = 0;
    for (int s = std::max(0, end - 9); s <= end; ++s) in_window += granted[s].load();
    const int limit = 1000 * (std::min(end, 9) + 1) / 5 + 100;
    CHECK(in_window <= limit);
    CHECK(in_window >= limit - (kThreads - 1));
    total += granted[end].load();
  }
  CHECK(total > 0);
}

// ---- TokenBucket ----

TEST_CASE("token bucket: a full burst at once, then one token per 1/rate") {
  TokenBucket bucket(10, 5);  // 10/s: one token per 100 ms
  for (int i = 0; i < 5; ++i) CHECK(bucket.try_take(t0));
  CHECK_FALSE(bucket.try_take(t0));
  CHECK_FALSE(bucket.try_take(t0 + 99ms));
  CHECK(bucket.try_take(t0 + 100ms));
  CHECK_FALSE(bucket.try_take(t0 + 100ms));
  CHECK(bucket.try_take(t0 + 200ms));
  // Idle time refills up to the burst, not beyond.
  int granted = 0;
  while (bucket.try_take(t0 + 1h)) ++granted;
  CHECK(granted == 5);
}

TEST_CASE("token bucket: over 10 s at three times the rate, rate × 10 s + burst get through") {
  TokenBucket bucket(100, 20);
  int granted = 0;
  for (int i = 0; i < 3000; ++i)  // 300 requests/s for 10 s
    granted += bucket.try_take(t0 + std::chrono::microseconds(i * 10000 / 3));
  CHECK(granted >= 100 * 10 + 20 - 1);
  CHECK(granted <= 100 * 10 + 20 + 1);
}

TEST_CASE("token bucket: odd settings") {
  TokenBucket never(0, 100);
  CHECK_FALSE(never.try_take(t0));
  TokenBucket negative(-5, 100);
  CHECK_FALSE(negative.try_take(t0));
  TokenBucket one(1, 0);  // a burst of 0 would never grant anything: it is 1
  CHECK(one.try_take(t0));
  CHECK_FALSE(one.try_take(t0));
  TokenBucket slow(1e-12, 1);  // one token per ~11 days at least, no overflow
  CHECK(slow.try_take(t0));
  CHECK_FALSE(slow.try_take(t0 + 24h));
  TokenBucket fast(1e12, 1000);  // faster than 1/ns: one per ns
  CHECK(fast.interval() == 1ns);
  CHECK(fast.try_take(t0));
}

TEST_CASE("token bucket: threads together never get more than burst + rate × time") {
  // Four threads draw times from one simulated clock, so the times reach
  // the bucket out of order, as they do from real workers.
  constexpr int kThreads = 4, kPerThread = 20000;
  constexpr int64_t kStepNs = 100'000;  // 10 000 requests/s in all, 10× the rate
  TokenBucket bucket(1000, 50);
  std::atomic<int64_t> clock{0};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < kThreads; ++n) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        const auto now = t0 + std::chrono::nanoseconds(clock.fetch_add(kStepNs));
        if (bucket.try_take(now)) granted.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = (kThreads * kPerThread - 1) * kStepNs / 1e9;  // 8 s
  const int bound = 50 + static_cast<int>(1000 * seconds);
  CHECK(granted.load() <= bound);
  CHECK(granted.load() >= bound * 95 / 100);
}

// ---- CircuitBreaker ----

TEST_CASE("circuit breaker: refuses past the limit and takes again after a release") {
  CircuitBreaker breaker(
      {.max_connections = 2, .max_pending = 1, .max_requests = 3, .max_retries = 1});
  std::vector<CircuitBreaker::Guard> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(breaker.try_acquire(Resource::kRequests));
    CHECK(held.back());
  }
  CHECK_FALSE(breaker.try_acquire(Resource::kRequests));
  CHECK(breaker.occupancy(Resource::kRequests) == 3);
  // Each resource has its own gauge.
  auto retry = breaker.try_acquire(Resource::kRetries);
  CHECK(retry);
  CHECK_FALSE(breaker.try_acquire(Resource::kRetries));
  CHECK(breaker.try_acquire(Resource::kPending));  // released at once: a temporary
  CHECK(breaker.occupancy(Resource::kPending) == 0);
  held.pop_back();  // a guard's death gives its slot back
  CHECK(breaker.occupancy(Resource::kRequests) == 2);
  CHECK(breaker.try_acquire(Resource::kRequests));
  retry.release();
  CHECK(breaker.occupancy(Resource::kRetries) == 0);
  retry.release();  // twice is harmless
  CHECK(breaker.occupancy(Resource::kRetries) == 0);
}

TEST_CASE("circuit breaker: a guard moves, and only the last owner releases") {
  CircuitBreaker breaker({.max_connections = 1});
  auto a = breaker.try_acquire(Resource::kConnections);
  CircuitBreaker::Guard b = std::move(a);
  CHECK_FALSE(a);
  CHECK(b);
  CHECK(breaker.occupancy(Resource::kConnections) == 1);
  CircuitBreaker::Guard c;
  c = std::move(b);
  CHECK(breaker.occupancy(Resource::kConnections) == 1);
  c = breaker.try_acquire(Resource::kConnections);  // refused: c's old slot released
  CHECK_FALSE(c);
  CHECK(breaker.occupancy(Resource::kConnections) == 0);
}

TEST_CASE("circuit breaker: a reload lowers a limit without dropping what is held") {
  CircuitBreaker breaker({.max_requests = 4});
  std::vector<CircuitBreaker::Guard> held;
  for (int i = 0; i < 4; ++i) held.push_back(breaker.try_acquire(Resource::kRequests));
  breaker.set_limits({.max_requests = 2});
  CHECK(breaker.limit(Resource::kRequests) == 2);
  CHECK(breaker.occupancy(Resource::kRequests) == 4);
  held.resize(2);
  CHECK_FALSE(breaker.try_acquire(Resource::kRequests));
  held.resize(1);
  CHECK(breaker.try_acquire(Resource::kRequests));
  breaker.set_limits({.max_requests = 0});  // 0 refuses everything
  held.clear();
  CHECK_FALSE(breaker.try_acquire(Resource::kRequests));
}

TEST_CASE("circuit breaker: eight threads never hold more than the limit") {
  constexpr uint32_t kLimit = 10;
  CircuitBreaker breaker({.max_requests = kLimit});
  std::atomic<int> holders{0}, most{0}, granted{0};
  std::atomic<uint32_t> most_occupancy{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < 8; ++n) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50000; ++i) {
        auto guard = breaker.try_acquire(Resource::kRequests);
        const uint32_t occupancy = breaker.occupancy(Resource::kRequests);
        uint32_t seen = most_occupancy.load();
        while (occupancy > seen && !most_occupancy.compare_exchange_weak(seen, occupancy)) {
        }
        if (!guard) continue;
        granted.fetch_add(1);
        const int now = holders.fetch_add(1) + 1;
        int top = most.load();
        while (now > top && !most.compare_exchange_weak(top, now)) {
        }
        holders.fetch_sub(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(most.load() <= static_cast<int>(kLimit));
  CHECK(most_occupancy.load() <= kLimit);
  CHECK(granted.load() > 0);
  CHECK(breaker.occupancy(Resource::kRequests) == 0);
}

// ---- OutlierDetector ----

namespace {

OutlierDetectionOptions options(uint32_t consecutive_5xx, uint32_t gateway, uint32_t percent) {
  return {.consecutive_5xx = consecutive_5xx,
          .consecutive_gateway_failure = gateway,
          .base_ejection_time = 30s,
          .max_ejection_time = 300s,
          .max_ejection_percent = percent};
}

// A cluster of `n` endpoints' outlier states and its detector, addressed
// by index as the tests read best.
struct Outliers {
  Outliers(OutlierDetectionOptions o, size_t n) : states(n), detector(o) {
    for (auto& s : states) view.push_back(&s);
  }
  bool record(size_t i, Outcome outcome, Clock::time_point now) {
    return detector.record(states[i], outcome, view, now);
  }
  bool is_ejected(size_t i, Clock::time_point now) const { return states[i].is_ejected(now); }
  size_t ejected_count(Clock::time_point now) const {
    return OutlierDetector::ejected_count(view, now);
  }
  uint32_t times_ejected(size_t i) const { return states[i].times_ejected(); }
  Clock::time_point ejected_until(size_t i) const { return states[i].ejected_until(); }

  std::vector<OutlierState> states;
  std::vector<const OutlierState*> view;
  OutlierDetector detector;
};

// Fails `endpoint` until the detector ejects it; returns how many it took.
int fail_until_ejected(Outliers& d, size_t endpoint, Clock::time_point now,
                       Outcome outcome = Outcome::kServerError) {
  for (int n = 1; n <= 100; ++n)
    if (d.record(endpoint, outcome, now)) return n;
  return -1;
}

}  // namespace

TEST_CASE("outlier: status codes map to outcomes") {
  CHECK(outcome_of_status(200) == Outcome::kSuccess);
  CHECK(outcome_of_status(404) == Outcome::kSuccess);
  CHECK(outcome_of_status(429) == Outcome::kSuccess);
  CHECK(outcome_of_status(500) == Outcome::kServerError);
  CHECK(outcome_of_status(501) == Outcome::kServerError);
  CHECK(outcome_of_status(502) == Outcome::kGatewayFailure);
  CHECK(outcome_of_status(503) == Outcome::kGatewayFailure);
  CHECK(outcome_of_status(504) == Outcome::kGatewayFailure);
  CHECK(outcome_of_status(505) == Outcome::kServerError);
}

TEST_CASE("outlier: five consecutive 5xx eject, a success in between resets the count") {
  Outliers d(options(5, 0, 100), 3);
  for (int i = 0; i < 4; ++i) CHECK_FALSE(d.record(1, Outcome::kServerError, t0));
  CHECK_FALSE(d.record(1, Outcome::kSuccess, t0));
  for (int i = 0; i < 4; ++i) CHECK_FALSE(d.record(1, Outcome::kServerError, t0));
  CHECK_FALSE(d.is_ejected(1, t0));
  CHECK(d.record(1, Outcome::kServerError, t0));
  CHECK(d.is_ejected(1, t0));
  CHECK_FALSE(d.is_ejected(0, t0));
  CHECK(d.ejected_count(t0) == 1);
  CHECK(d.times_ejected(1) == 1);
  // Gateway failures are 5xx too.
  CHECK(fail_until_ejected(d, 2, t0, Outcome::kGatewayFailure) == 5);
}

TEST_CASE("outlier: consecutive gateway failures have their own threshold") {
  Outliers d(options(0, 3, 100), 2);  // 5xx rule off
  CHECK_FALSE(d.record(0, Outcome::kGatewayFailure, t0));
  CHECK_FALSE(d.record(0, Outcome::kGatewayFailure, t0));
  CHECK_FALSE(d.record(0, Outcome::kServerError, t0));  // a 500 breaks the gateway run
  CHECK_FALSE(d.record(0, Outcome::kGatewayFailure, t0));
  CHECK_FALSE(d.record(0, Outcome::kGatewayFailure, t0));
  CHECK_FALSE(d.is_ejected(0, t0));
  CHECK(d.record(0, Outcome::kGatewayFailure, t0));
  CHECK(d.is_ejected(0, t0));
  // Plain 500s never eject with the 5xx rule off.
  CHECK(fail_until_ejected(d, 1, t0, Outcome::kServerError) == -1);
}

TEST_CASE("outlier: an ejected endpoint comes back by itself after the ejection time") {
  Outliers d(options(5, 0, 100), 2);
  CHECK(fail_until_ejected(d, 0, t0) == 5);
  CHECK(d.is_ejected(0, t0 + 29s));
  CHECK(d.ejected_until(0) == t0 + 30s);
  CHECK_FALSE(d.is_ejected(0, t0 + 30s));
  CHECK(d.ejected_count(t0 + 30s) == 0);
  // Failures of requests that were in flight while it was out do not count.
  for (int i = 0; i < 10; ++i) CHECK_FALSE(d.record(0, Outcome::kServerError, t0 + 10s));
  CHECK_FALSE(d.record(0, Outcome::kServerError, t0 + 31s));
  CHECK_FALSE(d.is_ejected(0, t0 + 31s));
}

TEST_CASE("outlier: each new ejection lasts longer, up to the max, and the multiplier decays") {
  Outliers d(options(5, 0, 100), 2);
  auto now = t0;
  for (int times = 1; times <= 12; ++times) {
    REQUIRE(fail_until_ejected(d, 0, now) == 5);
    CHECK(d.times_ejected(0) == static_cast<uint32_t>(times));
    const auto expected = std::min<Clock::duration>(30s * times, 300s);
    CHECK(d.ejected_until(0) == now + expected);
    now += expected;  // it fails again the moment it is back
  }
  // Healthy for 10 base ejection times: the multiplier drops by 10 (from 12).
  now += 300s;
  REQUIRE(fail_until_ejected(d, 0, now) == 5);
  CHECK(d.times_ejected(0) == 3);
  CHECK(d.ejected_until(0) == now + 90s);
  // Healthy long enough: back to a single base ejection time.
  now += 90s + 1h;
  REQUIRE(fail_until_ejected(d, 0, now) == 5);
  CHECK(d.times_ejected(0) == 1);
  CHECK(d.ejected_until(0) == now + 30s);
}

TEST_CASE("outlier: never more than max_ejection_percent of the cluster is out") {
  Outliers d(options(5, 0, 20), 10);  // 20 % of 10: two at most
  CHECK(fail_until_ejected(d, 0, t0) == 5);
  CHECK(fail_until_ejected(d, 1, t0 + 10s) == 5);
  // The third is failing just as badly but stays in.
  CHECK(fail_until_ejected(d, 2, t0 + 10s) == -1);
  CHECK_FALSE(d.is_ejected(2, t0 + 10s));
  CHECK(d.ejected_count(t0 + 10s) == 2);
  // When the first comes back, the third's next failure ejects it.
  CHECK(d.record(2, Outcome::kServerError, t0 + 30s));
  CHECK(d.ejected_count(t0 + 30s) == 2);
  CHECK(d.is_ejected(1, t0 + 30s));
  CHECK(d.is_ejected(2, t0 + 30s));
  // The default 10 % of a 5-endpoint cluster is less than one: one may still go.
  Outliers small(options(5, 0, 10), 5);
  CHECK(fail_until_ejected(small, 0, t0) == 5);
  CHECK(fail_until_ejected(small, 1, t0) == -1);
  // Even the only endpoint of a cluster (the balancer then uses it anyway).
  Outliers single(options(5, 0, 10), 1);
  CHECK(fail_until_ejected(single, 0, t0) == 5);
}

TEST_CASE("outlier: eight threads failing every endpoint never eject past the cap") {
  constexpr size_t kEndpoints = 20;
  Outliers d(options(5, 0, 10), kEndpoints);  // two at most
  std::atomic<bool> over{false};
  std::atomic<int> ejections{0};
  std::vector<std::thread> threads;
  for (int n = 0; n < 8; ++n) {
    threads.emplace_back([&, n] {
      for (int i = 0; i < 20000; ++i) {
        const size_t endpoint = static_cast<size_t>(i + n) % kEndpoints;
        if (d.record(endpoint, Outcome::kGatewayFailure, t0)) ejections.fetch_add(1);
        if (d.ejected_count(t0) > 2) over = true;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK_FALSE(over.load());
  CHECK(ejections.load() == 2);
  CHECK(d.ejected_count(t0) == 2);
}
