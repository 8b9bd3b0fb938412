#pragma once
// x-request-id values for requests that arrive without one.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "remora/proxy/worker_context.h"

namespace remora::proxy {

inline constexpr size_t kRequestIdSize = 36;

// Eight hex digits for the 32 bits of `bits`, in one word: each nibble
// spread to a byte, then '0' + n or 'a' + n - 10 for all eight at once.
// (Least significant nibble first: the digits of a random number.)
inline uint64_t hex_digits(uint32_t bits) {
  uint64_t v = bits;
  v = (v | (v << 16)) & 0x0000ffff0000ffffULL;
  v = (v | (v << 8)) & 0x00ff00ff00ff00ffULL;
  v = (v | (v << 4)) & 0x0f0f0f0f0f0f0f0fULL;
  const uint64_t letters = ((v + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;
  return v + 0x3030303030303030ULL + letters * ('a' - '0' - 10);
}

// A random UUID (version 4 layout, 8-4-4-4-12 hex) written into `out`, from
// the worker's generator: no lock, no allocation, no loop over digits
// (every request without an id makes one).
inline std::string_view make_request_id(WorkerContext& worker, char (&out)[kRequestIdSize]) {
  const uint64_t random[2] = {worker.random(), worker.random()};
  char digits[32];
  for (int i = 0; i < 4; ++i) {
    const uint64_t eight = hex_digits(static_cast<uint32_t>(random[i / 2] >> (i % 2 * 32)));
    std::memcpy(digits + 8 * i, &eight, 8);
  }
  std::memcpy(out, digits, 8);
  out[8] = '-';
  std::memcpy(out + 9, digits + 8, 4);
  out[13] = '-';
  std::memcpy(out + 14, digits + 12, 4);
  out[14] = '4';
  out[18] = '-';
  std::memcpy(out + 19, digits + 16, 4);
  out[23] = '-';
  std::memcpy(out + 24, digits + 20, 12);
  return {out, kRequestIdSize};
}

}  // namespace remora::proxy
