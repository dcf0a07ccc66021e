// The dashboard's JSON (/status): one Snapshot rendered by hand, schema fixed (the dashboard and
// scripts rely on it; add keys, never rename or remove them):
//
//   {"version", "time" (unix seconds), "servers": [...], "bulkheads": [...], "pools": [...],
//    "clients": {"login","idle","waiting","active","accepted_total"}, "protocol_errors",
//    "detail": "full" | "redacted"}
//
// With `detail` Redacted (status_detail, the default) the document names nothing a client or
// the network chose: each server's "host" and "port" are null, and "pools" has one row per
// (database, server) whose "user" is null and whose numbers are summed over its (database, user)
// pools ("users" says how many; 1 in a full row). Database, server and bulkhead names come from
// the config. Client addresses are never in the document.
//
// Durations are milliseconds (keys end in _ms) as JSON numbers; a value not known yet is null.
// Strings are escaped (quote, backslash, control characters as \u00XX) and invalid UTF-8 bytes
// become U+FFFD, so the output is always valid JSON. Pure; any thread.
#pragma once

#include "config/config.hpp"
#include "src/snapshot.hpp"

#include <string>
#include <string_view>

namespace sluice::http {

std::string status_json(const Snapshot& snapshot, config::StatusDetail detail);

// `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);

// `value` as a JSON number, shortest form that reads back exactly; null when not finite.
std::string json_number(double value);

}  // namespace sluice::http
