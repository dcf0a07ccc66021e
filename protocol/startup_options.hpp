// The "options" startup parameter: command-line style settings a client passes to the server,
// e.g. "-c search_path=app -c statement_timeout=5s" or "--geqo=off". Backslash escapes a space
// or a backslash, as PostgreSQL's pg_split_opts does. Pure; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol {

// Returns the (name, value) settings in order, or nullopt if an item is not a setting (Sluice
// does not pass other backend switches through a pool).
std::optional<std::vector<std::pair<std::string, std::string>>> parse_startup_options(
    std::string_view options);

}  // namespace sluice::protocol
