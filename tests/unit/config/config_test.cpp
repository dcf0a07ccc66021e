#include "config/config.hpp"

#include "tests/unit/config/parse_helpers.hpp"

#include "config/keys.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace sluice::config;
using namespace sluice::config::test;
using namespace std::chrono_literals;

namespace {

// The smallest valid file: line 1 auth_file, line 2 [servers.main], line 3 [databases.app].
constexpr const char* kMinimal = R"(auth_file = "users.txt"
[servers.main]
[databases.app]
)";

}  // namespace

TEST_CASE("a minimal config gets the documented defaults", "[config]") {
  const Config config = parse_ok(kMinimal);
  CHECK(config.source == "t.toml");
  REQUIRE(config.listen.size() == 1);
  CHECK(config.listen[0].to_string() == "127.0.0.1:6432");
  CHECK(config.auth_type == AuthType::ScramSha256);
  CHECK(config.auth_file == "users.txt");
  CHECK(config.admin_users.empty());
  CHECK(config.stats_users.empty());
  CHECK(config.max_client_conn == 10000);
  CHECK(config.client_login_timeout == 10s);
  CHECK(config.shutdown_timeout == 30s);
  CHECK(config.query_wait_timeout == 2min);
  CHECK(config.max_message_size == 64u * 1024 * 1024);
  CHECK(config.threads == 0);
  CHECK(config.log_level == "info");
  CHECK(config.scram_iterations == 4096);

  REQUIRE(config.servers.size() == 1);
  const Server& server = config.servers.at("main");
  CHECK(server.name == "main");
  CHECK(server.host == "127.0.0.1");
  CHECK(server.port == 5432);
  CHECK(server.max_connections == 100);
  CHECK(server.max_connect_attempts == 4);
  CHECK(server.connect_timeout == 5s);
  CHECK(server.connect_retry_delay == 1s);

  const Database* database = config.find_database("app");
  REQUIRE(database != nullptr);
  CHECK(database->name == "app");
  CHECK(database->server == "main");  // the only server
  CHECK(database->dbname == "app");   // the section name
  CHECK(database->user.empty());
  CHECK(database->password.empty());
  CHECK(database->pool_mode == PoolMode::Session);
  CHECK(database->pool_size == 20);
  CHECK(database->min_pool_size == 0);
  CHECK(database->server_lifetime == 1h);
  CHECK(database->server_idle_timeout == 10min);
  CHECK(database->server_reset_query == "DISCARD ALL");
  CHECK(config.find_database("other") == nullptr);
}

TEST_CASE("every key is stored where the program reads it", "[config]") {
  const Config config = parse_ok(R"(listen = ["*:7000"]
auth_type = "md5"
auth_file = "/etc/sluice/users.txt"
admin_users = ["root", "ops"]
stats_users = ["monitor"]
max_client_conn = 5
client_login_timeout = "1s"
shutdown_timeout = "2s"
query_wait_timeout = "3s"
max_message_size = 2048
threads = 8
log_level = "debug"
scram_iterations = 10000
[servers.a]
host = "/var/run/postgresql"
port = 5433
max_connections = 7
max_connect_attempts = 2
connect_timeout = "250ms"
connect_retry_delay = "0"
[servers.b]
[databases.app]
server = "b"
dbname = "appdb"
user = "svc"
password = "pw"
pool_mode = "transaction"
pool_size = 9
min_pool_size = 3
server_lifetime = "0"
server_idle_timeout = "1d"
server_reset_query = ""
)");
  CHECK(config.listen[0].host == "*");
  CHECK(config.listen[0].port == 7000);
  CHECK(config.auth_type == AuthType::Md5);
  CHECK(config.auth_file == "/etc/sluice/users.txt");
  CHECK(config.admin_users == std::vector<std::string>{"root", "ops"});
  CHECK(config.stats_users == std::vector<std::string>{"monitor"});
  CHECK(config.max_client_conn == 5);
  CHECK(config.client_login_timeout == 1s);
  CHECK(config.shutdown_timeout == 2s);
  CHECK(config.query_wait_timeout == 3s);
  CHECK(config.max_message_size == 2048);
  CHECK(config.threads == 8);
  CHECK(config.log_level == "debug");
  CHECK(config.scram_iterations == 10000);
  const Server& a = config.servers.at("a");
  CHECK(a.host == "/var/run/postgresql");
  CHECK(a.port == 5433);
  CHECK(a.max_connections == 7);
  CHECK(a.max_connect_attempts == 2);
  CHECK(a.connect_timeout == 250ms);
  CHECK(a.connect_retry_delay == 0ms);
  const Database& app = config.databases.at("app");
  CHECK(app.server == "b");
  CHECK(app.dbname == "appdb");
  CHECK(app.user == "svc");
  CHECK(app.password == "pw");
  CHECK(app.pool_mode == PoolMode::Transaction);
  CHECK(app.pool_size == 9);
  CHECK(app.min_pool_size == 3);
  CHECK(app.server_lifetime == 0ms);
  CHECK(app.server_idle_timeout == 24h);
  CHECK(app.server_reset_query.empty());
}

