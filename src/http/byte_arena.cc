#include "remora/http/byte_arena.h"

#include <algorithm>

namespace remora::http {

std::string_view ByteArena::keep_joined(std::string_view a, std::string_view separator,
                                        std::string_view b) {
  const size_t size = a.size() + separator.size() + b.size();
  char* at = take(size);
  char* to = at;
  for (auto piece : {a, separator, b}) to = std::copy(piece.begin(), piece.end(), to);
  return {at, size};
}

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
