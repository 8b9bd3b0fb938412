#pragma once
// A one-waiter wake-up for coroutines on one thread: notify() before wait()
// is not lost, and several notifies before a wait wake it once. A wait may
// also end at a deadline, which spares the caller a timer of its own.
#include <chrono>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace remora::proxy {

class Signal {
 public:
  using TimePoint = boost::asio::steady_timer::time_point;

  explicit Signal(const boost::asio::any_io_executor& ex) : timer_(ex) {}
  void notify() {
    pending_ = true;
    timer_.cancel();
  }
  // Returns on a notify, or at `until` (the caller checks its clock).
  boost::asio::awaitable<void> wait(TimePoint until = TimePoint::max()) {
    if (!pending_) {
      timer_.expires_at(until);
      boost::system::error_code ec;
      co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
    }
    pending_ = false;
  }

 private:
  boost::asio::steady_timer timer_;
  bool pending_ = false;
};

}  // namespace remora::proxy
