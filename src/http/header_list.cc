#include "remora/http/header_list.h"
#include "remora/http/header_mutation.h"

namespace remora::http {

const HeaderField* HeaderList::find(std::string_view name) const {
  for (const auto& field : fields_)
    if (iequals(field.name, name)) return &field;
  return nullptr;
}

size_t HeaderList::count(std::string_view name) const {
  size_t n = 0;
  for (const auto& field : fields_) n += iequals(field.name, name);
  return n;
}

bool list_contains(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    auto comma = list.find(',');
    auto item = list.substr(0, comma);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

bool HeaderMutation::removes(std::string_view name) const {
  for (const auto& r : remove)
    if (iequals(r, name)) return true;
  return false;
}

}  // namespace remora::http