TEST_CASE("client TLS keys are stored with their paths resolved", "[config]") {
  const Config config = parse_ok(R"(auth_type = "trust"
client_tls_mode = "require"
client_tls_cert_file = "tls/server.crt"
client_tls_key_file = "/etc/sluice/server.key"
[servers.main]
[databases.app]
)",
                                 "conf/sluice.toml");
  CHECK(config.client_tls_mode == ClientTlsMode::Require);
  CHECK(config.client_tls_cert_file == "conf/tls/server.crt");
  CHECK(config.client_tls_key_file == "/etc/sluice/server.key");
  CHECK(parse_ok("auth_type = \"trust\"\n[servers.main]\n[databases.app]\n").client_tls_mode ==
        ClientTlsMode::Disable);
}

TEST_CASE("client TLS needs a certificate and a key unless disabled", "[config]") {
  const std::string tail = "[servers.main]\n[databases.app]\n";
  CHECK(errors_of("auth_type = \"trust\"\nclient_tls_mode = \"prefer\"\n" + tail) ==
        std::vector<std::string>{
            "t.toml:2: client_tls_cert_file: required unless client_tls_mode is \"disable\"",
            "t.toml:2: client_tls_key_file: required unless client_tls_mode is \"disable\""});
  CHECK(errors_of("auth_type = \"trust\"\nclient_tls_mode = \"allow\"\n"
                  "client_tls_cert_file = \"c\"\n" +
                  tail) ==
        std::vector<std::string>{
            "t.toml:2: client_tls_key_file: required unless client_tls_mode is \"disable\""});
  CHECK(errors_of("auth_type = \"trust\"\nclient_tls_cert_file = \"\"\n" + tail) ==
        std::vector<std::string>{"t.toml:2: client_tls_cert_file: must not be empty"});
  CHECK(parse_ok("auth_type = \"trust\"\nclient_tls_mode = \"disable\"\n" + tail)
            .client_tls_cert_file.empty());
}

TEST_CASE("auth_type trust needs no auth_file", "[config]") {
  const Config config = parse_ok("auth_type = \"trust\"\n[servers.main]\n[databases.app]\n");
  CHECK(config.auth_type == AuthType::Trust);
  CHECK(config.auth_file.empty());
}

TEST_CASE("a relative auth_file is resolved against the config file's directory", "[config]") {
  const auto [source, value, resolved] = GENERATE(table<std::string, std::string, std::string>({
      {"conf/sluice.toml", "userlist.txt", "conf/userlist.txt"},
      {"conf/sluice.toml", "../secrets/users", "secrets/users"},
      {"conf/sluice.toml", "/etc/sluice/users", "/etc/sluice/users"},
      {"sluice.toml", "userlist.txt", "userlist.txt"},
      {"", "userlist.txt", "userlist.txt"},
  }));
  CAPTURE(source, value);
  const Config config =
      parse_ok("auth_file = \"" + value + "\"\n[servers.main]\n[databases.app]\n", source);
  CHECK(config.auth_file == resolved);
}

TEST_CASE("unknown keys are errors at their line in every section", "[config]") {
  CHECK(errors_of(R"(auth_file = "users.txt"
max_clients = 5
[servers.main]
hots = "x"
[databases.app]
pool_sise = 5
[pools.x]
)") == std::vector<std::string>{
           "t.toml:2: max_clients: unknown key",
           "t.toml:4: servers.main.hots: unknown key",
           "t.toml:6: databases.app.pool_sise: unknown key",
           "t.toml:7: pools: unknown key",
       });
}

TEST_CASE("a top-level key below a section header gets a hint", "[config]") {
  CHECK(errors_of(R"([servers.main]
[databases.app]
auth_file = "users.txt"
)") == std::vector<std::string>{
           "t.toml:3: databases.app.auth_file: unknown key (top-level keys must come before "
           "the first [section])",
           "t.toml: auth_file: required unless auth_type is \"trust\"",
       });
}

