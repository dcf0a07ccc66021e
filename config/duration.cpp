// parse_duration / format_duration: the one place where "30s" becomes std::chrono.
#include "config/config.hpp"

#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

namespace sluice::config {
namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t ms;
};

// Longest suffix first so that "ms" is not read as "m" followed by junk.
constexpr Unit kUnits[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && is_digit(text[digits])) ++digits;
  if (digits == 0) return std::nullopt;  // empty, sign, decimal point first, or no number

  std::int64_t count = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + digits, count);
  if (ec != std::errc{} || end != text.data() + digits) return std::nullopt;  // overflow

  std::string_view rest = text.substr(digits);
  const std::size_t unit_start = rest.find_first_not_of(" \t");
  if (unit_start == std::string_view::npos) {
    // No unit: only zero is unambiguous. "0 " (trailing blank) is rejected like any junk.
    if (count == 0 && rest.empty()) return Duration{0};
    return std::nullopt;
  }
  rest = rest.substr(unit_start);
  for (const Unit& unit : kUnits) {
    if (rest != unit.suffix) continue;
    if (count > kMaxDuration.count() / unit.ms) return std::nullopt;
    return Duration{count * unit.ms};
  }
  return std::nullopt;
}

std::string format_duration(Duration d) {
  if (d.count() == 0) return "0";
  // The largest unit that represents the value exactly, so parse(format(d)) == d.
  for (auto it = std::rbegin(kUnits); it != std::rend(kUnits); ++it) {
    if (d.count() % it->ms == 0) {
      return std::to_string(d.count() / it->ms) + std::string(it->suffix);
    }
  }
  return std::to_string(d.count()) + "ms";  // unreachable: 1ms divides everything
}

}  // namespace sluice::config
