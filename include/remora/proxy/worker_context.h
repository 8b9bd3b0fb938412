#pragma once
// What a downstream connection needs from the worker thread that owns it.
// Everything here is touched by that one thread only (no locks).
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include <boost/intrusive/list.hpp>

#include "remora/proxy/snapshot.h"
#include "remora/upstream/cluster.h"

namespace remora::proxy {

// A snapshot bound to this worker's runtime clusters (pools, LB cursors).
struct WorkerView {
  std::shared_ptr<const Snapshot> snapshot;
  std::vector<std::shared_ptr<upstream::Cluster>> clusters;  // by Snapshot::clusters index

  const ListenerSpec* listener(std::string_view name) const {
    for (const auto& l : snapshot->listeners)
      if (l.name == name) return &l;
    return nullptr;
  }
};

// Base of every downstream connection, so that drain can reach idle ones.
class DownstreamConnection : public boost::intrusive::list_base_hook<
                                 boost::intrusive::link_mode<boost::intrusive::auto_unlink>> {
 public:
  virtual ~DownstreamConnection() = default;
  // Finish the request in flight, if any, then close; close now if idle.
  virtual void drain() = 0;
};

class WorkerContext {
 public:
  std::shared_ptr<const WorkerView> view;
  bool draining = false;
  boost::intrusive::list<DownstreamConnection, boost::intrusive::constant_time_size<false>>
      connections;
  std::atomic<int64_t>* requests_in_flight = nullptr;  // process-wide, read by drain

  uint64_t random() {  // xorshift64*: fast, per worker, good enough for balancing
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545F4914F6CDD1DULL;
  }
  void seed(uint64_t s) { state_ = s ? s : 0x9E3779B97F4A7C15ULL; }

 private:
  uint64_t state_ = 0x9E3779B97F4A7C15ULL;
};

}  // namespace remora::proxy
