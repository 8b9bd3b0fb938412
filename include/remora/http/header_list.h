#pragma once
// Protocol-neutral header fields of one message, as views into the buffer the
// codec parsed them from. Lives as long as that buffer; reused per message so
// that parsing a request allocates nothing once warm.
#include <string_view>
#include <vector>

namespace remora::http {

struct HeaderField {
  std::string_view name;   // as received; compare with iequals()
  std::string_view value;  // optional whitespace trimmed
};

bool iequals(std::string_view a, std::string_view b);

class HeaderList {
 public:
  void clear() { fields_.clear(); }
  void add(std::string_view name, std::string_view value) { fields_.push_back({name, value}); }
  void reserve(size_t n) { fields_.reserve(n); }
  size_t size() const { return fields_.size(); }
  auto begin() const { return fields_.begin(); }
  auto end() const { return fields_.end(); }

  // First value of `name` (case-insensitive), or nullptr-like empty + false.
  const HeaderField* find(std::string_view name) const;
  size_t count(std::string_view name) const;

 private:
  std::vector<HeaderField> fields_;
};

// Does the comma-separated list `list` contain `token` (case-insensitive)?
bool list_contains(std::string_view list, std::string_view token);

}  // namespace remora::http
