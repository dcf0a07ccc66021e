#include "config/name_pattern.hpp"

namespace sluice::config {

std::optional<std::string> name_pattern_error(std::string_view pattern) {
  if (pattern.empty()) return "a pattern must not be empty";
  const std::size_t star = pattern.find('*');
  if (star != std::string_view::npos && star + 1 != pattern.size()) {
    return "invalid pattern \"" + std::string(pattern) +
           "\": a single '*' is allowed, and only at the end";
  }
  return std::nullopt;
}

bool matches_name_pattern(std::string_view pattern, std::string_view name) {
  if (pattern.ends_with('*')) return name.starts_with(pattern.substr(0, pattern.size() - 1));
  return name == pattern;
}

}  // namespace sluice::config
