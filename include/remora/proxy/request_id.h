#pragma once
// x-request-id values for requests that arrive without one.
#include <cstdint>
#include <cstring>
#include <string_view>

#include "remora/proxy/worker_context.h"

namespace remora::proxy {

inline constexpr size_t kRequestIdSize = 36;

// A random UUID (version 4 layout, 8-4-4-4-12 hex) written into `out`, from
// the worker's generator: no lock, no allocation. A byte (two digits) per
// step, with a fixed count the compiler unrolls: every request makes one.
inline std::string_view make_request_id(WorkerContext& worker, char (&out)[kRequestIdSize]) {
  static constexpr char kHex[] = "0123456789abcdef";
  const uint64_t words[2] = {worker.random(), worker.random()};
  unsigned char bytes[16];
  std::memcpy(bytes, words, sizeof bytes);
  int pos = 0;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[pos++] = '-';
    out[pos++] = kHex[bytes[i] >> 4];
    out[pos++] = kHex[bytes[i] & 0xf];
  }
  out[14] = '4';
  return {out, kRequestIdSize};
}

}  // namespace remora::proxy
