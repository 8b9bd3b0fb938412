#pragma once
// x-request-id values for requests that arrive without one.
#include <string_view>

#include "remora/proxy/worker_context.h"

namespace remora::proxy {

inline constexpr size_t kRequestIdSize = 36;

// A random UUID (version 4 layout, 8-4-4-4-12 hex) written into `out`, from
// the worker's generator: no lock, no allocation.
inline std::string_view make_request_id(WorkerContext& worker, char (&out)[kRequestIdSize]) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = worker.random(), b = worker.random();
  int pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) out[pos++] = '-';
    uint64_t& word = i < 16 ? a : b;
    out[pos++] = kHex[word & 0xf];
    word >>= 4;
  }
  out[14] = '4';
  return {out, kRequestIdSize};
}

}  // namespace remora::proxy
