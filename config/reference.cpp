// Everything generated from the key table: SHOW CONFIG rows, the reload diff, and the README's
// configuration reference.
#include "config/keys.hpp"

#include <map>
#include <string>

namespace sluice::config {
namespace {

// Rows for the keys of one section, whose objects `target` points at.
void append_rows(Section section, std::string_view section_name, const ConstKeyTarget& target,
                 std::vector<ConfigRow>& rows) {
  for (const KeyInfo& key : key_table()) {
    if (key.section != section) continue;
    rows.push_back({key_path(section, section_name, key.name), key.show(target),
                    std::string(key.default_text), key.reloadable});
  }
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

void render_section(Section section, std::string_view heading, std::string& out) {
  out += "### " + std::string(heading) + "\n\n";
  out += "| key | type | default | reloadable | description |\n";
  out += "|---|---|---|---|---|\n";
  for (const KeyInfo& key : key_table()) {
    if (key.section != section) continue;
    const std::string default_cell =
        key.default_text.empty() ? "(none)" : "`" + std::string(key.default_text) + "`";
    out += "| `" + std::string(key.name) + "` | " + escape_cell(type_cell(key)) + " | " +
           escape_cell(default_cell) + " | " + (key.reloadable ? "yes" : "no") + " | " +
           escape_cell(key.description) + " |\n";
  }
}

}  // namespace

std::vector<ConfigRow> show_config(const Config& config) {
  std::vector<ConfigRow> rows;
  append_rows(Section::Global, "", ConstKeyTarget{config}, rows);
  for (const auto& [name, server] : config.servers) {
    append_rows(Section::Server, name, ConstKeyTarget{config, &server, nullptr}, rows);
  }
  for (const auto& [name, database] : config.databases) {
    append_rows(Section::Database, name, ConstKeyTarget{config, nullptr, &database}, rows);
  }
  return rows;
}

std::vector<ConfigChange> diff_configs(const Config& before, const Config& after) {
  std::vector<ConfigChange> changes;
  // Sections on one side only: one row each.
  const auto section_rows = [&changes](const auto& old_map, const auto& new_map,
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
  section_rows(before.servers, after.servers, "servers");
  section_rows(before.databases, after.databases, "databases");

  // Keys of sections on both sides: compare values. A key path exists on both sides exactly when
  // its section does, so rows of one-sided sections are skipped here.
  std::map<std::string, const ConfigRow*> old_rows;
  const std::vector<ConfigRow> old_all = show_config(before);
  const std::vector<ConfigRow> new_all = show_config(after);
  for (const ConfigRow& row : old_all) old_rows.emplace(row.key, &row);
  for (const ConfigRow& row : new_all) {
    const auto it = old_rows.find(row.key);
    if (it == old_rows.end() || it->second->value == row.value) continue;
    changes.push_back({row.key, it->second->value, row.value, row.reloadable});
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
  return out;
}

}  // namespace sluice::config
