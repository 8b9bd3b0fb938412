#pragma once
// One line per request, JSON or text, through spdlog's async logger so the
// worker never waits on the disk.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace remora::observe {

struct AccessRecord {
  std::string_view listener;
  std::string_view route;
  std::string_view method;
  std::string_view authority;
  std::string_view path;
  std::string_view request_id;
  std::string_view upstream;
  std::string_view reason;  // x-remora-reason of a local reply, else empty
  unsigned status = 0;
  double duration_ms = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
};

class AccessLog {
 public:
  // path: "stdout", "stderr" or a file. Throws on a file that cannot be opened.
  AccessLog(const std::string& path, bool json);
  ~AccessLog();
  void write(const AccessRecord& record);
  const std::string& path() const { return path_; }
  bool json() const { return json_; }

 private:
  std::string path_;
  bool json_;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace remora::observe
