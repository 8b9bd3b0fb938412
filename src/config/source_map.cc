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

void SourceMap::record(std::string_view path, Position position) {
  if (position.line <= 0) return;
  records_.push_back(Record{paths_.size(), path.size(), position});
  paths_ += path;
  if (!index_.empty()) index_.clear();  // rebuilt by the next find()
}

std::string_view SourceMap::path_of(const Record& record) const {
  return std::string_view(paths_).substr(record.offset, record.size);
}

const SourceMap::Record* SourceMap::earliest(std::string_view path) const {
  auto [begin, end] = index_.equal_range(std::hash<std::string_view>{}(path));
  const Record* first = nullptr;
  for (auto it = begin; it != end; ++it) {
    const Record& candidate = records_[it->second];
    if (path_of(candidate) == path && (first == nullptr || &candidate < first)) first = &candidate;
  }
  return first;
}

Position SourceMap::find(std::string_view path) const {
  if (index_.empty()) {
    for (std::size_t i = 0; i < records_.size(); ++i) {
      index_.emplace(std::hash<std::string_view>{}(path_of(records_[i])), i);
    }
  }
  std::string current(path);
  while (true) {
    if (const Record* found = earliest(current)) return found->position;
    if (current.empty()) return {};
    current = parent_path(current);
  }
}

}  // namespace remora::config::detail