TEST_CASE("a value of the wrong type names both types", "[config]") {
  const auto [line, reason] = GENERATE(table<std::string, std::string>({
      {"max_client_conn = \"10\"", "max_client_conn: expected integer, got string"},
      {"threads = 1.0", "threads: expected integer, got float"},
      {"auth_type = 1", "auth_type: expected string, got integer"},
      {"log_level = true", "log_level: expected string, got bool"},
      {"listen = \"127.0.0.1:6432\"", "listen: expected array of strings, got string"},
      {"admin_users = [\"a\", 1]", "admin_users: expected array of strings, got integer element"},
      {"stats_users = {a = 1}", "stats_users: expected array of strings, got table"},
      {"shutdown_timeout = 1.5", "shutdown_timeout: expected duration string, got float"},
      {"shutdown_timeout = 1979-05-27", "shutdown_timeout: expected duration string, got date"},
      {"shutdown_timeout = 30",
       "shutdown_timeout: expected a duration string with a unit such as \"30s\" or \"250ms\", "
       "got integer"},
  }));
  CAPTURE(line);
  CHECK(errors_of("auth_file = \"u\"\n" + line + "\n[servers.main]\n[databases.app]\n") ==
        std::vector<std::string>{"t.toml:2: " + reason});
}

TEST_CASE("a bad duration string is rejected with the expected form", "[config]") {
  const std::string value = GENERATE(as<std::string>{}, "", "30", "-5s", "1.5s", "30 sec", "3651d",
                                     "1h30m", "99999999999999999999s");
  CAPTURE(value);
  CHECK(errors_of("auth_type = \"trust\"\n[servers.main]\n[databases.app]\nserver_lifetime = \"" +
                  value + "\"\n") ==
        std::vector<std::string>{"t.toml:4: databases.app.server_lifetime: invalid duration \"" +
                                 value +
                                 "\": expected a whole number and a unit ms, s, m, h or d (e.g. "
                                 "\"30s\"), at most 3650d"});
}

TEST_CASE("a duration below the key's minimum is rejected", "[config]") {
  CHECK(errors_of("auth_type = \"trust\"\n[servers.main]\nconnect_timeout = \"0\"\n"
                  "[databases.app]\n") ==
        std::vector<std::string>{"t.toml:3: servers.main.connect_timeout: must be between 1ms and "
                                 "3650d, got \"0\""});
}

TEST_CASE("missing servers, databases and auth_file are each reported", "[config]") {
  CHECK(errors_of("") == std::vector<std::string>{
                             "t.toml: auth_file: required unless auth_type is \"trust\"",
                             "t.toml: servers: at least one [servers.NAME] table is required",
                             "t.toml: databases: at least one [databases.NAME] table is required",
                         });
  CHECK(errors_of("\n\nauth_type = \"md5\"\n[servers.main]\n[databases.app]\n") ==
        std::vector<std::string>{"t.toml:3: auth_file: required unless auth_type is \"trust\""});
}

TEST_CASE("a database must name its server when several servers exist", "[config]") {
  CHECK(errors_of(R"(auth_type = "trust"
[servers.a]
[servers.b]

[databases.app]
pool_size = 5
)") == std::vector<std::string>{
           "t.toml:5: databases.app.server: required when more than one server is defined"});
}

TEST_CASE("a database naming an unknown server is an error at that line", "[config]") {
  CHECK(errors_of(R"(auth_type = "trust"
[servers.main]
[servers.replica]
[databases.app]
pool_size = 5
server = "mian"
)") == std::vector<std::string>{"t.toml:6: databases.app.server: unknown server \"mian\" "
                                "(defined: main, replica)"});
}

TEST_CASE("the database name sluice is reserved for the admin console", "[config]") {
  CHECK(errors_of(R"(auth_type = "trust"
[servers.main]
[databases.app]
[databases.sluice]
pool_size = 3
)") == std::vector<std::string>{
           "t.toml:4: databases.sluice: the name \"sluice\" is reserved for the admin console"});
}

TEST_CASE("min_pool_size may not exceed pool_size", "[config]") {
  CHECK(errors_of("auth_type = \"trust\"\n[servers.main]\n[databases.app]\npool_size = 5\n"
                  "min_pool_size = 6\n") ==
        std::vector<std::string>{
            "t.toml:5: databases.app.min_pool_size: must not exceed pool_size (5)"});
  const Config config = parse_ok(
      "auth_type = \"trust\"\n[servers.main]\n[databases.app]\npool_size = 5\nmin_pool_size = 5\n");
  CHECK(config.databases.at("app").min_pool_size == 5);
}

TEST_CASE("empty names and values that must be set are rejected", "[config]") {
  CHECK(errors_of(R"(auth_file = ""
[servers.main]
host = ""
[servers.""]
[databases.app]
dbname = ""
)") == std::vector<std::string>{
           "t.toml:1: auth_file: must not be empty",
           "t.toml:3: servers.main.host: must not be empty",
           "t.toml:4: servers.: the name must not be empty",
           "t.toml:6: databases.app.dbname: must not be empty",
       });
}

