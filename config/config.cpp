// parse_config: TOML text -> checked Config, walking the key table. toml11 is used only here.
#include "config/config.hpp"

#include "config/keys.hpp"
#include "config/utf8.hpp"

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
  using Lines = std::map<std::string, int>;  // dotted path of a key or section -> its line
  // One [[bulkheads]] entry's label and the lines of its keys. Kept per entry because two entries
  // may share a name (on different servers), hence their paths.
  struct BulkheadEntry {
    std::string label;  // NAME, or "[INDEX]" while the entry has no valid name
    Lines lines;
  };

  void read_root(const TomlValue& root);
  template <typename Item>
  void read_sections(Section section, const std::string& prefix, const TomlValue& value,
                     std::map<std::string, Item>& items);
  void read_bulkheads(const TomlValue& value);
  void read_keys(Section section, const std::string& name, const TomlValue& table, KeyTarget target,
                 Lines& lines, const std::string& key_prefix = "");
  std::optional<KeyValue> convert(const KeyInfo& key, const std::string& path, const TomlValue& v);
  std::optional<KeyValue> convert_integer(const KeyInfo& key, const std::string& path,
                                          const TomlValue& v);
  std::optional<KeyValue> convert_duration(const KeyInfo& key, const std::string& path,
                                           const TomlValue& v);
  void validate();
  void validate_database(Database& database);
  void validate_bulkheads();
  void validate_bulkhead(Bulkhead& bulkhead, const BulkheadEntry& entry);
  void check_burst(const Bulkhead& bulkhead, const BulkheadEntry& entry, std::string_view rate,
                   std::uint32_t rate_value, std::string_view burst, std::uint32_t burst_value);
  bool has_error(std::string_view path) const {
    return std::any_of(diagnostics_.begin(), diagnostics_.end(),
                       [path](const Diagnostic& d) { return d.key == path; });
  }
  int line_of_key(const std::string& path) const {
    const auto it = lines_.find(path);
    return it == lines_.end() ? 0 : it->second;
  }

  // Whether the key at `path` was rejected at `line` (so a later check need not repeat it).
  bool rejected(const std::string& path, int line) const {
    return std::any_of(diagnostics_.begin(), diagnostics_.end(),
                       [&](const Diagnostic& d) { return d.key == path && d.line == line; });
  }

  std::string file_;
  Config config_;
  Diagnostics diagnostics_;
  // The values of the secret keys read (KeyInfo::secret): no diagnostic may echo them.
  std::vector<std::string> secrets_;
  Lines lines_;  // every key and section read, except those of bulkheads
  std::vector<BulkheadEntry> bulkhead_entries_;  // parallel to config_.bulkheads
};

Result<Config, Diagnostics> Parser::run(const std::string& text) {
  // TOML is UTF-8. toml11 3.7 reads past its buffer on some invalid sequences (a quoted key
  // holding a lone 0xff byte, found by tests/fuzz/config_fuzz): refuse them first.
  if (const std::size_t bad = first_invalid_utf8(text); bad != std::string::npos) {
    const auto line =
        1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    error(static_cast<int>(line), std::string(kSyntaxKey),
          "the file is not valid UTF-8 (byte " + std::to_string(bad + 1) + ")");
    return unexpected(std::move(diagnostics_));
  }
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
    for (Diagnostic& d : diagnostics_) d.reason = redact(std::move(d.reason), secrets_);
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
    } else if (name == "bulkheads") {
      read_bulkheads(value);
    }
  }
  read_keys(Section::Global, "", root, KeyTarget{config_}, lines_);
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
    read_keys(section, name, table, target, lines_);
  }
}

// [[bulkheads]] is an array of tables (`bulkheads = [{...}, ...]` is the same thing to TOML).
void Parser::read_bulkheads(const TomlValue& value) {
  if (!value.is_array()) {
    return error(line_of(value), "bulkheads", wrong_type("array of tables ([[bulkheads]])", value));
  }
  const auto& entries = value.as_array();
  for (std::size_t index = 0; index < entries.size(); ++index) {
    const TomlValue& table = entries[index];
    const std::string index_label = "[" + std::to_string(index) + "]";
    if (!table.is_table()) {
      error(line_of(table), key_path(Section::Bulkhead, index_label, ""),
            wrong_type("table", table));
      continue;
    }
    // Diagnostics name the entry by its name once that is known to be valid.
    std::string label = index_label;
    if (const auto name = table.as_table().find("name");
        name != table.as_table().end() && name->second.is_string() &&
        !bulkhead_name_error(name->second.as_string().str)) {
      label = name->second.as_string().str;
    }
    Bulkhead& bulkhead = config_.bulkheads.emplace_back();
    bulkhead.line = line_of(table);
    BulkheadEntry& entry = bulkhead_entries_.emplace_back();
    entry.label = label;
    KeyTarget target{config_};
    target.bulkhead = &bulkhead;
    read_keys(Section::Bulkhead, label, table, target, entry.lines);
  }
}

