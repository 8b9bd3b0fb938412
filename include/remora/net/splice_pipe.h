#pragma once
// A pipe for splice(2): bytes move from one socket into the pipe and from the
// pipe into another socket as page references, never copied through user
// space. For large bodies whose framing needs no parsing (a Content-Length
// body between two plain TCP sockets).
#include <cstddef>

#include <boost/system/error_code.hpp>

namespace remora::net {

class SplicePipe {
 public:
  // Opens the pipe (grown to kCapacity where the kernel allows); ok() says
  // whether it could.
  SplicePipe();
  ~SplicePipe();
  SplicePipe(const SplicePipe&) = delete;
  SplicePipe& operator=(const SplicePipe&) = delete;

  static constexpr size_t kCapacity = 256 * 1024;

  bool ok() const { return read_end_ >= 0; }
  // Bytes in the pipe, not yet passed on.
  size_t held() const { return held_; }
  size_t room() const { return capacity_ - held_; }

  // Takes up to `max` bytes the socket `from` has received into the pipe,
  // without waiting. 0 with `would_block` when none has arrived, 0 with
  // `eof` when the peer closed.
  size_t fill(int from, size_t max, boost::system::error_code& ec);
  // Passes what `to` takes now of the pipe's bytes on, without waiting; 0
  // with `would_block` when its send buffer is full.
  size_t drain(int to, boost::system::error_code& ec);

 private:
  int read_end_ = -1;
  int write_end_ = -1;
  size_t capacity_ = 0;
  size_t held_ = 0;
};

}  // namespace remora::net
