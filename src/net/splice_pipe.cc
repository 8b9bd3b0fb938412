#include "remora/net/splice_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/error.hpp>

namespace remora::net {

namespace {
boost::system::error_code from_errno(int e) {
  if (e == EAGAIN || e == EWOULDBLOCK) return boost::asio::error::would_block;
  return {e, boost::system::system_category()};
}
}  // namespace

SplicePipe::SplicePipe() {
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return;
  read_end_ = fds[0];
  write_end_ = fds[1];
  // A bigger pipe moves a large body in fewer calls; the default (64 KiB)
  // when the kernel's pipe-max-size refuses.
  int size = fcntl(write_end_, F_SETPIPE_SZ, static_cast<int>(kCapacity));
  if (size < 0) size = fcntl(write_end_, F_GETPIPE_SZ);
  capacity_ = size > 0 ? static_cast<size_t>(size) : 64 * 1024;
}

SplicePipe::~SplicePipe() {
  if (read_end_ >= 0) ::close(read_end_);
  if (write_end_ >= 0) ::close(write_end_);
}

size_t SplicePipe::fill(int from, size_t max, boost::system::error_code& ec) {
  ec = {};
  const ssize_t n = ::splice(from, nullptr, write_end_, nullptr, max,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0) {
    ec = from_errno(errno);
    return 0;
  }
  if (n == 0 && max != 0) ec = boost::asio::error::eof;
  held_ += static_cast<size_t>(n);
  return static_cast<size_t>(n);
}

size_t SplicePipe::drain(int to, boost::system::error_code& ec) {
  ec = {};
  const ssize_t n = ::splice(read_end_, nullptr, to, nullptr, held_,
                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n < 0) {
    ec = from_errno(errno);
    return 0;
  }
  held_ -= static_cast<size_t>(n);
  return static_cast<size_t>(n);
}

}  // namespace remora::net
