#pragma once
// Reading the single YAML document of a config, with syntax errors turned
// into Diagnostics.
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "remora/config/diagnostic.h"

namespace remora::config::detail {

struct YamlDocument {
  YAML::Node root;                 // null for an empty file or on a syntax error
  std::vector<Diagnostic> errors;  // syntax errors, a second document
  bool syntax_ok = true;           // false: root is unusable
};

YamlDocument read_yaml_document(std::string_view text, const std::string& file);

}  // namespace remora::config::detail
