// The key table: every configuration key declared once, with its section, type, default, unit,
// whether a reload may change it, a one-line description, and how to store it into the Config
// structs. The parser walks this table (a key not in it is an error), and SHOW CONFIG, the reload
// diff and the README's reference are generated from it. The table is immutable static data;
// every function here is pure and may be called from any thread.
#pragma once

#include "config/config.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sluice::config {

// Where a key lives: the top level of the file, a [servers.NAME] or a [databases.NAME] table, or
// a [[bulkheads]] entry. The keys of a bulkhead's `match` table are Section::Bulkhead keys named
// "match.application_name" etc.
enum class Section { Global, Server, Database, Bulkhead };

// Interval is a duration written as a string with a unit ("30s"); the enumerator is not called
// Duration because it would shadow the type alias (GCC -Wshadow).
enum class KeyType { String, Integer, Bool, Interval, StringList, Enum };

// A value after its TOML type was checked (Enum values are their string; Duration is already
// parsed), handed to KeyInfo::apply.
using KeyValue = std::variant<std::string, std::int64_t, bool, Duration, std::vector<std::string>>;

// The objects a key may be stored into: the Config, plus the section currently being read
// (server is set only for Section::Server keys, database only for Section::Database keys,
// bulkhead only for Section::Bulkhead keys).
struct KeyTarget {
  Config& config;
  Server* server = nullptr;
  Database* database = nullptr;
  Bulkhead* bulkhead = nullptr;
};
struct ConstKeyTarget {
  const Config& config;
  const Server* server = nullptr;
  const Database* database = nullptr;
  const Bulkhead* bulkhead = nullptr;
};

struct KeyInfo {
  Section section;
  std::string_view name;
  KeyType type;
  // The default as TOML text, exactly as show() renders it ("\"10s\"", "20", "[]"); empty when
  // there is no fixed default (the description says what happens when the key is absent).
  std::string_view default_text;
  std::string_view unit;  // "bytes", or "" (durations carry their unit in the value)
  bool reloadable;
  std::string_view description;
  std::span<const std::string_view> allowed{};  // KeyType::Enum: the accepted values
  // KeyType::Integer: inclusive range. KeyType::Interval: inclusive range in milliseconds.
  std::int64_t min = 0;
  std::int64_t max = 0;
  // Stores a type- and range-checked value; returns a reason if it is still invalid (e.g. a
  // malformed listen entry). Called at most once per key and section.
  std::optional<std::string> (*apply)(KeyTarget& target, const KeyValue& value) = nullptr;
  // The current value as TOML text, in the same form as default_text. Raw: what people see goes
  // through display_value(), which hides a secret key's value.
  std::string (*show)(const ConstKeyTarget& target) = nullptr;
  // The value is a password or other credential. Everything that renders a value for people
  // (SHOW CONFIG, the reload diff and its log lines, diagnostics) prints kRedacted instead of a
  // non-empty value; an empty one still shows as "" so that an operator can see it is unset.
  // A secret key's default must be empty (the README reference prints defaults).
  bool secret = false;
};

// What people see in place of a secret key's value. Not TOML, so it cannot be mistaken for (or
// pasted back as) a real value.
inline constexpr std::string_view kRedacted = "********";

// The current value of `key` as people may see it: key.show(target), or kRedacted when the key
// is secret and its value is not empty.
std::string display_value(const KeyInfo& key, const ConstKeyTarget& target);

// `text` with every occurrence of each non-empty string of `secrets` replaced by kRedacted
// (longest first, so that a secret containing another is hidden whole). For messages that may
// echo a secret key's value, e.g. a diagnostic built from it.
std::string redact(std::string text, std::span<const std::string> secrets);

// All keys, grouped by section in the order of the README reference.
std::span<const KeyInfo> key_table();

// The key named `name` in `section`, or nullptr.
const KeyInfo* find_key(Section section, std::string_view name);

// "listen", "servers.NAME.port", "databases.NAME.pool_size", "bulkheads.NAME.max",
// "bulkheads.NAME.match.user". For a bulkhead, `section_name` may also be an index in brackets
// ("[2]", for an entry without a valid name): "bulkheads[2].max". An empty key gives the
// section's own path ("servers.NAME", "bulkheads[2]").
std::string key_path(Section section, std::string_view section_name, std::string_view key);

// "string", "integer", "bool", "duration", "string list", "enum".
std::string_view type_name(KeyType type);

// One current setting, for SHOW CONFIG: key is the dotted path, value and default are TOML text
// (the value as display_value() renders it: kRedacted for a secret key that is set).
struct ConfigRow {
  std::string key;
  std::string value;
  std::string default_value;
  bool reloadable = false;
};
// Every key of every section of `config`: the global keys, then each server, then each database,
// then each bulkhead in file order. A bulkhead's rows are "bulkheads.NAME.KEY" when no other
// bulkhead (of any server) has that name, else "bulkheads.SERVER.NAME.KEY" (the same name may be
// used on two servers). Diagnostics of parse_config always say "bulkheads.NAME.KEY" (their line
// tells the entries apart), or "bulkheads[INDEX].KEY" while an entry has no valid name.
std::vector<ConfigRow> show_config(const Config& config);

// Why `name` cannot name a bulkhead, or nullopt if it can: it must be non-empty and consist of
// ASCII letters, digits, '_', '.' and '-' (it is a metrics label value and is shown in the admin
// console, so no blanks or quotes).
std::optional<std::string> bulkhead_name_error(std::string_view name);

// The label of `bulkhead` in SHOW CONFIG rows and the reload diff: "NAME", or "SERVER.NAME" when
// another bulkhead of `config` has the same name.
std::string bulkhead_label(const Config& config, const Bulkhead& bulkhead);

// One difference between two snapshots. A server or database that exists on only one side is one
// row with key "servers.NAME" / "databases.NAME", an empty old or new value, and reloadable set
// (adding or removing a section is a reload; whether a removed server is still in use is for the
// caller to decide). Bulkheads are matched by (server, name), whatever their order in the file; a
// bulkhead on one side only is one row "bulkheads.LABEL" whose value is
// `{name = "NAME", server = "SERVER"}`. Otherwise the row is a changed key and reloadable comes
// from the table. Values are compared raw but rendered by display_value(), so a changed secret
// key is a row whose old and new values are kRedacted (or "" where it is unset): the change is
// visible, the values are not.
struct ConfigChange {
  std::string key;
  std::string old_value;
  std::string new_value;
  bool reloadable = false;
};
std::vector<ConfigChange> diff_configs(const Config& before, const Config& after);

// The README's configuration reference (the text between its config-reference markers): one
// Markdown table per section with key | type | default | reloadable | description. Printed by
// `sluice --print-config-reference`; a unit test checks README.md against it.
std::string render_reference_markdown();

}  // namespace sluice::config
