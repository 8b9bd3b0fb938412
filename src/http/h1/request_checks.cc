#include "remora/http/h1/request_checks.h"

namespace remora::http::h1 {

bool raw_head_is_clean(std::string_view head) {
  bool line_start = true;
  bool first_line = true;
  bool in_value = false;
  for (size_t i = 0; i < head.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(head[i]);
    if (c == '\r') {
      if (i + 1 >= head.size() || head[i + 1] != '\n') return false;
      continue;
    }
    if (c == '\n') {
      if (i == 0 || head[i - 1] != '\r') return false;
      line_start = true;
      first_line = false;
      in_value = false;
      continue;
    }
    if (c == 0) return false;
    if (line_start) {
      line_start = false;
      if (!first_line && (c == ' ' || c == '\t')) return false;  // obs-fold
    }
    if (!first_line && !in_value && c == ':') {
      in_value = true;
      continue;
    }
    if (in_value && ((c < 0x20 && c != '\t') || c == 0x7f)) return false;
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
