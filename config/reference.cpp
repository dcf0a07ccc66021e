// Everything generated from the key table: SHOW CONFIG rows, the reload diff, and the README's
// configuration reference. Values shown to people go through display_value(), so a secret key's
// value never leaves this file (the diff compares raw values, then renders them).
#include "config/keys.hpp"

#include <algorithm>
#include <map>
#include <string>
#include <utility>

namespace sluice::config {
namespace {

// One key of one section: its path, where its value lives, and the raw value (for the diff).
struct KeyValueRow {
  std::string path;
  const KeyInfo* key;
  ConstKeyTarget target;
  std::string raw;
};

// The keys of one section, whose objects `target` points at.
void append_rows(Section section, std::string_view section_name, const ConstKeyTarget& target,
                 std::vector<KeyValueRow>& rows) {
  for (const KeyInfo& key : key_table()) {
    if (key.section != section) continue;
    rows.push_back({key_path(section, section_name, key.name), &key, target, key.show(target)});
  }
}

ConfigRow config_row(const KeyValueRow& row) {
  return {row.path, display_value(*row.key, row.target), std::string(row.key->default_text),
          row.key->reloadable};
}

std::string escape_cell(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string type_cell(const KeyInfo& key) {
  std::string out(type_name(key.type));
  if (!key.unit.empty()) out += " (" + std::string(key.unit) + ")";
  if (key.type == KeyType::Integer) {
    out += ", " + std::to_string(key.min) + ".." + std::to_string(key.max);
  } else if (key.type == KeyType::Interval && key.min > 0) {
    out += ", at least " + format_duration(Duration{key.min});
  } else if (key.type == KeyType::Enum) {
    out += ":";
    for (std::size_t i = 0; i < key.allowed.size(); ++i) {
      out += (i == 0 ? " `" : ", `") + std::string(key.allowed[i]) + "`";
    }
  }
  return out;
}

void render_section(Section section, std::string_view heading, std::string& out,
                    std::string_view intro = {}) {
  out += "### " + std::string(heading) + "\n\n";
  if (!intro.empty()) out += std::string(intro) + "\n\n";
  out += "| key | type | default | reloadable | description |\n";
  out += "|---|---|---|---|---|\n";
  for (const KeyInfo& key : key_table()) {
    if (key.section != section) continue;
    const std::string default_cell =
        key.default_text.empty() ? "(none)" : "`" + std::string(key.default_text) + "`";
    std::string description(key.description);
    if (key.secret) {
      description += "; secret: SHOW CONFIG, the reload log and errors print `" +
                     std::string(kRedacted) + "` for it when set";
    }
    out += "| `" + std::string(key.name) + "` | " + escape_cell(type_cell(key)) + " | " +
           escape_cell(default_cell) + " | " + (key.reloadable ? "yes" : "no") + " | " +
           escape_cell(description) + " |\n";
  }
}

// The rows of every key except the bulkheads'.
std::vector<KeyValueRow> section_rows(const Config& config) {
  std::vector<KeyValueRow> rows;
  append_rows(Section::Global, "", ConstKeyTarget{config}, rows);
  for (const auto& [name, server] : config.servers) {
    append_rows(Section::Server, name, ConstKeyTarget{config, &server, nullptr}, rows);
  }
  for (const auto& [name, database] : config.databases) {
    append_rows(Section::Database, name, ConstKeyTarget{config, nullptr, &database}, rows);
  }
  return rows;
}

ConstKeyTarget bulkhead_target(const Config& config, const Bulkhead& bulkhead) {
  return ConstKeyTarget{config, nullptr, nullptr, &bulkhead};
}

// How a bulkhead on one side of a diff is shown: `{name = "NAME", server = "SERVER"}`.
std::string bulkhead_identity(const Config& config, const Bulkhead& bulkhead) {
  const ConstKeyTarget target = bulkhead_target(config, bulkhead);
  return "{name = " + find_key(Section::Bulkhead, "name")->show(target) +
         ", server = " + find_key(Section::Bulkhead, "server")->show(target) + "}";
}

}  // namespace

std::string bulkhead_label(const Config& config, const Bulkhead& bulkhead) {
  const auto same_name = std::count_if(config.bulkheads.begin(), config.bulkheads.end(),
                                       [&](const Bulkhead& b) { return b.name == bulkhead.name; });
  return same_name > 1 ? bulkhead.server + "." + bulkhead.name : bulkhead.name;
}

std::vector<ConfigRow> show_config(const Config& config) {
  std::vector<KeyValueRow> values = section_rows(config);
  for (const Bulkhead& bulkhead : config.bulkheads) {
    append_rows(Section::Bulkhead, bulkhead_label(config, bulkhead),
                bulkhead_target(config, bulkhead), values);
  }
  std::vector<ConfigRow> rows;
  rows.reserve(values.size());
  for (const KeyValueRow& value : values) rows.push_back(config_row(value));
  return rows;
}

std::vector<ConfigChange> diff_configs(const Config& before, const Config& after) {
  std::vector<ConfigChange> changes;
  // Sections on one side only: one row each.
  const auto one_sided = [&changes](const auto& old_map, const auto& new_map,
                                    std::string_view prefix) {
    for (const auto& [name, unused] : old_map) {
      if (!new_map.contains(name)) {
        changes.push_back({std::string(prefix) + "." + name,
                           "[" + std::string(prefix) + "." + name + "]", "", true});
      }
    }
    for (const auto& [name, unused] : new_map) {
      if (!old_map.contains(name)) {
        changes.push_back({std::string(prefix) + "." + name, "",
                           "[" + std::string(prefix) + "." + name + "]", true});
      }
    }
  };
  one_sided(before.servers, after.servers, "servers");
  one_sided(before.databases, after.databases, "databases");

  // Bulkheads are identified by (server, name); their labels may differ between the two sides.
  using Identity = std::pair<std::string, std::string>;
  std::map<Identity, const Bulkhead*> old_bulkheads;
  std::map<Identity, const Bulkhead*> new_bulkheads;
  for (const Bulkhead& b : before.bulkheads) old_bulkheads.emplace(Identity(b.server, b.name), &b);
  for (const Bulkhead& b : after.bulkheads) new_bulkheads.emplace(Identity(b.server, b.name), &b);
  for (const Bulkhead& b : before.bulkheads) {
    if (!new_bulkheads.contains(Identity(b.server, b.name))) {
      changes.push_back({key_path(Section::Bulkhead, bulkhead_label(before, b), ""),
                         bulkhead_identity(before, b), "", true});
    }
  }
  for (const Bulkhead& b : after.bulkheads) {
    if (!old_bulkheads.contains(Identity(b.server, b.name))) {
      changes.push_back({key_path(Section::Bulkhead, bulkhead_label(after, b), ""), "",
                         bulkhead_identity(after, b), true});
    }
  }

  // Keys of sections on both sides: compare values. A key path exists on both sides exactly when
  // its section does, so rows of one-sided sections are skipped here.
  std::map<std::string, const KeyValueRow*> old_rows;
  const std::vector<KeyValueRow> old_all = section_rows(before);
  const std::vector<KeyValueRow> new_all = section_rows(after);
  for (const KeyValueRow& row : old_all) old_rows.emplace(row.path, &row);
  for (const KeyValueRow& row : new_all) {
    const auto it = old_rows.find(row.path);
    if (it == old_rows.end() || it->second->raw == row.raw) continue;
    changes.push_back({row.path, display_value(*row.key, it->second->target),
                       display_value(*row.key, row.target), row.key->reloadable});
  }

  // Keys of bulkheads on both sides, in the new file's order, named as in the new SHOW CONFIG.
  for (const Bulkhead& b : after.bulkheads) {
    const auto old = old_bulkheads.find(Identity(b.server, b.name));
    if (old == old_bulkheads.end()) continue;
    const std::string label = bulkhead_label(after, b);
    for (const KeyInfo& key : key_table()) {
      if (key.section != Section::Bulkhead) continue;
      const ConstKeyTarget old_target = bulkhead_target(before, *old->second);
      const ConstKeyTarget new_target = bulkhead_target(after, b);
      if (key.show(old_target) == key.show(new_target)) continue;
      changes.push_back({key_path(Section::Bulkhead, label, key.name),
                         display_value(key, old_target), display_value(key, new_target),
                         key.reloadable});
    }
  }
  return changes;
}

std::string render_reference_markdown() {
  std::string out =
      "Durations are strings with a unit: `ms`, `s`, `m`, `h` or `d` (`\"250ms\"`, `\"30s\"`); "
      "`\"0\"` needs none. Unknown keys are errors.\n\n";
  render_section(Section::Global, "Top level", out);
  out += "\n";
  render_section(Section::Server, "`[servers.NAME]`: one PostgreSQL server", out);
  out += "\n";
  render_section(Section::Database, "`[databases.NAME]`: what clients put in `dbname`", out);
  out += "\n";
  render_section(
      Section::Bulkhead, "`[[bulkheads]]`: one priority class of work on one server", out,
      "Each `[[bulkheads]]` entry gives a class of clients guaranteed and borrowed shares of a "
      "server's `max_connections` (less `auth_query_pool_size` while `auth_user` is set), with "
      "a bounded, age-limited wait queue (docs/ADMISSION.md). "
      "The `match.*` keys are written as one table, `match = { application_name = "
      "[\"checkout*\"], client_cidr = [\"10.0.0.0/8\"] }`: a bulkhead matches a client when "
      "each of its non-empty lists has an entry that matches, and a client goes to the first "
      "bulkhead of its database's server, in file order, that matches it (a bulkhead without "
      "any `match` list receives no clients). Clients no bulkhead matches belong to the "
      "server's bulkhead named `default`, which exists even when not configured (`reserved = "
      "0`, `max` = the server's `max_connections`, `queue_depth` = `max_client_conn`, "
      "`max_wait` = `query_wait_timeout`, served last). A rate's `burst` "
      "of 0 means the rate itself. SHOW CONFIG names a key `bulkheads.NAME.KEY`, or "
      "`bulkheads.SERVER.NAME.KEY` when bulkheads of two servers share the NAME.");
  return out;
}

}  // namespace sluice::config
