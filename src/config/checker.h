#pragma once
// Shared plumbing of the semantic rules (validate*.cc): collects findings,
// attaching the YAML position of the offending field when the config came
// from a file.
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "remora/config/diagnostic.h"
#include "remora/config/v1/config.pb.h"
#include "source_map.h"
#include "text.h"

namespace remora::config::detail {

class Checker {
 public:
  // `positions` may be null (control-plane pushes): findings then carry no position.
  Checker(const SourceMap* positions, std::string file)
      : positions_(positions), file_(std::move(file)) {}

  void error(const std::string& path, std::string message);

  std::vector<Diagnostic> take() { return std::move(found_); }

 private:
  const SourceMap* positions_;
  std::string file_;
  std::vector<Diagnostic> found_;
};

// validate() with positions: what load_yaml runs after the YAML walk.
std::vector<Diagnostic> validate_config(const v1::Config& config, const SourceMap* positions,
                                        const std::string& file);

// The rule groups, one file each.
void check_route_tables(const v1::Config& config, Checker& check);  // validate_routes.cc
void check_clusters(const v1::Config& config, Checker& check);      // validate_clusters.cc
void check_unsupported(const v1::Config& config, Checker& check);   // validate_unsupported.cc
std::vector<Diagnostic> unsupported_features(const v1::Config& config, const SourceMap* positions,
                                             const std::string& file);

// Helpers shared by the rule files (validate.cc).
bool is_header_name(std::string_view name);
bool is_header_value(std::string_view value);
// "must be between 0 and 100, got 150" or "" when `value` is in range (NaN is not).
std::string out_of_range(double value, double min, double max);

// Names must be non-empty and unique within `items` ("listener", "cluster" ...).
template <class T>
void check_unique_names(const google::protobuf::RepeatedPtrField<T>& items,
                        const std::string& list_path, const std::string& what, Checker& check) {
  std::unordered_map<std::string, int> first;
  for (int i = 0; i < items.size(); ++i) {
    std::string path = field_path(index_path(list_path, static_cast<std::size_t>(i)), "name");
    const std::string& name = items[i].name();
    if (name.empty()) {
      check.error(path, "a " + what + " needs a name");
    } else if (auto [it, inserted] = first.emplace(name, i); !inserted) {
      check.error(path, "duplicate " + what + " name " + quoted(name) + " (also " +
                            index_path(list_path, static_cast<std::size_t>(it->second)) + ")");
    }
  }
}

}  // namespace remora::config::detail
