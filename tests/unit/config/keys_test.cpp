#include "config/keys.hpp"

#include "tests/unit/config/parse_helpers.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace sluice::config;
using namespace sluice::config::test;

namespace {

// The smallest valid file (auth_file set because auth_type defaults to scram-sha-256).
constexpr const char* kMinimal = "auth_file = \"users.txt\"\n[servers.main]\n[databases.app]\n";
// kMinimal plus the smallest bulkhead, so that every section has one instance.
constexpr const char* kMinimalBulkhead =
    "auth_file = \"users.txt\"\n[servers.main]\n[databases.app]\n[[bulkheads]]\nname = \"b\"\n";

// A valid file with `key` set to `value` (TOML text); `line` receives the key's line number.
// pool_size is raised so that min_pool_size can take its whole range, and a bulkhead's server
// gets the largest max_connections so that reserved and max can take theirs. A burst is written
// with its rate, which it needs.
std::string with_key(const KeyInfo& key, const std::string& value, int& line) {
  const std::string assignment = std::string(key.name) + " = " + value + "\n";
  std::string text;
  int lines = 0;
  const auto add = [&](const std::string& l) {
    text += l;
    ++lines;
  };
  if (key.section == Section::Global) {
    add(assignment);
    line = lines;
  }
  if (key.name != "auth_file") add("auth_file = \"users.txt\"\n");
  if (key.name == "client_tls_mode") {
    add("client_tls_cert_file = \"server.crt\"\n");  // needed unless the mode is "disable"
    add("client_tls_key_file = \"server.key\"\n");
  }
  add("[servers.main]\n");
  if (key.section == Section::Server) {
    add(assignment);
    line = lines;
  }
  if (key.section == Section::Bulkhead) add("max_connections = 100000\n");
  add("[databases.app]\n");
  if (key.name != "pool_size") add("pool_size = 100000\n");
  if (key.section == Section::Database) {
    add(assignment);
    line = lines;
  }
  if (key.section == Section::Bulkhead) {
    add("[[bulkheads]]\n");
    if (key.name != "name") add("name = \"b\"\n");
    const std::string_view name = key.name;
    if (name.ends_with("_burst")) {
      add(std::string(name.substr(0, name.size() - 5)) + "per_second = 1\n");
    }
    add(assignment);  // "match.user = [...]" is a dotted key into the match table
    line = lines;
  }
  return text;
}

// The path diagnostics give the key in with_key's file. A rejected name leaves the bulkhead
// identified by its index.
std::string path_of(const KeyInfo& key) {
  switch (key.section) {
    case Section::Global:
      return std::string(key.name);
    case Section::Server:
      return key_path(key.section, "main", key.name);
    case Section::Database:
      return key_path(key.section, "app", key.name);
    case Section::Bulkhead:
      return key_path(key.section, key.name == "name" ? "[0]" : "b", key.name);
  }
  return "";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

TEST_CASE("every key is declared once with a type, a description and a way to store it",
          "[config]") {
  std::set<std::string> seen;
  for (const KeyInfo& key : key_table()) {
    CAPTURE(key.name);
    CHECK(seen.insert(path_of(key)).second);
    CHECK_FALSE(key.description.empty());
    CHECK(key.description.find('\n') == std::string_view::npos);
    CHECK(key.apply != nullptr);
    CHECK(key.show != nullptr);
    CHECK(find_key(key.section, key.name) == &key);
    CHECK((key.type == KeyType::Enum) == !key.allowed.empty());
    if (key.type == KeyType::Integer || key.type == KeyType::Interval) CHECK(key.min <= key.max);
  }
  CHECK(seen.size() == 69);
  CHECK(find_key(Section::Global, "pool_size") == nullptr);
  CHECK(find_key(Section::Database, "listen") == nullptr);
  CHECK(find_key(Section::Bulkhead, "user") == nullptr);  // it is match.user
  CHECK(find_key(Section::Bulkhead, "match.user") != nullptr);
}

TEST_CASE("the bulkhead keys are the documented set, reloadable except name and server",
          "[config]") {
  std::vector<std::string> names;
  for (const KeyInfo& key : key_table()) {
    if (key.section != Section::Bulkhead) continue;
    names.emplace_back(key.name);
    CAPTURE(key.name);
    CHECK(key.reloadable == (key.name != "name" && key.name != "server"));
  }
  CHECK(names == std::vector<std::string>{
                     "name",
                     "server",
                     "priority",
                     "reserved",
                     "max",
                     "queue_depth",
                     "max_wait",
                     "statement_timeout",
                     "idle_transaction_timeout",
                     "max_clients",
                     "new_connections_per_second",
                     "new_connections_burst",
                     "new_transactions_per_second",
                     "new_transactions_burst",
                     "adaptive_lifo",
                     "lifo_target",
                     "match.application_name",
                     "match.user",
                     "match.database",
                     "match.client_cidr",
                 });
  CHECK_FALSE(find_key(Section::Global, "metrics_listen")->reloadable);
  CHECK(find_key(Section::Global, "statement_timeout_grace")->reloadable);
}

TEST_CASE("key paths of bulkheads use the name, or the index in brackets", "[config]") {
  CHECK(key_path(Section::Bulkhead, "critical", "max") == "bulkheads.critical.max");
  CHECK(key_path(Section::Bulkhead, "critical", "match.user") == "bulkheads.critical.match.user");
  CHECK(key_path(Section::Bulkhead, "critical", "") == "bulkheads.critical");
  CHECK(key_path(Section::Bulkhead, "[2]", "max") == "bulkheads[2].max");
  CHECK(key_path(Section::Bulkhead, "[2]", "") == "bulkheads[2]");
}

TEST_CASE("each key's documented default is what a minimal config gets", "[config]") {
  const Config config = parse_ok(kMinimalBulkhead);
  const std::vector<ConfigRow> rows = show_config(config);
  REQUIRE(rows.size() == key_table().size());
  for (const ConfigRow& row : rows) {
    CAPTURE(row.key);
    if (!row.default_value.empty()) CHECK(row.value == row.default_value);
  }
  // The keys without a fixed default.
  const auto value_of = [&rows](const std::string& key) {
    const auto it = std::find_if(rows.begin(), rows.end(), [&](auto& r) { return r.key == key; });
    REQUIRE(it != rows.end());
    return it->value;
  };
  CHECK(value_of("auth_file") == "\"users.txt\"");
  CHECK(value_of("databases.app.server") == "\"main\"");
  CHECK(value_of("databases.app.dbname") == "\"app\"");
  CHECK(value_of("bulkheads.b.name") == "\"b\"");
  CHECK(value_of("bulkheads.b.server") == "\"main\"");
  CHECK(value_of("bulkheads.b.max") == "100");  // the server's max_connections
}

TEST_CASE("writing every documented default explicitly changes nothing", "[config]") {
  std::string global = "auth_file = \"users.txt\"\n";
  std::string server = "[servers.main]\n";
  std::string database = "[databases.app]\n";
  std::string bulkhead = "[[bulkheads]]\nname = \"b\"\n";
  for (const KeyInfo& key : key_table()) {
    if (key.default_text.empty()) continue;
    const std::string line = std::string(key.name) + " = " + std::string(key.default_text) + "\n";
    (key.section == Section::Global     ? global
     : key.section == Section::Server   ? server
     : key.section == Section::Database ? database
                                        : bulkhead) += line;
  }
  const Config implicit = parse_ok(kMinimalBulkhead);
  const Config explicit_defaults = parse_ok(global + server + database + bulkhead);
  CHECK(diff_configs(implicit, explicit_defaults).empty());
}

TEST_CASE("every key rejects a value of the wrong type at its line", "[config]") {
  for (const KeyInfo& key : key_table()) {
    CAPTURE(key.name);
    // A TOML type no key accepts in place of the one it expects.
    const bool wants_integer = key.type == KeyType::Integer;
    const bool wants_bool = key.type == KeyType::Bool;
    int line = 0;
    const auto parsed = parse_config(with_key(key,
                                              wants_integer ? "\"1\""
                                              : wants_bool  ? "1"
                                                            : "true",
                                              line),
                                     "t.toml");
    REQUIRE_FALSE(parsed);
    std::string expected = "expected ";
    switch (key.type) {
      case KeyType::Integer:
        expected += "integer, got string";
        break;
      case KeyType::Interval:
        expected += "duration string, got bool";
        break;
      case KeyType::StringList:
        expected += "array of strings, got bool";
        break;
      case KeyType::Bool:
        expected += "bool, got integer";
        break;
      case KeyType::String:
      case KeyType::Enum:
        expected += "string, got bool";
        break;
    }
    const std::string message =
        "t.toml:" + std::to_string(line) + ": " + path_of(key) + ": " + expected;
    const auto& errors = parsed.error();
    CHECK(std::any_of(errors.begin(), errors.end(),
                      [&](const Diagnostic& d) { return d.to_string() == message; }));
  }
}

TEST_CASE("every integer key accepts its bounds and rejects one beyond them", "[config]") {
  for (const KeyInfo& key : key_table()) {
    if (key.type != KeyType::Integer) continue;
    CAPTURE(key.name);
    int line = 0;
    CHECK(parse_config(with_key(key, std::to_string(key.min), line), "t.toml"));
    CHECK(parse_config(with_key(key, std::to_string(key.max), line), "t.toml"));
    for (const std::int64_t bad : {key.min - 1, key.max + 1}) {
      const auto parsed = parse_config(with_key(key, std::to_string(bad), line), "t.toml");
      REQUIRE_FALSE(parsed);
      CHECK(parsed.error().at(0).to_string() ==
            "t.toml:" + std::to_string(line) + ": " + path_of(key) + ": must be between " +
                std::to_string(key.min) + " and " + std::to_string(key.max) + ", got " +
                std::to_string(bad));
    }
  }
}

TEST_CASE("every enum key accepts its listed values and nothing else", "[config]") {
  for (const KeyInfo& key : key_table()) {
    if (key.type != KeyType::Enum) continue;
    CAPTURE(key.name);
    int line = 0;
    for (const std::string_view value : key.allowed) {
      const auto parsed =
          parse_config(with_key(key, "\"" + std::string(value) + "\"", line), "t.toml");
      REQUIRE(parsed);
      const auto rows = show_config(*parsed);
      const auto row = std::find_if(rows.begin(), rows.end(),
                                    [&](const ConfigRow& r) { return r.key == path_of(key); });
      REQUIRE(row != rows.end());
      CHECK(row->value == "\"" + std::string(value) + "\"");
    }
    const auto parsed = parse_config(with_key(key, "\"Bogus\"", line), "t.toml");
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().at(0).reason.starts_with("must be one of "));
    CHECK(parsed.error().at(0).line == line);
  }
}

TEST_CASE("SHOW CONFIG rows cover every key of every section", "[config]") {
  const Config config = parse_ok(R"(auth_type = "trust"
[servers.a]
port = 6000
[servers.b]
[databases.x]
server = "a"
[databases.y]
server = "b"
pool_size = 7
[[bulkheads]]
name = "critical"
server = "a"
reserved = 8
[[bulkheads]]
name = "batch"
server = "a"
[[bulkheads]]
name = "batch"
server = "b"
match = { user = ["etl"] }
)");
  const std::vector<ConfigRow> rows = show_config(config);
  std::size_t global = 0, server = 0, database = 0, bulkhead = 0;
  for (const KeyInfo& key : key_table()) {
    (key.section == Section::Global     ? global
     : key.section == Section::Server   ? server
     : key.section == Section::Database ? database
                                        : bulkhead)++;
  }
  CHECK(rows.size() == global + 2 * server + 2 * database + 3 * bulkhead);
  const auto find = [&rows](const std::string& key) {
    return std::find_if(rows.begin(), rows.end(), [&](const ConfigRow& r) { return r.key == key; });
  };
  REQUIRE(find("servers.a.port") != rows.end());
  CHECK(find("servers.a.port")->value == "6000");
  CHECK(find("servers.a.port")->default_value == "5432");
  CHECK_FALSE(find("servers.a.port")->reloadable);
  CHECK(find("databases.y.pool_size")->value == "7");
  CHECK(find("databases.y.pool_size")->reloadable);
  CHECK(find("auth_type")->value == "\"trust\"");
  CHECK(find("listen")->value == "[\"127.0.0.1:6432\"]");
  // A name used on one server only is enough; a name used on two is qualified with the server.
  REQUIRE(find("bulkheads.critical.reserved") != rows.end());
  CHECK(find("bulkheads.critical.reserved")->value == "8");
  CHECK(find("bulkheads.critical.reserved")->reloadable);
  CHECK_FALSE(find("bulkheads.critical.name")->reloadable);
  CHECK(find("bulkheads.critical.max")->value == "100");
  CHECK(find("bulkheads.critical.max")->default_value.empty());
  CHECK(find("bulkheads.batch.max") == rows.end());
  REQUIRE(find("bulkheads.a.batch.server") != rows.end());
  CHECK(find("bulkheads.a.batch.server")->value == "\"a\"");
  CHECK(find("bulkheads.b.batch.match.user")->value == "[\"etl\"]");
  CHECK(find("bulkheads.b.batch.match.user")->default_value == "[]");
  CHECK(find("bulkheads.a.batch.adaptive_lifo")->value == "true");
  CHECK(find("metrics_listen")->value == "\"\"");
  CHECK(find("statement_timeout_grace")->value == "\"1s\"");
}

TEST_CASE("the reload diff lists changed keys and sections with their reloadability", "[config]") {
  const Config before = parse_ok(R"(auth_type = "trust"
threads = 2
[servers.main]
[servers.old]
[databases.app]
server = "main"
pool_size = 10
)");
  const Config after = parse_ok(R"(auth_type = "trust"
threads = 4
[servers.main]
[databases.app]
pool_size = 30
server_reset_query = "RESET ALL"
[databases.reports]
)");
  const std::vector<ConfigChange> changes = diff_configs(before, after);
  std::vector<std::string> lines;
  for (const ConfigChange& c : changes) {
    lines.push_back(c.key + " " + c.old_value + " -> " + c.new_value +
                    (c.reloadable ? "" : " (restart)"));
  }
  CHECK(lines == std::vector<std::string>{
                     "servers.old [servers.old] -> ",
                     "databases.reports  -> [databases.reports]",
                     "threads 2 -> 4 (restart)",
                     "databases.app.pool_size 10 -> 30",
                     "databases.app.server_reset_query \"DISCARD ALL\" -> \"RESET ALL\"",
                 });
  CHECK(diff_configs(after, after).empty());
}

TEST_CASE("the reload diff matches bulkheads by server and name", "[config]") {
  const Config before = parse_ok(R"(auth_type = "trust"
[servers.main]
max_connections = 50
[servers.replica]
[databases.app]
server = "main"
[[bulkheads]]
name = "critical"
server = "main"
reserved = 8
[[bulkheads]]
name = "batch"
server = "main"
max = 20
[[bulkheads]]
name = "old"
server = "main"
)");
  // Reordered, one removed, one added on the other server (which qualifies "batch"'s label),
  // one changed.
  const Config after = parse_ok(R"(auth_type = "trust"
metrics_listen = "127.0.0.1:9187"
[servers.main]
max_connections = 50
[servers.replica]
[databases.app]
server = "main"
[[bulkheads]]
name = "batch"
server = "main"
max = 20
adaptive_lifo = false
[[bulkheads]]
name = "critical"
server = "main"
reserved = 8
match = { client_cidr = ["10.0.0.0/8"] }
[[bulkheads]]
name = "batch"
server = "replica"
)");
  std::vector<std::string> lines;
  for (const ConfigChange& c : diff_configs(before, after)) {
    lines.push_back(c.key + " " + c.old_value + " -> " + c.new_value +
                    (c.reloadable ? "" : " (restart)"));
  }
  CHECK(lines == std::vector<std::string>{
                     "bulkheads.old {name = \"old\", server = \"main\"} -> ",
                     "bulkheads.replica.batch  -> {name = \"batch\", server = \"replica\"}",
                     "metrics_listen \"\" -> \"127.0.0.1:9187\" (restart)",
                     "bulkheads.main.batch.adaptive_lifo true -> false",
                     "bulkheads.critical.match.client_cidr [] -> [\"10.0.0.0/8\"]",
                 });
  CHECK(diff_configs(after, after).empty());

  // A bulkhead without max follows its server's max_connections.
  const Config grown = parse_ok(R"(auth_type = "trust"
[servers.main]
max_connections = 80
[servers.replica]
[databases.app]
server = "main"
[[bulkheads]]
name = "critical"
server = "main"
reserved = 8
[[bulkheads]]
name = "batch"
server = "main"
max = 20
[[bulkheads]]
name = "old"
server = "main"
)");
  std::vector<std::string> grown_lines;
  for (const ConfigChange& c : diff_configs(before, grown)) {
    grown_lines.push_back(c.key + " " + c.old_value + " -> " + c.new_value);
  }
  CHECK(grown_lines == std::vector<std::string>{
                           "servers.main.max_connections 50 -> 80",
                           "bulkheads.critical.max 50 -> 80",
                           "bulkheads.old.max 50 -> 80",
                       });
}

TEST_CASE("show renders strings as TOML that parses back to the same value", "[config]") {
  const Config config = parse_ok(
      "auth_type = \"trust\"\n[servers.main]\n[databases.app]\n"
      "server_reset_query = \"SELECT '\\\"x\\\"\\\\\\t\\u0001'\"\n");
  std::string shown;
  for (const ConfigRow& row : show_config(config)) {
    if (row.key == "databases.app.server_reset_query") shown = row.value;
  }
  CHECK(shown == R"("SELECT '\"x\"\\\t\u0001'")");
  const Config again = parse_ok(
      "auth_type = \"trust\"\n[servers.main]\n[databases.app]\n"
      "server_reset_query = " +
      shown + "\n");
  CHECK(again.databases.at("app").server_reset_query ==
        config.databases.at("app").server_reset_query);
}

TEST_CASE("the reference has one table row per key with type, default and reloadability",
          "[config]") {
  const std::string reference = render_reference_markdown();
  for (const KeyInfo& key : key_table()) {
    CAPTURE(key.name);
    CHECK(reference.find("| `" + std::string(key.name) + "` | ") != std::string::npos);
  }
  CHECK(reference.find("| `pool_size` | integer, 1..100000 | `20` | yes | ") != std::string::npos);
  CHECK(reference.find("| `max_message_size` | integer (bytes), 1024..1073741824 | `67108864` "
                       "| yes | ") != std::string::npos);
  CHECK(reference.find("| `auth_type` | enum: `trust`, `md5`, `scram-sha-256` | "
                       "`\"scram-sha-256\"` | yes | ") != std::string::npos);
  CHECK(reference.find("| `auth_file` | string | (none) | yes | ") != std::string::npos);
  CHECK(reference.find("| `connect_timeout` | duration, at least 1ms | `\"5s\"` | yes | ") !=
        std::string::npos);
  CHECK(reference.find("### `[[bulkheads]]`: ") != std::string::npos);
  CHECK(reference.find("| `max` | integer, 1..100000 | (none) | yes | ") != std::string::npos);
  CHECK(reference.find("| `adaptive_lifo` | bool | `true` | yes | ") != std::string::npos);
  CHECK(reference.find("| `match.client_cidr` | string list | `[]` | yes | ") != std::string::npos);
  CHECK(reference.find("| `name` | string | (none) | no | ") != std::string::npos);
  CHECK(reference.find("| `max_wait` | duration, at least 1ms | `\"5s\"` | yes | ") !=
        std::string::npos);
  const auto rows = std::count(reference.begin(), reference.end(), '\n');
  CHECK(static_cast<std::size_t>(rows) ==
        key_table().size() + 2 + 4 * 4 + 3 + 2);  // preface, sections, gaps, bulkheads' intro
}

TEST_CASE("README.md carries the generated config reference verbatim", "[config]") {
  constexpr std::string_view kBegin = "<!-- config-reference:begin -->\n";
  constexpr std::string_view kEnd = "<!-- config-reference:end -->";
  const std::string readme = read_file(std::string(SLUICE_SOURCE_DIR) + "/README.md");
  const std::size_t begin = readme.find(kBegin);
  REQUIRE(begin != std::string::npos);
  const std::size_t start = begin + kBegin.size();
  const std::size_t end = readme.find(kEnd, start);
  REQUIRE(end != std::string::npos);
  INFO("regenerate the text between the markers with `sluice --print-config-reference`");
  CHECK(readme.substr(start, end - start) == render_reference_markdown());
}

// ---- secrets ----------------------------------------------------------------------------------

namespace {

constexpr const char* kSecretText = "hunter2-Sup3r-s3cret";

// A TOML value of `key`'s type holding `text` (secret keys are strings or lists of strings).
std::string secret_value(const KeyInfo& key, const std::string& text) {
  return key.type == KeyType::StringList ? "[\"" + text + "\"]" : "\"" + text + "\"";
}

bool any_contains(const std::vector<std::string>& texts, std::string_view needle) {
  return std::any_of(texts.begin(), texts.end(),
                     [&](const std::string& t) { return t.find(needle) != std::string::npos; });
}

}  // namespace

TEST_CASE("every key that holds a password or a secret is marked secret in the key table",
          "[config]") {
  std::size_t secrets = 0;
  for (const KeyInfo& key : key_table()) {
    CAPTURE(key.name);
    const std::string_view name = key.name;
    for (const std::string_view word : {"password", "passwd", "secret", "private", "token"}) {
      if (name.find(word) != std::string_view::npos) CHECK(key.secret);
    }
    if (!key.secret) continue;
    ++secrets;
    // What display_value() can hide: a text whose unset form is "" or [], with no default value
    // the reference would print.
    CHECK((key.type == KeyType::String || key.type == KeyType::StringList));
    CHECK((key.default_text.empty() || key.default_text == "\"\"" || key.default_text == "[]"));
  }
  CHECK(find_key(Section::Database, "password")->secret);
  CHECK(secrets >= 1);
  // Paths of files are not secret (the key's contents are in the file, not in the config).
  CHECK_FALSE(find_key(Section::Global, "client_tls_key_file")->secret);
  CHECK_FALSE(find_key(Section::Global, "auth_file")->secret);
  CHECK_FALSE(find_key(Section::Global, "auth_user")->secret);
}

TEST_CASE("SHOW CONFIG and the reload diff never contain a secret key's value", "[config]") {
  for (const KeyInfo& key : key_table()) {
    if (!key.secret) continue;
    CAPTURE(key.name);
    int line = 0;
    const Config unset = parse_ok(with_key(key, secret_value(key, ""), line));
    const Config set = parse_ok(with_key(key, secret_value(key, kSecretText), line));
    // 16 characters: status_password refuses shorter ones.
    const Config changed = parse_ok(with_key(key, secret_value(key, "an0ther-passw0rd"), line));

    std::vector<std::string> shown;
    for (const ConfigRow& row : show_config(set)) {
      shown.push_back(row.value);
      if (row.key == path_of(key)) CHECK(row.value == kRedacted);
    }
    CHECK_FALSE(any_contains(shown, kSecretText));
    for (const ConfigRow& row : show_config(unset)) {
      if (row.key == path_of(key))
        CHECK(row.value == (key.type == KeyType::StringList ? "[]" : "\"\""));
    }

    // A change is reported (compared on the values), rendered without them.
    for (const auto& [before, after] :
         {std::pair{&unset, &set}, std::pair{&set, &changed}, std::pair{&set, &unset}}) {
      const std::vector<ConfigChange> changes = diff_configs(*before, *after);
      REQUIRE(changes.size() == 1);
      CHECK(changes[0].key == path_of(key));
      CHECK((changes[0].old_value == kRedacted || changes[0].new_value == kRedacted));
      for (const std::string* value : {&changes[0].old_value, &changes[0].new_value}) {
        CHECK(value->find(kSecretText) == std::string::npos);
        CHECK(value->find("an0ther-passw0rd") == std::string::npos);
      }
    }
    CHECK(diff_configs(set, set).empty());

    // The reference shows an empty default and says the value is hidden.
    const std::string reference = render_reference_markdown();
    const std::size_t row = reference.find("| `" + std::string(key.name) + "` | ");
    REQUIRE(row != std::string::npos);
    const std::string text = reference.substr(row, reference.find('\n', row) - row);
    CHECK(text.find(std::string(kRedacted)) != std::string::npos);
  }
}

TEST_CASE("redact hides every occurrence of each secret, the longest first", "[config]") {
  const std::vector<std::string> secrets = {"pw", "", "pw-long"};
  CHECK(redact("a pw-long and a pw, pwpw", secrets) ==
        "a ******** and a ********, ****************");
  CHECK(redact("nothing here", secrets) == "nothing here");
  CHECK(redact("empty secrets hide nothing", std::vector<std::string>{""}) ==
        "empty secrets hide nothing");
}

TEST_CASE("no diagnostic repeats a secret value, even one written into another key", "[config]") {
  // An operator pasted the password into pool_mode too: its "got ..." must not show it.
  const auto parsed = parse_config(R"(auth_type = "trust"
[servers.main]
[databases.app]
user = "svc"
password = "Corr3ct-Horse"
pool_mode = "Corr3ct-Horse"
server = "Corr3ct-Horse"
)",
                                   "t.toml");
  REQUIRE_FALSE(parsed);
  std::vector<std::string> messages;
  for (const Diagnostic& d : parsed.error()) messages.push_back(d.to_string());
  CAPTURE(messages);
  REQUIRE(messages.size() == 2);
  CHECK(messages[0] ==
        "t.toml:6: databases.app.pool_mode: must be one of session, transaction; got "
        "\"********\"");
  CHECK(messages[1].starts_with("t.toml:7: databases.app.server: unknown server \"********\""));
  CHECK_FALSE(any_contains(messages, "Corr3ct"));
}

