#pragma once
// Small text helpers shared by the loader and the validator, so that every
// message quotes values and suggests corrections the same way.
#include <string>
#include <string_view>
#include <vector>

namespace remora::config::detail {

// "value" with `"` and `\` escaped, so a value containing quotes stays readable.
std::string quoted(std::string_view text);

// "a, b, c"
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

// Shortest round-trippable-enough form for messages: 0.5, 100, 1e-05.
std::string format_number(double value);

// Levenshtein distance, ignoring case and treating '-' and '_' alike (both
// are common slips when typing YAML keys).
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate that `word` is most plausibly a typo of, or "" if none is
// close enough (distance at most half the word's length).
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// " (did you mean \"x\"?)" or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace remora::config::detail
