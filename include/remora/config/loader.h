#pragma once
// YAML → remora.config.v1.Config, then semantic validation.
// Exceptions from yaml-cpp and protobuf stop here: callers get values.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "remora/config/diagnostic.h"
#include "remora/config/v1/config.pb.h"

namespace remora::config {

struct LoadedConfig {
  std::shared_ptr<const v1::Config> config;  // null when errors is not empty
  std::vector<Diagnostic> errors;            // every error found, in file order
  // Valid keys this release does not run yet (tls, retry ...): the proxy
  // refuses them rather than ignore them.
  std::vector<Diagnostic> unsupported;
  bool ok() const { return errors.empty(); }
};

// Reads and checks a YAML file: syntax, types, unknown keys (with "did you
// mean"), durations, then the semantic rules of validate().
LoadedConfig load_file(const std::string& path);
LoadedConfig load_yaml(std::string_view yaml, const std::string& file_name);

// Semantic rules on an already typed config (also used for control-plane
// pushes, where there is no file): references, duplicates, addresses,
// ranges, split weights.
std::vector<Diagnostic> validate(const v1::Config& config);

// The keys of `config` this release does not run yet (see LoadedConfig).
std::vector<Diagnostic> unsupported(const v1::Config& config);

}  // namespace remora::config
