#pragma once
// Bytes kept so that views into them stay valid: copied into blocks that
// never move. The first block is part of the arena, so a request head of
// typical size costs no allocation of its own; a bigger one takes more
// blocks from the heap. For header fields that arrive one at a time in
// buffers that die with the callback (nghttp2's on_header).
#include <array>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace remora::http {

class ByteArena {
 public:
  static constexpr size_t kInlineBytes = 512;
  static constexpr size_t kBlockBytes = 4096;

  ByteArena() = default;
  ByteArena(const ByteArena&) = delete;  // views point into it: it stays put
  ByteArena& operator=(const ByteArena&) = delete;

  // A copy of `bytes` that lives as long as the arena.
  std::string_view keep(std::string_view bytes) {
    char* at = take(bytes.size());
    if (!bytes.empty()) std::memcpy(at, bytes.data(), bytes.size());
    return {at, bytes.size()};
  }

 private:
  char* take(size_t n) {
    if (n > left_) return take_from_new_block(n);
    char* at = free_;
    free_ += n;
    left_ -= n;
    return at;
  }
  char* take_from_new_block(size_t n);

  std::array<char, kInlineBytes> first_;
  std::vector<std::unique_ptr<char[]>> more_;
  char* free_ = first_.data();
  size_t left_ = kInlineBytes;
};

}  // namespace remora::http