TEST_CASE("sections that are not tables are errors", "[config]") {
  CHECK(errors_of("auth_type = \"trust\"\nservers = 1\n[databases.app]\n") ==
        std::vector<std::string>{
            "t.toml:2: servers: expected table, got integer",
            "t.toml: servers: at least one [servers.NAME] table is required",
        });
  CHECK(errors_of("auth_type = \"trust\"\n[servers]\nmain = 1\n[databases.app]\n") ==
        std::vector<std::string>{
            "t.toml:3: servers.main: expected table, got integer",
            "t.toml: servers: at least one [servers.NAME] table is required",
        });
}

TEST_CASE("all errors are reported in line order, not just the first", "[config]") {
  CHECK(errors_of(R"(auth_type = "none"
threads = 1000
[servers.main]
port = 0
connect_timeout = 5
[databases.app]
pool_mode = "statement"
bogus = 1
)") == std::vector<std::string>{
           "t.toml:1: auth_type: must be one of trust, md5, scram-sha-256; got \"none\"",
           "t.toml:2: threads: must be between 0 and 256, got 1000",
           "t.toml:4: servers.main.port: must be between 1 and 65535, got 0",
           "t.toml:5: servers.main.connect_timeout: expected a duration string with a unit "
           "such as \"30s\" or \"250ms\", got integer",
           "t.toml:7: databases.app.pool_mode: must be one of session, transaction; got "
           "\"statement\"",
           "t.toml:8: databases.app.bogus: unknown key",
       });
}

TEST_CASE("a TOML syntax error gives its line and a one-line reason", "[config]") {
  const auto [text, line] = GENERATE(table<std::string, int>({
      {"auth_type = \"trust\"\nthreads = \n", 2},
      {"threads = 1\n\nthreads = 2\n", 3},
      {"[servers.main]\n[servers.main]\n", 2},
      {"a = \"unterminated\n", 1},
      {"x = 1\ny = 2\n[section\n", 3},
  }));
  CAPTURE(text);
  const auto parsed = parse_config(text, "t.toml");
  REQUIRE_FALSE(parsed);
  REQUIRE(parsed.error().size() == 1);
  const Diagnostic& d = parsed.error()[0];
  CAPTURE(d.to_string());
  CHECK(d.file == "t.toml");
  CHECK(d.line == line);
  CHECK(d.key == "(syntax)");
  CHECK_FALSE(d.reason.empty());
  CHECK(d.reason.find('\n') == std::string::npos);
  CHECK(d.reason.find("[error]") == std::string::npos);
}

TEST_CASE("a duplicate key's syntax error keeps toml11's explanation", "[config]") {
  const auto parsed = parse_config("threads = 1\nthreads = 2\n", "t.toml");
  REQUIRE_FALSE(parsed);
  CHECK(parsed.error()[0].to_string() ==
        "t.toml:2: (syntax): value (\"threads\") already exists. (value defined twice)");
}

TEST_CASE("a diagnostic prints as FILE:LINE: key: reason, omitting what is unknown", "[config]") {
  CHECK(Diagnostic{"a.toml", 3, "databases.app.pool_size", "too big"}.to_string() ==
        "a.toml:3: databases.app.pool_size: too big");
  CHECK(Diagnostic{"a.toml", 0, "servers", "missing"}.to_string() == "a.toml: servers: missing");
  CHECK(Diagnostic{"a.toml", 0, "", "unreadable"}.to_string() == "a.toml: unreadable");
  CHECK(Diagnostic{"", 0, "", "odd"}.to_string() == "odd");
}

TEST_CASE("diagnostics of a config parsed from a string name <string>", "[config]") {
  const auto parsed = parse_config("bogus = 1\n", "");
  REQUIRE_FALSE(parsed);
  CHECK(parsed.error()[0].to_string() == "<string>:1: bogus: unknown key");
}

TEST_CASE("a missing config file is a diagnostic, not an exception", "[config]") {
  const auto loaded = load_config("no-such-dir/sluice.toml");
  REQUIRE_FALSE(loaded);
  REQUIRE(loaded.error().size() == 1);
  CHECK(loaded.error()[0].to_string() ==
        "no-such-dir/sluice.toml: cannot read the file: No such file or directory");
}

