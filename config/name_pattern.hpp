// Name patterns of bulkhead classification (`match.application_name`, `match.user`,
// `match.database`). Pure; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

// Why `pattern` is not a valid name pattern, or nullopt if it is. A pattern is a non-empty name
// matched exactly (case-sensitively), or a prefix followed by a single `*` at the end ("batch*";
// "*" alone matches every name). A `*` anywhere else is an error.
std::optional<std::string> name_pattern_error(std::string_view pattern);

// True if `name` matches the valid pattern `pattern`.
bool matches_name_pattern(std::string_view pattern, std::string_view name);

}  // namespace sluice::config
