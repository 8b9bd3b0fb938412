#include "remora/server/worker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <spdlog/spdlog.h>

#include "remora/proxy/downstream.h"

namespace remora::server {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

BoundListener::BoundListener(BoundListener&& other) noexcept
    : name(std::move(other.name)),
      address(std::move(other.address)),
      fd(std::exchange(other.fd, -1)),
      acceptor(std::move(other.acceptor)) {}

BoundListener::~BoundListener() {
  if (fd >= 0) ::close(fd);  // never adopted (a reload that failed, or shutdown)
}

// Made on the main thread before the worker's starts (thread creation orders
// the two); from then on only the worker's thread touches io_.
Worker::Worker(unsigned index)
    : index_(index),
      io_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE),
      inbox_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      inbox_wake_(io_, inbox_fd_),
      sweep_timer_(io_) {
  context_.seed(0x9E3779B97F4A7C15ULL * (index + 1) ^
                static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
}

Worker::~Worker() {
  stop();
  // Sockets must go before the io_context they belong to.
  listeners_.clear();
  context_.view.reset();
  clusters_.clear();
}

BoundListener Worker::bind(const std::string& name, const net::Endpoint& address,
                           boost::system::error_code& ec) {
  BoundListener bound{name, address};
  boost::asio::io_context staging;  // the worker's io_context is its thread's alone
  net::Acceptor acceptor(staging);
  acceptor.open(address.protocol(), ec);
  if (!ec) acceptor.set_option(net::Acceptor::reuse_address(true), ec);
  if (!ec) {
    int one = 1;
    if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      ec.assign(errno, boost::system::system_category());
  }
  if (!ec) acceptor.bind(address, ec);
  if (!ec) acceptor.listen(4096, ec);
  if (!ec) bound.fd = acceptor.release(ec);
  return bound;
}

void Worker::start() {
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    read_inbox();
    schedule_sweep();
    io_.run();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  send([this] { io_.stop(); });
  thread_.join();
}

void Worker::send(std::function<void()> work) {
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_.push_back(std::move(work));
  }
  const uint64_t one = 1;
  [[maybe_unused]] auto written = ::write(inbox_fd_, &one, sizeof one);  // adds to the counter
}

// A wake-up may find the inbox already emptied by the one before: harmless.
void Worker::read_inbox() {
  inbox_wake_.async_read_some(asio::buffer(&inbox_count_, sizeof inbox_count_),
                              [this](boost::system::error_code ec, size_t) {
                                if (ec) return;  // closed with the worker
                                std::vector<std::function<void()>> work;
                                {
                                  std::lock_guard lock(inbox_mutex_);
                                  work.swap(inbox_);
                                }
                                for (auto& w : work) w();
                                read_inbox();
                              });
}

void Worker::accept_loop(BoundListener& listener) {
  asio::co_spawn(
      io_,
      [this, &listener]() -> net::Awaitable<void> {
        auto* acceptor = listener.acceptor.get();
        std::string name = listener.name;
        for (;;) {
          boost::system::error_code ec;
          auto socket = co_await acceptor->async_accept(net::nothrow(ec));
          if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
          if (ec) {  // out of descriptors or memory: back off instead of spinning
            spdlog::warn("worker {}: accept on {}: {}", index_, name, ec.message());
            net::Timer pause(io_, std::chrono::milliseconds(50));
            co_await pause.async_wait(net::nothrow(ec));
            continue;
          }
          const auto* spec = context_.view->listener(name);
          proxy::serve_downstream(std::move(socket), context_, name,
                                  spec ? spec->protocol : proxy::ListenerProtocol::kAuto);
        }
      },
      asio::detached);
}

void Worker::rebuild_view(std::shared_ptr<const proxy::Snapshot> snapshot) {
  auto view = std::make_shared<proxy::WorkerView>();
  std::map<std::string, std::shared_ptr<upstream::Cluster>> kept;
  for (const auto& spec : snapshot->clusters) {
    auto it = clusters_.find(spec->name);
    auto cluster = it != clusters_.end() ? it->second : std::make_shared<upstream::Cluster>(spec);
    cluster->set_spec(spec);
    if (auto e = endpoints_.find(spec->name); e != endpoints_.end())
      cluster->set_endpoints(e->second);
    kept[spec->name] = cluster;
    view->clusters.push_back(cluster);
  }
  for (auto& [name, cluster] : clusters_)
    if (!kept.count(name)) cluster->close_idle();  // in-flight requests keep theirs
  clusters_ = std::move(kept);
  view->snapshot = std::move(snapshot);
  context_.view = std::move(view);
}

void Worker::apply(std::shared_ptr<const proxy::Snapshot> snapshot, EndpointSets endpoints,
                   std::vector<BoundListener> listeners) {
  auto moved = std::make_shared<std::vector<BoundListener>>(std::move(listeners));
  send([this, snapshot = std::move(snapshot), endpoints = std::move(endpoints), moved]() mutable {
    endpoints_ = std::move(endpoints);
    rebuild_view(std::move(snapshot));
    // Listeners: keep those still configured (same name and address), close the rest.
    std::vector<std::unique_ptr<BoundListener>> next;
    for (auto& current : listeners_) {
      bool wanted = false;
      for (const auto& l : context_.view->snapshot->listeners)
        wanted |= l.name == current->name && l.address == current->address;
      if (wanted) {
        next.push_back(std::move(current));
      } else {
        boost::system::error_code ec;
        current->acceptor->close(ec);
      }
    }
    for (auto& fresh : *moved) {
      auto listener = std::make_unique<BoundListener>(std::move(fresh));
      listener->acceptor = std::make_unique<net::Acceptor>(io_);
      boost::system::error_code ec;
      listener->acceptor->assign(listener->address.protocol(), listener->fd, ec);
      if (ec) {  // the descriptor stays the listener's, and closes with it
        spdlog::error("worker {}: listener {}: {}", index_, listener->name, ec.message());
        continue;
      }
      listener->fd = -1;
      accept_loop(*next.emplace_back(std::move(listener)));
    }
    listeners_ = std::move(next);
  });
}

void Worker::update_endpoints(EndpointSets endpoints) {
  send([this, endpoints = std::move(endpoints)]() mutable {
    for (auto& [name, addresses] : endpoints) {
      if (auto it = clusters_.find(name); it != clusters_.end())
        it->second->set_endpoints(addresses);
      endpoints_[name] = std::move(addresses);
    }
  });
}

void Worker::drain() {
  send([this] {
    context_.draining = true;
    for (auto& listener : listeners_) {
      boost::system::error_code ec;
      listener->acceptor->close(ec);
    }
    // drain() may close a connection, which unlinks it: iterate over a copy.
    std::vector<proxy::DownstreamConnection*> connections;
    for (auto& c : context_.connections) connections.push_back(&c);
    for (auto* c : connections) c->drain();
    for (auto& [name, cluster] : clusters_) cluster->close_idle();
  });
}

void Worker::schedule_sweep() {
  sweep_timer_.expires_after(std::chrono::seconds(1));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    auto now = std::chrono::steady_clock::now();
    for (auto& [name, cluster] : clusters_) cluster->sweep_idle(now);
    schedule_sweep();
  });
}

}  // namespace remora::server
