#include "source_map.h"

#include "text.h"

namespace remora::config::detail {

std::string field_path(std::string_view parent, std::string_view field) {
  if (parent.empty()) return std::string(field);
  std::string out(parent);
  out += '.';
  out += field;
  return out;
}

std::string index_path(std::string_view parent, std::size_t index) {
  std::string out(parent);
  out += '[';
  out += std::to_string(index);
  out += ']';
  return out;
}

std::string key_path(std::string_view parent, std::string_view key) {
  std::string out(parent);
  out += '[';
  out += quoted(key);
  out += ']';
  return out;
}

std::string parent_path(std::string_view path) {
  if (path.empty()) return "";
  if (path.back() == ']') {
    // A quoted key escapes its own quotes, so the last `["` opens it.
    std::size_t open = path.ends_with("\"]") ? path.rfind("[\"") : path.rfind('[');
    if (open == std::string_view::npos) return "";
    return std::string(path.substr(0, open));
  }
  std::size_t end = path.size();
  while (end > 0 && path[end - 1] != '.' && path[end - 1] != ']') --end;
  if (end == 0) return "";
  // "a.b" → "a"; "a[0]b" does not occur.
  return std::string(path.substr(0, path[end - 1] == '.' ? end - 1 : end));
}

void SourceMap::record(const std::string& path, Position position) {
  if (position.line <= 0) return;
  positions_.emplace(path, position);
}

Position SourceMap::find(std::string_view path) const {
  std::string current(path);
  while (true) {
    if (auto it = positions_.find(current); it != positions_.end()) return it->second;
    if (current.empty()) return {};
    current = parent_path(current);
  }
}

}  // namespace remora::config::detail
