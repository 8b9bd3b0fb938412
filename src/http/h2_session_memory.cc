#include "remora/http/h2_session_memory.h"

#include <cstdlib>
#include <cstring>

namespace remora::http {
namespace {

// Every block starts with a header naming its size class (kLarge: straight
// from malloc), padded so that the payload keeps malloc's alignment.
struct alignas(std::max_align_t) Header {
  size_t size_class;
};
constexpr size_t kLarge = ~size_t{0};

Header* header_of(void* payload) { return static_cast<Header*>(payload) - 1; }

}  // namespace

H2SessionMemory::H2SessionMemory() {
  mem_.mem_user_data = this;
  mem_.malloc = [](size_t size, void* self) {
    return static_cast<H2SessionMemory*>(self)->allocate(size);
  };
  mem_.free = [](void* payload, void* self) {
    static_cast<H2SessionMemory*>(self)->release(payload);
  };
  mem_.calloc = [](size_t count, size_t size, void* self) {
    void* payload = static_cast<H2SessionMemory*>(self)->allocate(count * size);
    if (payload) std::memset(payload, 0, count * size);
    return payload;
  };
  mem_.realloc = [](void* payload, size_t size, void* self) {
    return static_cast<H2SessionMemory*>(self)->reallocate(payload, size);
  };
}

H2SessionMemory::~H2SessionMemory() {
  for (FreeBlock* list : free_)
    while (list) {
      FreeBlock* next = list->next;
      std::free(header_of(list));
      list = next;
    }
}

void* H2SessionMemory::allocate(size_t size) {
  size_t size_class = 0;
  while (size_class < kClasses && size > kSmallest << size_class) ++size_class;
  if (size_class == kClasses) {
    auto* header = static_cast<Header*>(std::malloc(sizeof(Header) + size));
    if (!header) return nullptr;
    header->size_class = kLarge;
    return header + 1;
  }
  if (FreeBlock* block = free_[size_class]) {
    free_[size_class] = block->next;
    cached_ -= kSmallest << size_class;
    return block;
  }
  auto* header = static_cast<Header*>(std::malloc(sizeof(Header) + (kSmallest << size_class)));
  if (!header) return nullptr;
  header->size_class = size_class;
  return header + 1;
}

void H2SessionMemory::release(void* payload) {
  if (!payload) return;
  Header* header = header_of(payload);
  const size_t size_class = header->size_class;
  if (size_class == kLarge || cached_ + (kSmallest << size_class) > kMaxCached) {
    std::free(header);
    return;
  }
  auto* block = static_cast<FreeBlock*>(payload);
  block->next = free_[size_class];
  free_[size_class] = block;
  cached_ += kSmallest << size_class;
}

void* H2SessionMemory::reallocate(void* payload, size_t size) {
  if (!payload) return allocate(size);
  const size_t size_class = header_of(payload)->size_class;
  if (size_class != kLarge && size <= kSmallest << size_class) return payload;
  if (size_class == kLarge) {
    auto* header = static_cast<Header*>(std::realloc(header_of(payload), sizeof(Header) + size));
    return header ? header + 1 : nullptr;
  }
  void* moved = allocate(size);
  if (!moved) return nullptr;
  std::memcpy(moved, payload, kSmallest << size_class);
  release(payload);
  return moved;
}

}  // namespace remora::http
