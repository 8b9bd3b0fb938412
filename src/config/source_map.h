#pragma once
// Field paths ("route_tables[0].routes[1].retry") and where each one was
// written in the YAML file. The loader records a position for every node it
// visits, so that the semantic validator, which only sees the typed proto,
// can still point at the offending line.
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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
  void record(std::string_view path, Position position);

  // The position of `path`, or of its nearest recorded ancestor: a rule about
  // a field the user left out points at the block that lacks it.
  Position find(std::string_view path) const;

 private:
  // Every node of a file is recorded but only findings are looked up, so
  // records go to flat storage (no allocation per path) and the index is
  // built by the first lookup (so a SourceMap is not for sharing across
  // threads; each load has its own).
  struct Record {
    std::size_t offset;  // of the path in paths_
    std::size_t size;
    Position position;
  };
  std::string_view path_of(const Record& record) const;
  const Record* earliest(std::string_view path) const;  // of exactly `path`, or nullptr

  std::string paths_;  // the recorded paths, back to back
  std::vector<Record> records_;
  mutable std::unordered_multimap<std::size_t, std::size_t> index_;  // path hash → record
};

}  // namespace remora::config::detail
