#pragma once
// Durations as users write them in remora.yaml: "250ms", "2s", "1m", "1.5s",
// "100us", "1h30m". Shared by the YAML loader and anything that prints a
// duration back to a user (admin /config, error messages).
#include <string>
#include <string_view>

#include <google/protobuf/duration.pb.h>

namespace remora::config {

struct DurationResult {
  google::protobuf::Duration value;
  std::string error;  // empty on success
  bool ok() const { return error.empty(); }
};

// One or more <number><unit> parts; number is decimal with an optional
// fraction, unit is one of ns, us, ms, s, m, h. A bare number ("5", "0") is
// an error: the unit is never guessed. Negative durations are an error.
DurationResult parse_duration(std::string_view text);

// The inverse for display, using the largest unit that represents the value
// exactly: 2s, 250ms, 1m, 1500us, -3s.
std::string format_duration(const google::protobuf::Duration& duration);

}  // namespace remora::config
