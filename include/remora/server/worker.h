#pragma once
// A worker: one thread, one io_context, its own acceptors (SO_REUSEPORT, so
// the kernel spreads connections), connections, pools and balancer state.
// Other threads talk to it only by posting to its io_context.
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "remora/net/executor.h"
#include "remora/proxy/worker_context.h"
#include "remora/upstream/endpoint.h"

namespace remora::server {

using upstream::EndpointSets;

struct BoundListener {
  std::string name;
  net::Endpoint address;
  std::unique_ptr<net::Acceptor> acceptor;
};

class Worker {
 public:
  explicit Worker(unsigned index);
  ~Worker();

  boost::asio::io_context& io() { return io_; }

  // Opens an acceptor for `address` on this worker's io_context (callable
  // from the main thread before handing it over with apply()).
  BoundListener bind(const std::string& name, const net::Endpoint& address,
                     boost::system::error_code& ec);

  void start();
  // Posted: swap to `snapshot`, take over `listeners` (new ones), keep the
  // ones whose address is in `keep`, close the rest.
  void apply(std::shared_ptr<const proxy::Snapshot> snapshot, EndpointSets endpoints,
             std::vector<BoundListener> listeners);
  void update_endpoints(EndpointSets endpoints);
  // Posted: stop accepting, let in-flight requests finish, close idle connections.
  void drain();
  void stop();

 private:
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
  std::vector<std::unique_ptr<BoundListener>> listeners_;
  net::Timer sweep_timer_;
  std::thread thread_;
};

}  // namespace remora::server
