#pragma once
// The process: the main thread owns the config, the admin listener, signals
// and DNS refresh; workers own the traffic.
#include <memory>
#include <string>

namespace remora::server {

class Server {
 public:
  explicit Server(std::string config_path);
  ~Server();
  // Runs until drained after SIGTERM/SIGINT; the process exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace remora::server
