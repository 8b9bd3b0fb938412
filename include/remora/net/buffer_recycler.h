#pragma once
// An allocator for connection read buffers that keeps freed blocks of the
// usual size on a per-thread free list. Connections give their block back
// while they wait idle (keeping only a 2 KiB buffer for the next head, so
// 10 000 idle keep-alive connections hold ~20 MiB, not 160) and take one
// again when a message needs it, without a trip to malloc.
#include <cstddef>
#include <new>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>

namespace remora::net {

inline constexpr std::size_t kRecycledBlock = 16 * 1024;

class BlockCache {
 public:
  static BlockCache& local() {
    thread_local BlockCache cache;
    return cache;
  }
  void* take() {
    if (free_.empty()) return ::operator new(kRecycledBlock);
    void* p = free_.back();
    free_.pop_back();
    return p;
  }
  void give(void* p) {
    if (free_.size() < kMaxKept) free_.push_back(p);
    else ::operator delete(p);
  }
  ~BlockCache() {
    for (void* p : free_) ::operator delete(p);
  }

 private:
  static constexpr std::size_t kMaxKept = 256;  // 4 MiB per thread at most
  std::vector<void*> free_;
};

template <class T>
struct BufferRecycler {
  using value_type = T;
  BufferRecycler() = default;
  template <class U>
  BufferRecycler(const BufferRecycler<U>&) {}

  T* allocate(std::size_t n) {
    if (n * sizeof(T) == kRecycledBlock) return static_cast<T*>(BlockCache::local().take());
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) {
    if (n * sizeof(T) == kRecycledBlock) BlockCache::local().give(p);
    else ::operator delete(p);
  }
  template <class U>
  bool operator==(const BufferRecycler<U>&) const { return true; }
};

// The read buffer of every connection, downstream and upstream.
using ReadBuffer = boost::beast::basic_flat_buffer<BufferRecycler<char>>;

}  // namespace remora::net
