#include "remora/config/diagnostic.h"

namespace remora::config {

std::string Diagnostic::to_string() const {
  // file:line:col: path: message — each part left out when unknown, the
  // way compilers print it, so editors can jump to the location.
  std::string out = file;
  if (line > 0) {
    if (!out.empty()) out += ':';
    out += std::to_string(line);
    if (column > 0) out += ':' + std::to_string(column);
  }
  if (!out.empty()) out += ": ";
  if (!path.empty()) out += path + ": ";
  out += message;
  return out;
}

}  // namespace remora::config