// Reads the keys of one table. At the top level, the "servers", "databases" and "bulkheads"
// entries were read already. A bulkhead's `match` table is read with key_prefix "match.".
void Parser::read_keys(Section section, const std::string& name, const TomlValue& table,
                       KeyTarget target, Lines& lines, const std::string& key_prefix) {
  for (const auto& [key_name, value] : table.as_table()) {
    if (section == Section::Global &&
        (key_name == "servers" || key_name == "databases" || key_name == "bulkheads")) {
      continue;
    }
    // A quoted key with a dot ("match.user" = ...) is one key, not a key of a sub-table; its path
    // shows the quotes.
    const bool dotted = key_name.find('.') != std::string::npos;
    const std::string full_name = key_prefix + key_name;
    const std::string path =
        key_path(section, name, dotted ? key_prefix + "\"" + key_name + "\"" : full_name);
    lines[path] = line_of(value);
    if (section == Section::Bulkhead && key_prefix.empty() && key_name == "match") {
      if (!value.is_table()) {
        error(line_of(value), path, wrong_type("table", value));
      } else {
        read_keys(section, name, value, target, lines, "match.");
      }
      continue;
    }
    const KeyInfo* key = dotted ? nullptr : find_key(section, full_name);
    if (key == nullptr) {
      // A top-level key written below a [section] header lands in that section.
      const bool misplaced =
          section != Section::Global && key_prefix.empty() && find_key(Section::Global, key_name);
      error(line_of(value), path,
            misplaced ? "unknown key (top-level keys must come before the first [section])"
                      : "unknown key");
      continue;
    }
    if (key->secret) {  // whatever its type, so that no message about it can echo it
      if (value.is_string()) secrets_.push_back(value.as_string().str);
      if (value.is_array()) {
        for (const TomlValue& element : value.as_array()) {
          if (element.is_string()) secrets_.push_back(element.as_string().str);
        }
      }
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
  if (config_.client_tls_mode != ClientTlsMode::Disable && !has_error("client_tls_mode")) {
    for (const auto& [key, file] : {std::pair<std::string_view, const std::string*>{
                                        "client_tls_cert_file", &config_.client_tls_cert_file},
                                    {"client_tls_key_file", &config_.client_tls_key_file}}) {
      if (file->empty() && !has_error(key)) {
        error(line_of_key("client_tls_mode"), std::string(key),
              "required unless client_tls_mode is \"disable\"");
      }
    }
  }
  if (config_.servers.empty()) {
    error(0, "servers", "at least one [servers.NAME] table is required");
  }
  if (config_.databases.empty()) {
    error(0, "databases", "at least one [databases.NAME] table is required");
  }
  for (auto& [name, database] : config_.databases) validate_database(database);
  // auth_user's connections are set aside from each server's max_connections; backends need one.
  for (const auto& [name, server] : config_.servers) {
    if (config_.auth_user.empty()) break;
    if (server.max_connections > config_.auth_query_pool_size) continue;
    const std::string path = key_path(Section::Server, name, "max_connections");
    error(line_of_key(path), path,
          "must exceed auth_query_pool_size (" + std::to_string(config_.auth_query_pool_size) +
              "), whose connections for auth_user it includes");
  }
  validate_bulkheads();
  if (config_.metrics_listen) {
    const ListenAddress& metrics = *config_.metrics_listen;
    for (const ListenAddress& client : config_.listen) {
      if (!client.is_unix && client.port == metrics.port &&
          (client.host == metrics.host || client.host == "*" || metrics.host == "*")) {
        error(line_of_key("metrics_listen"), "metrics_listen",
              "\"" + metrics.to_string() + "\" overlaps the listen address \"" +
                  client.to_string() + "\"");
        break;
      }
    }
  }
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

void Parser::validate_bulkheads() {
  for (std::size_t i = 0; i < config_.bulkheads.size(); ++i) {
    validate_bulkhead(config_.bulkheads[i], bulkhead_entries_[i]);
  }

  // Names are unique per server; the same name on two servers is two bulkheads.
  std::map<std::pair<std::string, std::string>, int> first_line;  // (server, name) -> line
  // Reserved slots per server, in file order; reported once, where the sum first goes over.
  std::map<std::string, std::uint64_t> reserved;
  std::map<std::string, bool> reported;
  for (std::size_t i = 0; i < config_.bulkheads.size(); ++i) {
    const Bulkhead& bulkhead = config_.bulkheads[i];
    const BulkheadEntry& entry = bulkhead_entries_[i];
    const auto server = config_.servers.find(bulkhead.server);
    if (server == config_.servers.end()) continue;  // reported already
    const std::string path = key_path(Section::Bulkhead, entry.label, "");
    if (!bulkhead.name.empty()) {
      const auto [it, inserted] =
          first_line.emplace(std::pair(bulkhead.server, bulkhead.name), bulkhead.line);
      if (!inserted) {
        const auto line = entry.lines.find(path + ".name");
        error(line == entry.lines.end() ? bulkhead.line : line->second, path + ".name",
              "\"" + bulkhead.name + "\" is defined twice for server \"" + bulkhead.server +
                  "\" (first at line " + std::to_string(it->second) + ")");
      }
    }
    std::uint64_t& sum = reserved[bulkhead.server];
    sum += bulkhead.reserved;
    const std::uint32_t capacity = config_.backend_capacity(server->second);
    const auto line = entry.lines.find(path + ".reserved");
    // A reserved value over max was reported already; the sum is checked again further on.
    if (sum > capacity && !reported[bulkhead.server] && line != entry.lines.end() &&
        !rejected(path + ".reserved", line->second)) {
      reported[bulkhead.server] = true;
      error(line->second, path + ".reserved",
            "the bulkheads of server \"" + bulkhead.server + "\" reserve " + std::to_string(sum) +
                " slots up to here, more than its max_connections (" + std::to_string(capacity) +
                (capacity == server->second.max_connections
                     ? std::string()
                     : " left of " + std::to_string(server->second.max_connections) +
                           " after auth_query_pool_size") +
                ")");
    }
  }
}

void Parser::validate_bulkhead(Bulkhead& bulkhead, const BulkheadEntry& entry) {
  const std::string path = key_path(Section::Bulkhead, entry.label, "");
  // The line of a key that was written, else of the entry.
  const auto line_of_entry_key = [&](std::string_view key) {
    const auto it = entry.lines.find(path + "." + std::string(key));
    return it == entry.lines.end() ? bulkhead.line : it->second;
  };
  const auto written = [&](std::string_view key) {
    return entry.lines.contains(path + "." + std::string(key));
  };

  if (bulkhead.name.empty() && !written("name")) {
    error(bulkhead.line, path + ".name", "required");
  }

  if (bulkhead.server.empty()) {
    if (written("server")) {
      // rejected already
    } else if (config_.servers.size() == 1) {
      bulkhead.server = config_.servers.begin()->first;
    } else if (config_.servers.size() > 1) {
      error(bulkhead.line, path + ".server", "required when more than one server is defined");
    }
  } else if (!config_.servers.contains(bulkhead.server)) {
    std::string known;
    for (const auto& [name, server] : config_.servers) known += (known.empty() ? "" : ", ") + name;
    error(line_of_entry_key("server"), path + ".server",
          "unknown server \"" + bulkhead.server + "\"" +
              (known.empty() ? std::string() : " (defined: " + known + ")"));
  }

  const auto server = config_.servers.find(bulkhead.server);
  if (server != config_.servers.end()) {
    const std::uint32_t capacity = server->second.max_connections;
    const std::string of_server =
        "max_connections of server \"" + bulkhead.server + "\" (" + std::to_string(capacity) + ")";
    if (!bulkhead.max && !written("max")) bulkhead.max = capacity;  // absent: the whole server
    if (bulkhead.max && *bulkhead.max > capacity) {
      error(line_of_entry_key("max"), path + ".max", "must not exceed the " + of_server);
    }
    if (bulkhead.max && bulkhead.reserved > *bulkhead.max) {
      error(line_of_entry_key("reserved"), path + ".reserved",
            written("max") ? "must not exceed max (" + std::to_string(*bulkhead.max) + ")"
                           : "must not exceed max, which defaults to the " + of_server);
    }
  }

  check_burst(bulkhead, entry, "new_connections_per_second", bulkhead.new_connections_per_second,
              "new_connections_burst", bulkhead.new_connections_burst);
  check_burst(bulkhead, entry, "new_transactions_per_second", bulkhead.new_transactions_per_second,
              "new_transactions_burst", bulkhead.new_transactions_burst);
}

// A burst of 0 means "the same as the rate"; a burst without a rate would limit nothing.
void Parser::check_burst(const Bulkhead& bulkhead, const BulkheadEntry& entry,
                         std::string_view rate, std::uint32_t rate_value, std::string_view burst,
                         std::uint32_t burst_value) {
  if (burst_value == 0 || rate_value > 0) return;
  const std::string path = key_path(Section::Bulkhead, entry.label, "");
  const std::string rate_path = path + "." + std::string(rate);
  const auto rate_line = entry.lines.find(rate_path);
  if (rate_line != entry.lines.end() && rejected(rate_path, rate_line->second)) return;
  const auto line = entry.lines.find(path + "." + std::string(burst));
  error(line == entry.lines.end() ? bulkhead.line : line->second, path + "." + std::string(burst),
        "needs " + std::string(rate) + " (a burst without a rate limits nothing)");
}

}  // namespace

std::string Diagnostic::to_string() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  if (!key.empty()) out += (out.empty() ? "" : ": ") + key;
  out += (out.empty() ? "" : ": ") + reason;
  return out;
}

std::uint32_t Config::backend_capacity(const Server& server) const {
  const std::uint32_t set_aside = auth_user.empty() ? 0 : auth_query_pool_size;
  return server.max_connections > set_aside ? server.max_connections - set_aside : 0;
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
