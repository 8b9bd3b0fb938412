#pragma once
// A configuration error, pointing at the place in the user's file.
#include <string>

namespace remora::config {

struct Diagnostic {
  std::string file;   // file name as given by the user ("" for control-plane pushes)
  int line = 0;       // 1-based; 0 when unknown
  int column = 0;     // 1-based; 0 when unknown
  std::string path;   // field path, e.g. "route_tables[1].routes[0].retry"
  std::string message;

  // "remora.yaml:14:9: route_tables[0].routes[0]: unknown field \"retires\" (did you mean \"retry\"?)"
  std::string to_string() const;
};

}  // namespace remora::config
