// Session settings under transaction pooling: what a client expects its session's parameters to
// be, and how a backend is brought in line with them.
//
// A client's expected settings are a list of (name, value) pairs: the server's reported
// parameters (ParameterStatus keeps them current) and every other parameter the client set for
// its session, with its startup packet, SET, RESET, set_config(…, false), RESET ALL or DISCARD
// ALL. Sluice does not parse values out of SQL: when a transaction may have changed an
// unreported setting (inspect_session_use().settings), it reads the backend's session-level
// settings back (read_settings_query()) at the end of that transaction, so a SET that failed, was
// rolled back, or ran inside a function is seen exactly as the server left it. The next backend
// the client uses gets those settings with set_config(), which parses a value as the server's own
// configuration does (lists such as search_path included), and RESET for what the previous client
// set and this one does not expect.
//
// Pure; any thread.
#pragma once

#include "protocol/builders.hpp"

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol {

using SettingList = std::vector<std::pair<std::string, std::string>>;

// The query that reads a backend's session settings back: (name, value) rows of every parameter
// set for the session (by SET, set_config(…, false), or Sluice's own sync) with its value as the
// server prints it, from pg_settings; and of each of `custom_names` that has a non-empty value.
// pg_settings does not list custom parameters no extension defines ("myapp.tenant"), so their
// names come from the client's SQL (collect_custom_names()) and its expected settings.
std::string read_settings_query(const std::vector<std::string>& custom_names);

// The most custom names collect_custom_names() gathers (from one transaction's SQL).
inline constexpr std::size_t kMaxCustomNames = 256;

// Appends to `names` the words of `sql` that may name a custom parameter: two identifiers joined
// by a dot ("myapp.tenant"), quoted or not, without duplicates, until `names` holds
// kMaxCustomNames. False alarms (a schema-qualified table) only cost a NULL in the read-back.
void collect_custom_names(std::string_view sql, std::vector<std::string>& names);

// True for a name of the form collect_custom_names() finds.
bool is_custom_name(std::string_view name);

// Reported parameters a client cannot change; never part of its expected settings' sync.
bool is_fixed_parameter(std::string_view name);

// The client's expected settings after a read-back: its reported parameters as they are in
// `expected`, then every row of the read-back (name, setting) that is not a reported parameter,
// in the server's order. The transaction-scoped transaction_* parameters are left out.
SettingList merge_session_settings(const SettingList& expected, const SettingList& session_rows);

// What brings a backend to `desired`: set_config() of each settable parameter whose value on
// the backend (`current`, nullopt if unknown) differs, client_encoding first; and a reset of each
// name in `applied` (the unreported parameters Sluice set on that backend) that `desired` lacks.
// Updates `applied` to what the backend holds once the sync succeeds.
struct SettingsSync {
  SettingList sets;
  std::vector<std::string> resets;
  bool empty() const { return sets.empty() && resets.empty(); }
};
SettingsSync plan_settings_sync(
    const SettingList& desired,
    const std::function<std::optional<std::string>(std::string_view)>& current,
    SettingList& applied);

// The messages that carry `sync` out: one unnamed statement, SELECT pg_catalog.set_config($1, $2,
// false), bound and executed once per setting (a reset binds a NULL value, which set_config()
// takes as RESET), then a Sync. Names and values travel as bound parameters, never as SQL text:
// nothing is quoted, and each value is read in the client_encoding set before it (the first
// setting, if it changes), not in whatever encoding the backend's previous client left.
void build_settings_sync(Buffer& out, const SettingsSync& sync);

}  // namespace sluice::protocol
