// parse_config: TOML text -> checked Config, walking the key table. toml11 is used only here.
#include "config/config.hpp"

#include "config/keys.hpp"

#include <toml.hpp>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <system_error>

namespace sluice::config {
namespace {

// std::map keeps section order deterministic; diagnostics are sorted by line at the end anyway.
using TomlValue = toml::basic_value<toml::discard_comments, std::map, std::vector>;

constexpr std::string_view kReservedDatabase = "sluice";  // the admin console
constexpr std::string_view kSyntaxKey = "(syntax)";

std::string toml_type_name(const TomlValue& v) {
  switch (v.type()) {
    case toml::value_t::empty:
      return "nothing";
    case toml::value_t::boolean:
      return "bool";
    case toml::value_t::integer:
      return "integer";
    case toml::value_t::floating:
      return "float";
    case toml::value_t::string:
      return "string";
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
      return "datetime";
    case toml::value_t::local_date:
      return "date";
    case toml::value_t::local_time:
      return "time";
    case toml::value_t::array:
      return "array";
    case toml::value_t::table:
      return "table";
  }
  return "unknown";
}

int line_of(const TomlValue& v) { return static_cast<int>(v.location().line()); }

std::string wrong_type(std::string_view expected, const TomlValue& v) {
  return "expected " + std::string(expected) + ", got " + toml_type_name(v);
}

// toml11's message is several lines: "[error] toml::parse_x: what", "--> file", the source line,
// and a caret line with a short comment. Keep "what (comment)".
std::string condense_syntax_error(const std::string& message) {
  std::istringstream lines(message);
  std::string first;
  std::getline(lines, first);
  if (first.starts_with("[error] ")) first.erase(0, 8);
  if (first.starts_with("toml::")) {
    const std::size_t colon = first.find(": ");
    if (colon != std::string::npos) first.erase(0, colon + 2);
  }
  std::string comment;
  for (std::string line; std::getline(lines, line);) {
    const std::size_t bar = line.find('|');
    if (bar == std::string::npos) continue;
    const std::size_t mark = line.find_first_not_of(' ', bar + 1);
    if (mark == std::string::npos || (line[mark] != '^' && line[mark] != '~')) continue;
    const std::size_t text = line.find_first_not_of("^~- ", mark);
    if (text != std::string::npos) comment = line.substr(text);
  }
  if (!comment.empty() && comment != first) first += " (" + comment + ")";
  return first;
}

class Parser {
 public:
  explicit Parser(const std::string& source) : file_(source.empty() ? "<string>" : source) {
    config_.source = source;
  }

  Result<Config, Diagnostics> run(const std::string& text);

 private:
  void error(int line, std::string key, std::string reason) {
    diagnostics_.push_back({file_, line, std::move(key), std::move(reason)});
  }
  void read_root(const TomlValue& root);
  template <typename Item>
  void read_sections(Section section, const std::string& prefix, const TomlValue& value,
                     std::map<std::string, Item>& items);
  void read_keys(Section section, const std::string& name, const TomlValue& table,
                 KeyTarget target);
  std::optional<KeyValue> convert(const KeyInfo& key, const std::string& path, const TomlValue& v);
  std::optional<KeyValue> convert_integer(const KeyInfo& key, const std::string& path,
                                          const TomlValue& v);
  std::optional<KeyValue> convert_duration(const KeyInfo& key, const std::string& path,
                                           const TomlValue& v);
  void validate();
  void validate_database(Database& database);
  bool has_error(std::string_view path) const {
    return std::any_of(diagnostics_.begin(), diagnostics_.end(),
                       [path](const Diagnostic& d) { return d.key == path; });
  }
  int line_of_key(const std::string& path) const {
    const auto it = lines_.find(path);
    return it == lines_.end() ? 0 : it->second;
  }

