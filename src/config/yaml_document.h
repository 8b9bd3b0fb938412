#pragma once
// Reading the single YAML document of a config into a small tree that keeps
// what the loader needs (shape, position, text, quoting), with syntax errors
// turned into Diagnostics.
//
// The tree is built from yaml-cpp's parse events in the same pass that
// counts documents: parsing is the bulk of a config load, so the text is
// parsed once. It mirrors what YAML::Load would give: repeated map keys are
// kept in file order, and an alias is the anchored node itself (it reports
// the anchor's position).
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <yaml-cpp/mark.h>

#include "remora/config/diagnostic.h"
#include "source_map.h"

namespace remora::config::detail {

struct YamlNode {
  enum class Kind { kNull, kScalar, kSequence, kMap };

  Kind kind = Kind::kNull;
  // Where the node starts. A null value has no text of its own: yaml-cpp
  // gives the position of the next token.
  Position position;
  std::string scalar;   // kScalar: the text, quotes removed
  bool quoted = false;  // kScalar: written in quotes, i.e. meant as text
  std::vector<const YamlNode*> items;                                // kSequence
  std::vector<std::pair<const YamlNode*, const YamlNode*>> entries;  // kMap: key, value

  bool is_null() const { return kind == Kind::kNull; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_sequence() const { return kind == Kind::kSequence; }
  bool is_map() const { return kind == Kind::kMap; }
};

struct YamlDocument {
  const YamlNode* root = nullptr;  // nullptr for an empty file or on a syntax error
  std::vector<Diagnostic> errors;  // syntax errors, a second document
  bool syntax_ok = true;           // false: root is unusable
  std::deque<YamlNode> nodes;      // owns root and everything under it (stable addresses)
};

YamlDocument read_yaml_document(std::string_view text, const std::string& file);

// yaml-cpp counts lines and columns from 0 and marks "no position" with -1.
Position position_of(const YAML::Mark& mark);

}  // namespace remora::config::detail
