#pragma once
// Header fields a route adds to or removes from a message on its way through.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace remora::http {

struct HeaderMutation {
  std::vector<std::pair<std::string, std::string>> add;  // names in lower case
  std::vector<std::string> remove;                        // names in lower case
  bool removes(std::string_view name) const;
};

}  // namespace remora::http