  std::string file_;
  Config config_;
  Diagnostics diagnostics_;
  std::map<std::string, int> lines_;  // dotted path of every key and section read -> its line
};

Result<Config, Diagnostics> Parser::run(const std::string& text) {
  TomlValue root;
  try {
    std::istringstream stream(text);
    root = toml::parse<toml::discard_comments, std::map, std::vector>(stream, file_);
  } catch (const toml::exception& e) {
    error(static_cast<int>(e.location().line()), std::string(kSyntaxKey),
          condense_syntax_error(e.what()));
    return unexpected(std::move(diagnostics_));
  } catch (const std::exception& e) {  // toml11 may also throw std::runtime_error on bad input
    error(0, std::string(kSyntaxKey), condense_syntax_error(e.what()));
    return unexpected(std::move(diagnostics_));
  }
  read_root(root);
  validate();
  if (!diagnostics_.empty()) {
    // Line order reads like the file; diagnostics without a line (missing sections) go last.
    std::stable_sort(diagnostics_.begin(), diagnostics_.end(), [](const auto& a, const auto& b) {
      const auto rank = [](int line) { return line > 0 ? line : std::numeric_limits<int>::max(); };
      return rank(a.line) < rank(b.line);
    });
    return unexpected(std::move(diagnostics_));
  }
  return std::move(config_);
}

void Parser::read_root(const TomlValue& root) {
  for (const auto& [name, value] : root.as_table()) {
    if (name == "servers") {
      read_sections(Section::Server, name, value, config_.servers);
    } else if (name == "databases") {
      read_sections(Section::Database, name, value, config_.databases);
    }
  }
  read_keys(Section::Global, "", root, KeyTarget{config_});
}

template <typename Item>
void Parser::read_sections(Section section, const std::string& prefix, const TomlValue& value,
                           std::map<std::string, Item>& items) {
  if (!value.is_table()) return error(line_of(value), prefix, wrong_type("table", value));
  for (const auto& [name, table] : value.as_table()) {
    const std::string path = key_path(section, name, "");
    lines_[path] = line_of(table);
    if (!table.is_table()) {
      error(line_of(table), path, wrong_type("table", table));
      continue;
    }
    if (name.empty()) {
      error(line_of(table), path, "the name must not be empty");
      continue;
    }
    if (section == Section::Database && name == kReservedDatabase) {
      error(line_of(table), path, "the name \"sluice\" is reserved for the admin console");
      continue;
    }
    Item& item = items[name];
    item.name = name;
    KeyTarget target{config_};
    if constexpr (std::is_same_v<Item, Server>) target.server = &item;
    if constexpr (std::is_same_v<Item, Database>) target.database = &item;
    read_keys(section, name, table, target);
  }
}

// Reads the keys of one table. At the top level, the "servers" and "databases" tables were read
// by read_sections already.
void Parser::read_keys(Section section, const std::string& name, const TomlValue& table,
                       KeyTarget target) {
  for (const auto& [key_name, value] : table.as_table()) {
    if (section == Section::Global && (key_name == "servers" || key_name == "databases")) continue;
    const std::string path = key_path(section, name, key_name);
    lines_[path] = line_of(value);
    const KeyInfo* key = find_key(section, key_name);
    if (key == nullptr) {
      // A top-level key written below a [section] header lands in that section.
      const bool misplaced = section != Section::Global && find_key(Section::Global, key_name);
      error(line_of(value), path,
            misplaced ? "unknown key (top-level keys must come before the first [section])"
                      : "unknown key");
      continue;
    }
    std::optional<KeyValue> converted = convert(*key, path, value);
    if (!converted) continue;
    if (std::optional<std::string> reason = key->apply(target, *converted)) {
      error(line_of(value), path, std::move(*reason));
    }
  }
}

std::optional<KeyValue> Parser::convert(const KeyInfo& key, const std::string& path,
                                        const TomlValue& v) {
  switch (key.type) {
    case KeyType::Integer:
      return convert_integer(key, path, v);
    case KeyType::Interval:
      return convert_duration(key, path, v);
    case KeyType::Bool:
      if (v.is_boolean()) return KeyValue{v.as_boolean()};
      error(line_of(v), path, wrong_type("bool", v));
      return std::nullopt;
    case KeyType::String:
      if (v.is_string()) return KeyValue{v.as_string().str};
      error(line_of(v), path, wrong_type("string", v));
      return std::nullopt;
    case KeyType::Enum: {
      if (!v.is_string()) {
        error(line_of(v), path, wrong_type("string", v));
        return std::nullopt;
      }
      const std::string& s = v.as_string().str;
      if (std::find(key.allowed.begin(), key.allowed.end(), s) != key.allowed.end()) {
        return KeyValue{s};
      }
      std::string reason = "must be one of";
      for (std::size_t i = 0; i < key.allowed.size(); ++i) {
        reason += (i == 0 ? " " : ", ") + std::string(key.allowed[i]);
      }
      error(line_of(v), path, reason + "; got \"" + s + "\"");
      return std::nullopt;
    }
    case KeyType::StringList: {
      if (!v.is_array()) {
        error(line_of(v), path, wrong_type("array of strings", v));
        return std::nullopt;
      }
      std::vector<std::string> list;
      for (const TomlValue& element : v.as_array()) {
        if (!element.is_string()) {
          error(line_of(element), path,
                "expected array of strings, got " + toml_type_name(element) + " element");
          return std::nullopt;
        }
        list.push_back(element.as_string().str);
      }
      return KeyValue{std::move(list)};
    }
  }
  return std::nullopt;
}

std::optional<KeyValue> Parser::convert_integer(const KeyInfo& key, const std::string& path,
                                                const TomlValue& v) {
  if (!v.is_integer()) {
    error(line_of(v), path, wrong_type("integer", v));
    return std::nullopt;
  }
  const std::int64_t n = v.as_integer();  // toml11 saturates literals beyond 64 bits
  if (n < key.min || n > key.max) {
    error(line_of(v), path,
          "must be between " + std::to_string(key.min) + " and " + std::to_string(key.max) +
              ", got " + std::to_string(n));
    return std::nullopt;
  }
  return KeyValue{n};
}

std::optional<KeyValue> Parser::convert_duration(const KeyInfo& key, const std::string& path,
                                                 const TomlValue& v) {
  if (v.is_integer()) {
    error(line_of(v), path,
          "expected a duration string with a unit such as \"30s\" or \"250ms\", got integer");
    return std::nullopt;
  }
  if (!v.is_string()) {
    error(line_of(v), path, wrong_type("duration string", v));
    return std::nullopt;
  }
  const std::string& text = v.as_string().str;
  const std::optional<Duration> d = parse_duration(text);
  if (!d) {
    error(line_of(v), path,
          "invalid duration \"" + text +
              "\": expected a whole number and a unit ms, s, m, h or d (e.g. \"30s\"), at most " +
              format_duration(kMaxDuration));
    return std::nullopt;
  }
  if (d->count() < key.min || d->count() > key.max) {
    error(line_of(v), path,
          "must be between " + format_duration(Duration{key.min}) + " and " +
              format_duration(Duration{key.max}) + ", got \"" + text + "\"");
    return std::nullopt;
  }
  return KeyValue{*d};
}

void Parser::validate() {
  // A rejected auth_type or auth_file was reported already; "required" would only add noise.
  if (config_.auth_type != AuthType::Trust && config_.auth_file.empty() &&
      !has_error("auth_type") && !has_error("auth_file")) {
    error(line_of_key("auth_type"), "auth_file", "required unless auth_type is \"trust\"");
  }
  if (config_.servers.empty()) {
    error(0, "servers", "at least one [servers.NAME] table is required");
  }
  if (config_.databases.empty()) {
    error(0, "databases", "at least one [databases.NAME] table is required");
  }
  for (auto& [name, database] : config_.databases) validate_database(database);
}

void Parser::validate_database(Database& database) {
  const std::string path = key_path(Section::Database, database.name, "");
  if (database.dbname.empty()) database.dbname = database.name;
  if (database.server.empty()) {
    if (config_.servers.size() == 1) {
      database.server = config_.servers.begin()->first;
    } else if (config_.servers.size() > 1) {
      error(line_of_key(path), path + ".server", "required when more than one server is defined");
    }
  } else if (!config_.servers.contains(database.server)) {
    std::string known;
    for (const auto& [name, server] : config_.servers) known += (known.empty() ? "" : ", ") + name;
    error(line_of_key(path + ".server"), path + ".server",
          "unknown server \"" + database.server + "\"" +
              (known.empty() ? std::string() : " (defined: " + known + ")"));
  }
  if (database.min_pool_size > database.pool_size) {
    error(line_of_key(path + ".min_pool_size"), path + ".min_pool_size",
          "must not exceed pool_size (" + std::to_string(database.pool_size) + ")");
  }
}

}  // namespace

std::string Diagnostic::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  if (!key.empty()) out += (out.empty() ? "" : ": ") + key;
  out += (out.empty() ? "" : ": ") + reason;
  return out;
}

const Database* Config::find_database(const std::string& name) const {
  const auto it = databases.find(name);
  return it == databases.end() ? nullptr : &it->second;
}

Result<Config, Diagnostics> parse_config(const std::string& text, const std::string& source) {
  return Parser(source).run(text);
}

Result<Config, Diagnostics> load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string why = std::error_code(errno, std::generic_category()).message();
    return unexpected(Diagnostics{{path, 0, "", "cannot read the file: " + why}});
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return unexpected(Diagnostics{{path, 0, "", "cannot read the file"}});
  return parse_config(text.str(), path);
}

}  // namespace sluice::config