TEST_CASE("the example config parses and sets every key", "[config]") {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/sluice.example.toml";
  const auto loaded = load_config(path);
  if (!loaded) {
    for (const Diagnostic& d : loaded.error()) UNSCOPED_INFO(d.to_string());
  }
  REQUIRE(loaded);
  CHECK(loaded->auth_type == AuthType::ScramSha256);
  CHECK(loaded->auth_file == std::string(SLUICE_SOURCE_DIR) + "/userlist.txt");
  const Server& main = loaded->servers.at("main");
  CHECK(main.host == "127.0.0.1");
  CHECK(main.port == 5432);
  const Database* app = loaded->find_database("app");
  REQUIRE(app != nullptr);
  CHECK(app->server == "main");
  CHECK(app->pool_mode == PoolMode::Session);
  CHECK(loaded->bulkheads.empty());  // the [[bulkheads]] example is commented out

  // Every key of the table appears as an assignment, so the example documents all of them; the
  // bulkhead keys do so in the commented [[bulkheads]] example, checked below.
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> assigned;
  for (std::string line; std::getline(text, line);) {
    const std::size_t eq = line.find(" = ");
    if (!line.empty() && line[0] != '#' && eq != std::string::npos) {
      assigned.push_back(line.substr(0, eq));
    }
  }
  for (const KeyInfo& key : key_table()) {
    if (key.section == Section::Bulkhead) continue;
    CAPTURE(key.name);
    CHECK(std::count(assigned.begin(), assigned.end(), std::string(key.name)) == 1);
  }
}

TEST_CASE("the example's commented [[bulkheads]] entry is valid and shows every bulkhead key",
          "[config]") {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/sluice.example.toml";
  std::ifstream in(path);
  std::stringstream original;
  original << in.rdbuf();
  // Remove "# " from the lines of the block that starts at "# [[bulkheads]]".
  std::string uncommented;
  std::vector<std::string> block;
  bool inside = false;
  for (std::string line; std::getline(original, line);) {
    if (line == "# [[bulkheads]]") inside = true;
    if (inside && !line.starts_with("# ")) inside = false;
    if (inside) {
      line.erase(0, 2);
      block.push_back(line);
    }
    uncommented += line + "\n";
  }
  REQUIRE(block.size() > 1);
  const auto parsed = parse_config(uncommented, path);
  if (!parsed) {
    for (const Diagnostic& d : parsed.error()) UNSCOPED_INFO(d.to_string());
  }
  REQUIRE(parsed);
  REQUIRE(parsed->bulkheads.size() == 1);
  const Bulkhead& b = parsed->bulkheads[0];
  CHECK(b.name == "critical");
  CHECK(b.server == "main");
  CHECK(b.match.application_name == std::vector<std::string>{"checkout*", "login"});
  CHECK(b.match.client_cidr == std::vector<std::string>{"10.0.0.0/8"});

  std::vector<std::string> assigned;
  std::string match_line;
  for (const std::string& line : block) {
    const std::size_t eq = line.find(" = ");
    if (line.empty() || line[0] == '#' || eq == std::string::npos) continue;
    assigned.push_back(line.substr(0, eq));
    if (line.starts_with("match = {")) match_line = line;
  }
  for (const KeyInfo& key : key_table()) {
    if (key.section != Section::Bulkhead) continue;
    CAPTURE(key.name);
    const std::string_view name = key.name;
    if (name.starts_with("match.")) {
      CHECK(match_line.find(" " + std::string(name.substr(6)) + " = ") != std::string::npos);
    } else {
      CHECK(std::count(assigned.begin(), assigned.end(), std::string(name)) == 1);
    }
  }
}

namespace sluice::config {
namespace {

TEST_CASE("a file that is not UTF-8 is refused before the TOML parser sees it", "[config]") {
  // '\xff' as a quoted key: toml11 3.7 read past its buffer on it (tests/fuzz/config_fuzz).
  for (const std::string& text : {std::string("'\xff'"), std::string("a = 1\nb = \"\xc3\"\n"),
                                  std::string("x = \"\xed\xa0\x80\""),      // a surrogate
                                  std::string("x = \"\xf4\x90\x80\x80\""),  // above U+10FFFF
                                  std::string("x = \"\xc0\xaf\"")}) {       // overlong
    CAPTURE(text);
    const auto parsed = parse_config(text, "t.toml");
    REQUIRE_FALSE(parsed);
    REQUIRE(parsed.error().size() == 1);
    CHECK(parsed.error()[0].reason.find("not valid UTF-8") != std::string::npos);
  }
  const auto second_line = parse_config("a = 1\nb = \"\xc3\"\n", "t.toml");
  REQUIRE_FALSE(second_line);
  CHECK(second_line.error()[0].line == 2);
}

}  // namespace
}  // namespace sluice::config
