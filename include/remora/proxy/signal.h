#pragma once
// A one-waiter wake-up for coroutines on one thread: notify() before a wait
// is not lost, and several notifies before a wait wake it once.
//
// wait() parks the coroutine's completion handler here and notify() posts
// it: no timer, so an HTTP/2 stream's waits take no timer-queue lock and
// its Signal costs no service lookup to construct. wait_until() ends at a
// deadline too, on a timer made the first time one is asked for.
//
// A parked handler holds its coroutine, which usually holds the Signal's
// owner: whoever ends the owner's life without a notify (a connection torn
// down with the io_context) calls abandon(), or the two keep each other.
#include <chrono>
#include <optional>
#include <utility>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>

#include "remora/net/executor.h"

namespace remora::proxy {

class Signal {
 public:
  using TimePoint = net::Timer::time_point;

  explicit Signal(net::Executor ex) : executor_(std::move(ex)) {}
  Signal(const Signal&) = delete;
  Signal& operator=(const Signal&) = delete;

  void notify() {
    if (waiter_) return resume();
    pending_ = true;
    if (timer_) timer_->cancel();  // ends a wait_until
  }

  // Returns on a notify; at once, without suspending, if one came first.
  // Not a coroutine itself: a wait that parks costs no frame of its own.
  // The caller re-checks what it waits for (a notify that comes while its
  // wake-up is on the way is kept for the next wait).
  net::Awaitable<void> wait() { return pending_ ? take_pending() : park(); }

  // Returns on a notify, or at `until` (the caller checks its clock).
  net::Awaitable<void> wait_until(TimePoint until) {
    if (!pending_) {
      if (!timer_) timer_.emplace(executor_);
      timer_->expires_at(until);
      boost::system::error_code ec;
      co_await timer_->async_wait(net::nothrow(ec));
    }
    pending_ = false;
  }

  // Drops a parked waiter without resuming it (its coroutine unwinds).
  void abandon() { auto dropped = std::move(waiter_); }

 private:
  net::Awaitable<void> take_pending() {
    pending_ = false;
    co_return;
  }

  net::Awaitable<void> park() {
    return boost::asio::async_initiate<const boost::asio::use_awaitable_t<net::Executor>&, void()>(
        [this](boost::asio::any_completion_handler<void()> handler) {
          waiter_.swap(handler);  // Boost 1.81's move assignment recurses: swap instead
        },
        net::use_awaitable);
  }

  // Posted, never run inline: notify() is called from nghttp2 callbacks and
  // from inside other coroutines.
  void resume() {
    boost::asio::post(executor_, [waiter = std::move(waiter_)]() mutable { std::move(waiter)(); });
  }

  net::Executor executor_;
  boost::asio::any_completion_handler<void()> waiter_;
  std::optional<net::Timer> timer_;
  bool pending_ = false;
};

}  // namespace remora::proxy