TEST_CASE("the reload diff reports a changed database password without its values", "[config]") {
  const std::string head =
      "auth_type = \"trust\"\n[servers.main]\n[databases.app]\nuser = \"svc\"\n";
  const Config before = parse_ok(head + "password = \"old-Pa55word\"\npool_size = 10\n");
  const Config after = parse_ok(head + "password = \"new-Pa55word\"\npool_size = 20\n");
  const Config unset = parse_ok(head + "pool_size = 20\n");
  const auto lines_of = [](const Config& a, const Config& b) {
    std::vector<std::string> lines;
    for (const ConfigChange& c : diff_configs(a, b)) {
      lines.push_back(c.key + " " + c.old_value + " -> " + c.new_value);
    }
    return lines;
  };
  CHECK(lines_of(before, after) == std::vector<std::string>{
                                       "databases.app.password ******** -> ********",
                                       "databases.app.pool_size 10 -> 20",
                                   });
  CHECK(lines_of(after, unset) ==
        std::vector<std::string>{"databases.app.password ******** -> \"\""});
  CHECK(lines_of(unset, before) == std::vector<std::string>{
                                       "databases.app.password \"\" -> ********",
                                       "databases.app.pool_size 20 -> 10",
                                   });
  std::map<std::string, std::string> shown;
  for (const ConfigRow& row : show_config(after)) shown[row.key] = row.value;
  CHECK(shown["databases.app.password"] == "********");
  CHECK(shown["databases.app.user"] == "\"svc\"");
  for (const ConfigRow& row : show_config(unset)) shown[row.key] = row.value;
  CHECK(shown["databases.app.password"] == "\"\"");
}
