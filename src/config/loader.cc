// load_file / load_yaml: YAML syntax → typed proto (yaml_to_proto.cc) →
// semantic rules (validate*.cc), with every finding in one list.
#include "remora/config/loader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "checker.h"
#include "yaml_document.h"
#include "yaml_to_proto.h"

namespace remora::config {
namespace {

using detail::Position;

Diagnostic at(const std::string& file, Position position, std::string message) {
  return Diagnostic{file, position.line, position.column, "", std::move(message)};
}

bool is_under(const std::string& path, const std::string& root) {
  if (path == root) return true;
  if (path.size() <= root.size() || !path.starts_with(root)) return false;
  char next = path[root.size()];
  return next == '.' || next == '[';
}

// A semantic finding that restates a type error (a field left unset because
// its value was malformed then "missing") is noise: drop findings on the
// path of a type error or on the message holding it, and anything inside a
// list item that had the wrong shape.
std::vector<Diagnostic> without_echoes(std::vector<Diagnostic> semantic,
                                       const std::vector<Diagnostic>& type_errors,
                                       const detail::YamlToProtoResult& typed) {
  std::vector<std::string> echoes;
  for (const auto& error : type_errors) {
    echoes.push_back(error.path);
    echoes.push_back(detail::parent_path(error.path));
  }
  std::erase_if(semantic, [&](const Diagnostic& d) {
    if (std::find(echoes.begin(), echoes.end(), d.path) != echoes.end()) return true;
    return std::any_of(typed.placeholders.begin(), typed.placeholders.end(),
                       [&](const std::string& root) { return is_under(d.path, root); });
  });
  return semantic;
}

LoadedConfig load_document(std::string_view yaml, const std::string& file) {
  LoadedConfig result;
  detail::YamlDocument document = detail::read_yaml_document(yaml, file);
  if (!document.syntax_ok) {
    result.errors = std::move(document.errors);
    return result;
  }
  const detail::YamlNode* root = document.root;
  auto config = std::make_shared<v1::Config>();
  detail::YamlToProtoResult typed = detail::yaml_to_proto(root, *config, file);
  result.errors = std::move(typed.errors);
  result.errors.insert(result.errors.end(), document.errors.begin(), document.errors.end());

  // With no map at the top there is nothing the rules could say that is news.
  if (root == nullptr || root->is_null() || root->is_map()) {
    std::vector<Diagnostic> semantic = without_echoes(
        detail::validate_config(*config, &typed.positions, file), result.errors, typed);
    result.errors.insert(result.errors.end(), semantic.begin(), semantic.end());
    result.unsupported = detail::unsupported_features(*config, &typed.positions, file);
  }

  // File order; findings without a position (an empty file) go last.
  auto key = [](const Diagnostic& d) {
    return std::pair(d.line > 0 ? d.line : std::numeric_limits<int>::max(), d.column);
  };
  auto by_position = [&](const Diagnostic& a, const Diagnostic& b) { return key(a) < key(b); };
  std::stable_sort(result.errors.begin(), result.errors.end(), by_position);
  std::stable_sort(result.unsupported.begin(), result.unsupported.end(), by_position);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

}  // namespace

LoadedConfig load_yaml(std::string_view yaml, const std::string& file_name) {
  // The header promises values, never exceptions; yaml-cpp and the standard
  // library may still throw (allocation, a yaml-cpp bug).
  try {
    return load_document(yaml, file_name);
  } catch (const std::exception& e) {
    LoadedConfig result;
    result.errors.push_back(at(file_name, {}, std::string("cannot load: ") + e.what()));
    return result;
  }
}

LoadedConfig load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadedConfig result;
    result.errors.push_back(at(path, {}, std::string("cannot read file: ") + std::strerror(errno)));
    return result;
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  if (in.bad()) {
    LoadedConfig result;
    result.errors.push_back(at(path, {}, "cannot read file"));
    return result;
  }
  return load_yaml(contents.str(), path);
}

}  // namespace remora::config
