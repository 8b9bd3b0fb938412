#include "remora/config/duration.h"

#include <cstdint>
#include <cstdlib>

#include "text.h"

namespace remora::config {
namespace {

// google.protobuf.Duration's documented range: ±10000 years.
constexpr std::int64_t kMaxSeconds = 315'576'000'000;
constexpr std::int64_t kNanosPerSecond = 1'000'000'000;
constexpr const char* kExample = "write e.g. 250ms, 2s, 1m or 1h";

struct Unit {
  std::string_view name;
  std::int64_t nanos;
};
// Longest names first so that "ms" is not read as "m" followed by "s".
constexpr Unit kUnits[] = {
    {"ns", 1},
    {"us", 1'000},
    {"\xC2\xB5s", 1'000},  // µs
    {"ms", 1'000'000},
    {"s", kNanosPerSecond},
    {"m", 60 * kNanosPerSecond},
    {"h", 3600 * kNanosPerSecond},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

DurationResult fail(std::string_view text, std::string why) {
  DurationResult r;
  r.error = "invalid duration " + detail::quoted(text) + ": " + std::move(why);
  return r;
}

}  // namespace

DurationResult parse_duration(std::string_view text) {
  if (text.empty()) return fail(text, std::string("empty; ") + kExample);
  if (text.front() == '-') return fail(text, "durations cannot be negative");

  // 128 bits hold 10000 years in nanoseconds with room to detect overflow.
  __int128 total = 0;
  std::size_t i = 0;
  bool numeric_only = true;
  while (i < text.size()) {
    std::size_t start = i;
    __int128 whole = 0;
    bool too_big = false;
    while (i < text.size() && is_digit(text[i])) {
      whole = whole * 10 + (text[i] - '0');
      if (whole > kMaxSeconds * 3'600) too_big = true;
      if (too_big) whole = kMaxSeconds * 3'600;
      ++i;
    }
    __int128 fraction = 0;
    __int128 scale = 1;
    bool has_fraction_digits = false;
    if (i < text.size() && text[i] == '.') {
      ++i;
      while (i < text.size() && is_digit(text[i])) {
        // Digits past nanosecond precision of the smallest unit cannot matter.
        if (scale < 1'000'000'000'000'000'000) {
          fraction = fraction * 10 + (text[i] - '0');
          scale *= 10;
        }
        has_fraction_digits = true;
        ++i;
      }
    }
    bool has_whole_digits = i > start && is_digit(text[start]);
    if (!has_whole_digits && !has_fraction_digits) {
      return fail(text, std::string("expected a number followed by a unit; ") + kExample);
    }
    std::size_t unit_start = i;
    while (i < text.size() && !is_digit(text[i]) && text[i] != '.') ++i;
    std::string_view unit_text = text.substr(unit_start, i - unit_start);
    if (unit_text.empty()) {
      if (numeric_only) {
        return fail(text, "missing unit (ns, us, ms, s, m, h); " + std::string(kExample));
      }
      return fail(text, "missing unit after " + std::string(text.substr(start)));
    }
    numeric_only = false;
    const Unit* unit = nullptr;
    for (const auto& u : kUnits) {
      if (u.name == unit_text) unit = &u;
    }
    if (unit == nullptr) {
      return fail(text,
                  "unknown unit " + detail::quoted(unit_text) + " (use ns, us, ms, s, m or h)");
    }
    total += whole * unit->nanos + fraction * unit->nanos / scale;
    if (too_big || total > static_cast<__int128>(kMaxSeconds) * kNanosPerSecond) {
      return fail(text, "too long (the maximum is 10000 years)");
    }
  }

  DurationResult r;
  r.value.set_seconds(static_cast<std::int64_t>(total / kNanosPerSecond));
  r.value.set_nanos(static_cast<std::int32_t>(total % kNanosPerSecond));
  return r;
}

std::string format_duration(const google::protobuf::Duration& duration) {
  __int128 nanos = static_cast<__int128>(duration.seconds()) * kNanosPerSecond + duration.nanos();
  std::string sign;
  if (nanos < 0) {
    sign = "-";
    nanos = -nanos;
  }
  if (nanos == 0) return "0s";
  // Largest unit that divides exactly, in the order people write them.
  static constexpr Unit kDisplay[] = {{"h", 3600 * kNanosPerSecond},
                                      {"m", 60 * kNanosPerSecond},
                                      {"s", kNanosPerSecond},
                                      {"ms", 1'000'000},
                                      {"us", 1'000},
                                      {"ns", 1}};
  for (const auto& unit : kDisplay) {
    if (nanos % unit.nanos == 0) {
      return sign + std::to_string(static_cast<std::int64_t>(nanos / unit.nanos)) +
             std::string(unit.name);
    }
  }
  return sign + std::to_string(static_cast<std::int64_t>(nanos)) + "ns";
}

}  // namespace remora::config
