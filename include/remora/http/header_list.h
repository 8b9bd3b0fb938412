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

// ASCII case-insensitive equality, for field names and tokens. Inline: most
// calls compare against a literal of another length and end at the size.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const unsigned char x = a[i], y = b[i];
    if (x == y) continue;
    if ((x | 0x20) != (y | 0x20) || (x | 0x20) < 'a' || (x | 0x20) > 'z') return false;
  }
  return true;
}

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
