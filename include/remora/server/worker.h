#pragma once
// A worker: one thread, one io_context, its own acceptors (SO_REUSEPORT, so
// the kernel spreads connections), connections, pools and balancer state.
// Only its own thread touches its io_context, which therefore takes no locks
// (BOOST_ASIO_CONCURRENCY_HINT_UNSAFE: ~6 mutex lock/unlock pairs fewer per
// HTTP/1.1 request). Other threads hand it work through its inbox.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/basic_stream_descriptor.hpp>

#include "remora/net/executor.h"
#include "remora/proxy/worker_context.h"
#include "remora/upstream/endpoint.h"

namespace remora::server {

using upstream::EndpointSets;

// A listening socket: bound by the main thread (so that an address in use
// fails the config at once), a plain descriptor until the worker's own
// thread adopts it into `acceptor`.
struct BoundListener {
  BoundListener(std::string listener_name, net::Endpoint listener_address)
      : name(std::move(listener_name)), address(std::move(listener_address)) {}
  BoundListener(BoundListener&& other) noexcept;
  BoundListener& operator=(BoundListener&&) = delete;
  ~BoundListener();

  std::string name;
  net::Endpoint address;
  int fd = -1;  // until adopted
  std::unique_ptr<net::Acceptor> acceptor;
};

class Worker {
 public:
  explicit Worker(unsigned index);
  ~Worker();

  // A listening socket for `address` (SO_REUSEPORT), for apply().
  static BoundListener bind(const std::string& name, const net::Endpoint& address,
                            boost::system::error_code& ec);

  void start();
  // Through the inbox: swap to `snapshot`, take over `listeners` (new ones),
  // keep the ones the snapshot still has, close the rest.
  void apply(std::shared_ptr<const proxy::Snapshot> snapshot, EndpointSets endpoints,
             std::vector<BoundListener> listeners);
  void update_endpoints(EndpointSets endpoints);
  // Through the inbox: stop accepting, let in-flight requests finish, close
  // idle connections.
  void drain();
  void stop();

 private:
  // Runs `work` on the worker's thread (from any thread).
  void send(std::function<void()> work);
  void read_inbox();
  void accept_loop(BoundListener& listener);
  void schedule_sweep();
  void rebuild_view(std::shared_ptr<const proxy::Snapshot> snapshot);

  unsigned index_;
  // Declared before io_ so that it outlives it: connections still open at
  // shutdown are destroyed with io_ and unlink themselves from it.
  proxy::WorkerContext context_;
  std::map<std::string, std::shared_ptr<upstream::Cluster>> clusters_;
  EndpointSets endpoints_;
  boost::asio::io_context io_;
  std::mutex inbox_mutex_;
  std::vector<std::function<void()>> inbox_;
  int inbox_fd_;  // an eventfd: a write wakes the worker's loop
  boost::asio::posix::basic_stream_descriptor<net::Executor> inbox_wake_;
  uint64_t inbox_count_ = 0;
  std::vector<std::unique_ptr<BoundListener>> listeners_;
  net::Timer sweep_timer_;
  std::thread thread_;
};

}  // namespace remora::server
