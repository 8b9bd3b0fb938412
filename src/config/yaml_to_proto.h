#pragma once
// The generic YAML → protobuf walk: it knows nothing about remora's schema,
// only protobuf reflection, so a field added to config.proto is accepted in
// YAML without touching the loader.
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "remora/config/diagnostic.h"
#include "source_map.h"
#include "yaml_document.h"

namespace remora::config::detail {

struct YamlToProtoResult {
  std::vector<Diagnostic> errors;  // in document order
  SourceMap positions;             // every visited node, by field path
  // List items of the wrong shape, kept as empty messages so that later
  // indices still match the file; the validator's findings about them are noise.
  std::vector<std::string> placeholders;
};

// Fills `message` from `node`, which must be a YAML map (or null / nullptr).
// Never throws for bad input: every problem becomes a Diagnostic.
YamlToProtoResult yaml_to_proto(const YamlNode* node, google::protobuf::Message& message,
                                const std::string& file);

}  // namespace remora::config::detail
