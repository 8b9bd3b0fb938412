#include "remora/http/byte_arena.h"

#include <algorithm>

namespace remora::http {

// The rest of the current block is left unused: blocks only ever grow the
// arena, which lives as long as one message head.
char* ByteArena::take_from_new_block(size_t n) {
  const size_t size = std::max(n, kBlockBytes);
  more_.push_back(std::make_unique_for_overwrite<char[]>(size));
  free_ = more_.back().get() + n;
  left_ = size - n;
  return more_.back().get();
}

}  // namespace remora::http
