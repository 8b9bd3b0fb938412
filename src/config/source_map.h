#pragma once
// Field paths ("route_tables[0].routes[1].retry") and where each one was
// written in the YAML file. The loader records a position for every node it
// visits, so that the semantic validator, which only sees the typed proto,
// can still point at the offending line.
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

namespace remora::config::detail {

struct Position {
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based; 0 = unknown
};

// Path building. Map keys are quoted ("headers[\"api-version\"]") because
// header names may contain dots.
std::string field_path(std::string_view parent, std::string_view field);
std::string index_path(std::string_view parent, std::size_t index);
std::string key_path(std::string_view parent, std::string_view key);

// The path one level up ("a.b[2]" → "a.b", "a.b" → "a", "a" → "").
std::string parent_path(std::string_view path);

class SourceMap {
 public:
  // The first record of a path wins (a duplicate key is reported, not used).
  void record(const std::string& path, Position position);

  // The position of `path`, or of its nearest recorded ancestor: a rule about
  // a field the user left out points at the block that lacks it.
  Position find(std::string_view path) const;

 private:
  std::unordered_map<std::string, Position> positions_;
};

}  // namespace remora::config::detail
