#pragma once
// nghttp2's allocations for one session, recycled within the session.
//
// Each HTTP/2 stream costs nghttp2 a handful of small allocations, all freed
// when the stream ends: its stream state, the outbound frame items, the
// copied header list, a buffer per received header value (4 per request on
// an h2c GET, 11 per HTTP/1.1 -> h2c request, 28 per gRPC call on its two
// sessions). The session keeps what it freed on free lists by size class,
// up to kMaxCached bytes, and takes from them first: a few instructions
// instead of the allocator's ~70 per malloc/free pair. A session lives on
// one worker thread, so the lists take no lock. Larger blocks go straight
// to malloc.
#include <nghttp2/nghttp2.h>

#include <array>
#include <cstddef>

namespace remora::http {

class H2SessionMemory {
 public:
  H2SessionMemory();
  // Frees the cached blocks: after nghttp2_session_del.
  ~H2SessionMemory();
  H2SessionMemory(const H2SessionMemory&) = delete;
  H2SessionMemory& operator=(const H2SessionMemory&) = delete;

  // For nghttp2_session_{server,client}_new3.
  nghttp2_mem* mem() { return &mem_; }

  static constexpr size_t kMaxCached = 8 * 1024;

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  // 64, 128, ... 2048 bytes of payload.
  static constexpr size_t kClasses = 6;
  static constexpr size_t kSmallest = 64;

  void* allocate(size_t size);
  void release(void* payload);
  void* reallocate(void* payload, size_t size);

  nghttp2_mem mem_;
  std::array<FreeBlock*, kClasses> free_{};
  size_t cached_ = 0;  // bytes on the free lists
};

}  // namespace remora::http
