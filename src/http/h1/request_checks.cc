#include "remora/http/h1/request_checks.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace remora::http::h1 {

namespace {

constexpr uint64_t kOnes = 0x0101010101010101ULL;
constexpr uint64_t kHighBits = 0x8080808080808080ULL;

// Whether one of the 8 bytes in `word` is below 0x20 or is DEL (0x7f): the
// only bytes the check below must look at one by one. Exact for "any", as
// in the classic has-zero-byte test; bytes >= 0x80 never match.
bool needs_a_look(uint64_t word) {
  const uint64_t below_space = (word - kOnes * 0x20) & ~word & kHighBits;
  const uint64_t del = word ^ (kOnes * 0x7f);
  return (below_space | ((del - kOnes) & ~del & kHighBits)) != 0;
}

}  // namespace

// Every head byte is looked at, 8 at a time while none is a control
// character: each line ends in CRLF, holds no control character but HTAB
// (none in the request line or a field name either; Beast refuses them
// there anyway), and no field line starts with whitespace.
bool raw_head_is_clean(std::string_view head) {
  const auto* p = reinterpret_cast<const unsigned char*>(head.data());
  const size_t n = head.size();
  size_t i = 0;
  while (i < n) {
    for (uint64_t word; i + 8 <= n; i += 8) {
      std::memcpy(&word, p + i, 8);
      if (needs_a_look(word)) break;
    }
    for (const size_t stop = std::min(i + 8, n); i < stop; ++i) {
      const unsigned char c = p[i];
      if ((c >= 0x20 && c != 0x7f) || c == '\t') continue;
      if (c != '\r' || i + 1 == n || p[i + 1] != '\n') return false;  // NUL, bare CR or LF, ...
      ++i;  // the LF; the next line must not start with whitespace (obs-fold)
      if (i + 1 < n && (p[i + 1] == ' ' || p[i + 1] == '\t')) return false;
    }
  }
  return true;
}

bool framing_is_unambiguous(const HeaderList& headers, int version) {
  const HeaderField* content_length = nullptr;
  size_t transfer_encodings = 0;
  const HeaderField* transfer_encoding = nullptr;
  size_t hosts = 0;
  for (const auto& field : headers) {
    if (iequals(field.name, "content-length")) {
      if (content_length && content_length->value != field.value) return false;
      content_length = &field;
    } else if (iequals(field.name, "transfer-encoding")) {
      ++transfer_encodings;
      transfer_encoding = &field;
    } else if (iequals(field.name, "host")) {
      ++hosts;
    }
  }
  if (transfer_encodings > 1) return false;
  if (transfer_encoding) {
    if (content_length) return false;
    if (!iequals(transfer_encoding->value, "chunked")) return false;
  }
  if (hosts > 1 || (version >= 11 && hosts == 0)) return false;
  return true;
}

}  // namespace remora::http::h1
