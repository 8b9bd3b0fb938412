#include "remora/net/splice_pipe.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/error.hpp>

namespace remora::net {

namespace {
// One splice(2) that does not wait on the pipe: the bytes moved, or 0 and
// the error (would_block when a side is not ready).
size_t splice_some(int in, int out, size_t len, boost::system::error_code& ec) {
  ec = {};
  const ssize_t n = ::splice(in, nullptr, out, nullptr, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  if (n >= 0) return static_cast<size_t>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK)
    ec = boost::asio::error::would_block;
  else
    ec = {errno, boost::system::system_category()};
  return 0;
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
  const size_t n = splice_some(from, write_end_, max, ec);
  if (!ec && n == 0 && max != 0) ec = boost::asio::error::eof;
  held_ += n;
  return n;
}

size_t SplicePipe::drain(int to, boost::system::error_code& ec) {
  const size_t n = splice_some(read_end_, to, held_, ec);
  held_ -= n;
  return n;
}

}  // namespace remora::net
