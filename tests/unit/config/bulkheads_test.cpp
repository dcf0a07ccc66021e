// [[bulkheads]], metrics_listen and statement_timeout_grace: parsing, defaults and validation.
#include "tests/unit/config/parse_helpers.hpp"

#include "config/config.hpp"
#include "config/keys.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sluice::config;
using namespace sluice::config::test;
using namespace std::chrono_literals;

namespace {

// Lines 1-4; bulkheads start on line 5.
constexpr const char* kOneServer = R"(auth_type = "trust"
[servers.main]
max_connections = 30
[databases.app]
)";

// Lines 1-6; bulkheads start on line 7.
constexpr const char* kTwoServers = R"(auth_type = "trust"
[servers.main]
max_connections = 30
[servers.replica]
[databases.app]
server = "main"
)";

}  // namespace

TEST_CASE("every bulkhead key is stored", "[config][bulkheads]") {
  const Config config = parse_ok(std::string(kTwoServers) + R"([[bulkheads]]
name = "critical"
server = "main"
priority = 3
reserved = 8
max = 25
queue_depth = 64
max_wait = "250ms"
statement_timeout = "2s"
idle_transaction_timeout = "5s"
max_clients = 2000
new_connections_per_second = 100
new_connections_burst = 20
new_transactions_per_second = 5000
new_transactions_burst = 0
adaptive_lifo = false
lifo_target = "50ms"
match = { application_name = ["checkout*", "login"], user = ["web"], database = ["app"], client_cidr = ["10.0.0.0/8", "::1"] }

[[bulkheads]]
name = "batch"
server = "replica"
[bulkheads.match]
user = ["etl*"]
)");
  REQUIRE(config.bulkheads.size() == 2);
  const Bulkhead& b = config.bulkheads[0];
  CHECK(b.name == "critical");
  CHECK(b.server == "main");
  CHECK(b.line == 7);
  CHECK(b.priority == 3);
  CHECK(b.reserved == 8);
  CHECK(b.max == 25u);
  CHECK(b.queue_depth == 64);
  CHECK(b.max_wait == 250ms);
  CHECK(b.statement_timeout == 2s);
  CHECK(b.idle_transaction_timeout == 5s);
  CHECK(b.max_clients == 2000);
  CHECK(b.new_connections_per_second == 100);
  CHECK(b.new_connections_burst == 20);
  CHECK(b.new_transactions_per_second == 5000);
  CHECK(b.new_transactions_burst == 0);  // the rate itself; left 0 for the runtime
  CHECK_FALSE(b.adaptive_lifo);
  CHECK(b.lifo_target == 50ms);
  CHECK(b.match.application_name == std::vector<std::string>{"checkout*", "login"});
  CHECK(b.match.user == std::vector<std::string>{"web"});
  CHECK(b.match.database == std::vector<std::string>{"app"});
  CHECK(b.match.client_cidr == std::vector<std::string>{"10.0.0.0/8", "::1"});

  const Bulkhead& batch = config.bulkheads[1];
  CHECK(batch.name == "batch");
  CHECK(batch.server == "replica");
  CHECK(batch.line == 26);
  CHECK(batch.match.user == std::vector<std::string>{"etl*"});  // from [bulkheads.match]
  CHECK(batch.max == 100u);                                     // replica's max_connections
}

TEST_CASE("an absent bulkhead key gets its default; max becomes the server's max_connections",
          "[config][bulkheads]") {
  const Config config = parse_ok(std::string(kOneServer) + "[[bulkheads]]\nname = \"default\"\n");
  REQUIRE(config.bulkheads.size() == 1);
  const Bulkhead& b = config.bulkheads[0];
  CHECK(b.name == "default");  // configures the class of unclassified clients
  CHECK(b.server == "main");   // the only server
  CHECK(b.line == 5);
  CHECK(b.priority == 0);
  CHECK(b.reserved == 0);
  CHECK(b.max == 30u);
  CHECK(b.queue_depth == 128);
  CHECK(b.max_wait == 5s);
  CHECK(b.statement_timeout == 0ms);
  CHECK(b.idle_transaction_timeout == 0ms);
  CHECK(b.max_clients == 0);
  CHECK(b.new_connections_per_second == 0);
  CHECK(b.new_connections_burst == 0);
  CHECK(b.new_transactions_per_second == 0);
  CHECK(b.new_transactions_burst == 0);
  CHECK(b.adaptive_lifo);
  CHECK(b.lifo_target == 0ms);
  CHECK(b.match.empty());
}

TEST_CASE("no bulkheads, an empty array and the inline array form are all accepted",
          "[config][bulkheads]") {
  CHECK(parse_ok(kOneServer).bulkheads.empty());
  CHECK(parse_ok("bulkheads = []\n" + std::string(kOneServer)).bulkheads.empty());
  const Config config = parse_ok(
      "bulkheads = [{name = \"a\", reserved = 2},\n"
      "             {name = \"b\", match = {user = [\"x\"]}}]\n" +
      std::string(kOneServer));
  REQUIRE(config.bulkheads.size() == 2);
  CHECK(config.bulkheads[0].name == "a");
  CHECK(config.bulkheads[0].reserved == 2);
  CHECK(config.bulkheads[0].line == 1);
  CHECK(config.bulkheads[1].name == "b");
  CHECK(config.bulkheads[1].match.user == std::vector<std::string>{"x"});
  CHECK(config.bulkheads[1].line == 2);
}

TEST_CASE("bulkheads must be an array of tables", "[config][bulkheads]") {
  CHECK(errors_of("bulkheads = 1\n" + std::string(kOneServer)) ==
        std::vector<std::string>{
            "t.toml:1: bulkheads: expected array of tables ([[bulkheads]]), got integer"});
  CHECK(errors_of(std::string(kOneServer) + "[bulkheads]\nname = \"a\"\n") ==
        std::vector<std::string>{
            "t.toml:5: bulkheads: expected array of tables ([[bulkheads]]), got table"});
  CHECK(errors_of("bulkheads = [1, {name = \"a\"}, \"b\"]\n" + std::string(kOneServer)) ==
        std::vector<std::string>{
            "t.toml:1: bulkheads[0]: expected table, got integer",
            "t.toml:1: bulkheads[2]: expected table, got string",
        });
}

TEST_CASE("a bulkhead's name is required, non-empty and made of safe characters",
          "[config][bulkheads]") {
  CHECK(errors_of(std::string(kOneServer) + R"([[bulkheads]]
reserved = 1
[[bulkheads]]
name = ""
[[bulkheads]]
name = "my class"
max = 0
[[bulkheads]]
name = 'say "hi"'
[[bulkheads]]
name = 7
[[bulkheads]]
name = "ok-1.2_x"
)") == std::vector<std::string>{
           "t.toml:5: bulkheads[0].name: required",
           "t.toml:8: bulkheads[1].name: must not be empty",
           "t.toml:10: bulkheads[2].name: invalid name \"my class\": only letters, digits, '_', "
           "'.' and '-' are allowed",
           "t.toml:11: bulkheads[2].max: must be between 1 and 100000, got 0",
           "t.toml:13: bulkheads[3].name: invalid name \"say \\\"hi\\\"\": only letters, digits, "
           "'_', '.' and '-' are allowed",
           "t.toml:15: bulkheads[4].name: expected string, got integer",
       });
}

TEST_CASE("bulkhead names are unique per server; two servers may share a name",
          "[config][bulkheads]") {
  CHECK(errors_of(std::string(kTwoServers) + R"([[bulkheads]]
name = "batch"
server = "main"
[[bulkheads]]
name = "batch"
server = "replica"
[[bulkheads]]
server = "main"
name = "batch"
)") == std::vector<std::string>{
           "t.toml:15: bulkheads.batch.name: \"batch\" is defined twice for server \"main\" (first "
           "at line 7)"});
  // A bulkhead without server takes the only one, and then collides with one that names it.
  CHECK(errors_of(std::string(kOneServer) + R"([[bulkheads]]
name = "x"
[[bulkheads]]
name = "x"
server = "main"
)") == std::vector<std::string>{
           "t.toml:8: bulkheads.x.name: \"x\" is defined twice for server \"main\" (first at line "
           "5)"});
  const Config config = parse_ok(std::string(kTwoServers) + R"([[bulkheads]]
name = "batch"
server = "main"
[[bulkheads]]
name = "batch"
server = "replica"
)");
  CHECK(config.bulkheads.size() == 2);
}

TEST_CASE("a bulkhead's server must exist, and be named when there are several",
          "[config][bulkheads]") {
  CHECK(errors_of(std::string(kTwoServers) + R"([[bulkheads]]
name = "a"
[[bulkheads]]
name = "b"
server = "mian"
[[bulkheads]]
name = "c"
server = ""
)") == std::vector<std::string>{
           "t.toml:7: bulkheads.a.server: required when more than one server is defined",
           "t.toml:11: bulkheads.b.server: unknown server \"mian\" (defined: main, replica)",
           "t.toml:14: bulkheads.c.server: must not be empty",
       });
}

TEST_CASE("reserved <= max <= the server's max_connections", "[config][bulkheads]") {
  CHECK(errors_of(std::string(kOneServer) + R"([[bulkheads]]
name = "a"
max = 31
[[bulkheads]]
name = "b"
reserved = 6
max = 5
[[bulkheads]]
name = "c"
reserved = 31
)") == std::vector<std::string>{
           "t.toml:7: bulkheads.a.max: must not exceed the max_connections of server \"main\" (30)",
           "t.toml:10: bulkheads.b.reserved: must not exceed max (5)",
           "t.toml:14: bulkheads.c.reserved: must not exceed max, which defaults to the "
           "max_connections of server \"main\" (30)",
       });
  const Config config =
      parse_ok(std::string(kOneServer) + "[[bulkheads]]\nname = \"a\"\nreserved = 30\nmax = 30\n");
  CHECK(config.bulkheads[0].reserved == 30);
  CHECK(config.bulkheads[0].max == 30u);
}

TEST_CASE("the reserved slots of a server's bulkheads add up to at most its max_connections",
          "[config][bulkheads]") {
  CHECK(errors_of(std::string(kTwoServers) + R"([[bulkheads]]
name = "a"
server = "main"
reserved = 20
[[bulkheads]]
name = "b"
server = "replica"
reserved = 20
[[bulkheads]]
name = "c"
server = "main"
reserved = 11
[[bulkheads]]
name = "d"
server = "main"
reserved = 5
)") == std::vector<std::string>{
           "t.toml:18: bulkheads.c.reserved: the bulkheads of server \"main\" reserve 31 slots up "
           "to here, more than its max_connections (30)"});
  const Config config = parse_ok(std::string(kOneServer) + R"([[bulkheads]]
name = "a"
reserved = 20
[[bulkheads]]
name = "b"
reserved = 10
)");
  CHECK(config.bulkheads.size() == 2);
}

TEST_CASE("max_wait must be positive", "[config][bulkheads]") {
  CHECK(errors_of(std::string(kOneServer) + "[[bulkheads]]\nname = \"a\"\nmax_wait = \"0\"\n") ==
        std::vector<std::string>{
            "t.toml:7: bulkheads.a.max_wait: must be between 1ms and 3650d, got \"0\""});
}

TEST_CASE("a burst needs its rate; a burst of 0 means the rate", "[config][bulkheads]") {
  CHECK(errors_of(std::string(kOneServer) + R"([[bulkheads]]
name = "a"
new_connections_burst = 5
new_transactions_per_second = 0
new_transactions_burst = 1
[[bulkheads]]
name = "b"
new_connections_per_second = -1
new_connections_burst = 5
)") == std::vector<std::string>{
           "t.toml:7: bulkheads.a.new_connections_burst: needs new_connections_per_second (a "
           "burst without a rate limits nothing)",
           "t.toml:9: bulkheads.a.new_transactions_burst: needs new_transactions_per_second (a "
           "burst without a rate limits nothing)",
           // The rejected rate is reported, not the burst that relies on it.
           "t.toml:12: bulkheads.b.new_connections_per_second: must be between 0 and 1000000, "
           "got -1",
       });
  const Config config = parse_ok(std::string(kOneServer) +
                                 "[[bulkheads]]\nname = \"a\"\nnew_connections_per_second = 10\n");
  CHECK(config.bulkheads[0].new_connections_per_second == 10);
  CHECK(config.bulkheads[0].new_connections_burst == 0);
}

TEST_CASE("match name patterns are non-empty with at most one '*', at the end",
          "[config][bulkheads]") {
  const auto [key, pattern, reason] = GENERATE(table<std::string, std::string, std::string>({
      {"application_name", "a*b",
       "invalid pattern \"a*b\": a single '*' is allowed, and only at "
       "the end"},
      {"user", "**", "invalid pattern \"**\": a single '*' is allowed, and only at the end"},
      {"database", "*x", "invalid pattern \"*x\": a single '*' is allowed, and only at the end"},
      {"user", "", "a pattern must not be empty"},
  }));
  CAPTURE(key, pattern);
  CHECK(errors_of(std::string(kOneServer) + "[[bulkheads]]\nname = \"a\"\nmatch = { " + key +
                  " = [\"ok\", \"" + pattern + "\"] }\n") ==
        std::vector<std::string>{"t.toml:7: bulkheads.a.match." + key + ": " + reason});
  const Config config = parse_ok(
      std::string(kOneServer) +
      "[[bulkheads]]\nname = \"a\"\nmatch = { application_name = [\"*\", \"x*\", \"psql\"] }\n");
  CHECK(config.bulkheads[0].match.application_name == std::vector<std::string>{"*", "x*", "psql"});
}

TEST_CASE("match client_cidr entries must be addresses or ranges", "[config][bulkheads]") {
  const std::string entry = GENERATE(as<std::string>{}, "10.0.0.0/33", "10.0.0/8", "::1/129",
                                     "host.example", "10.0.0.0/", "fe80::1%eth0", " 10.0.0.1", "");
  CAPTURE(entry);
  CHECK(errors_of(std::string(kOneServer) + "[[bulkheads]]\nname = \"a\"\nmatch.client_cidr = [\"" +
                  entry + "\"]\n") ==
        std::vector<std::string>{
            "t.toml:7: bulkheads.a.match.client_cidr: invalid address range \"" + entry +
            "\": expected an IPv4 or IPv6 address, optionally with /BITS (at most 32 or 128)"});
}

TEST_CASE("match must be a table of known lists", "[config][bulkheads]") {
  CHECK(errors_of(std::string(kOneServer) + R"([[bulkheads]]
name = "a"
match = ["user"]
[[bulkheads]]
name = "b"
match = { users = ["x"], user = "x" }
[[bulkheads]]
name = "c"
"match.user" = ["x"]
[bulkheads.match]
client_cidr = ["10.0.0.0/8"]
application = ["x"]
)") == std::vector<std::string>{
           "t.toml:7: bulkheads.a.match: expected table, got array",
           "t.toml:10: bulkheads.b.match.user: expected array of strings, got string",
           "t.toml:10: bulkheads.b.match.users: unknown key",
           "t.toml:13: bulkheads.c.\"match.user\": unknown key",
           "t.toml:16: bulkheads.c.match.application: unknown key",
       });
}

TEST_CASE("unknown keys in a bulkhead are errors; top-level keys there get a hint",
          "[config][bulkheads]") {
  CHECK(errors_of(std::string(kOneServer) + R"([[bulkheads]]
name = "a"
reserve = 3
threads = 4
pool_size = 3
)") == std::vector<std::string>{
           "t.toml:7: bulkheads.a.reserve: unknown key",
           "t.toml:8: bulkheads.a.threads: unknown key (top-level keys must come before the "
           "first [section])",
           "t.toml:9: bulkheads.a.pool_size: unknown key",
       });
  // [[servers.main.bulkheads]] is not where bulkheads go.
  CHECK(errors_of("auth_type = \"trust\"\n[servers.main]\n[[servers.main.bulkheads]]\n"
                  "name = \"a\"\n[databases.app]\n") ==
        std::vector<std::string>{"t.toml:3: servers.main.bulkheads: unknown key"});
}

TEST_CASE("bulkhead errors come in line order with the rest", "[config][bulkheads]") {
  CHECK(errors_of(R"(auth_type = "trust"
[servers.main]
max_connections = 10
port = 0
[databases.app]
[[bulkheads]]
name = "a"
reserved = 11
queue_depth = -1
adaptive_lifo = "yes"
[[bulkheads]]
name = "a"
lifo_target = 5
)") == std::vector<std::string>{
           "t.toml:4: servers.main.port: must be between 1 and 65535, got 0",
           "t.toml:8: bulkheads.a.reserved: must not exceed max, which defaults to the "
           "max_connections of server \"main\" (10)",
           "t.toml:9: bulkheads.a.queue_depth: must be between 0 and 1000000, got -1",
           "t.toml:10: bulkheads.a.adaptive_lifo: expected bool, got string",
           "t.toml:12: bulkheads.a.name: \"a\" is defined twice for server \"main\" (first at "
           "line 6)",
           "t.toml:13: bulkheads.a.lifo_target: expected a duration string with a unit such as "
           "\"30s\" or \"250ms\", got integer",
       });
}

TEST_CASE("metrics_listen is off by default and takes one TCP address", "[config]") {
  CHECK_FALSE(parse_ok(kOneServer).metrics_listen.has_value());
  CHECK_FALSE(parse_ok("metrics_listen = \"\"\n" + std::string(kOneServer)).metrics_listen);
  const auto [text, host, port] = GENERATE(table<std::string, std::string, int>({
      {"127.0.0.1:9187", "127.0.0.1", 9187},
      {"[::1]:9187", "::1", 9187},
      {"*:80", "*", 80},
      {"metrics.local:9000", "metrics.local", 9000},
  }));
  CAPTURE(text);
  const Config config = parse_ok("metrics_listen = \"" + text + "\"\n" + kOneServer);
  REQUIRE(config.metrics_listen);
  CHECK_FALSE(config.metrics_listen->is_unix);
  CHECK(config.metrics_listen->host == host);
  CHECK(config.metrics_listen->port == port);
  CHECK(config.metrics_listen->to_string() == text);
}

TEST_CASE("metrics_listen rejects Unix sockets, malformed addresses and a client address",
          "[config]") {
  const auto [text, reason] = GENERATE(table<std::string, std::string>({
      {"unix:/run/sluice",
       "invalid address \"unix:/run/sluice\": a Unix socket is not supported "
       "here; use HOST:PORT, [IPv6]:PORT or *:PORT"},
      {"localhost", "invalid address \"localhost\": expected HOST:PORT, [IPv6]:PORT or *:PORT"},
      {"host:0", "invalid address \"host:0\": port must be a number from 1 to 65535"},
      {"::1:9187",
       "invalid address \"::1:9187\": an IPv6 address needs brackets, e.g. "
       "\"[::1]:6432\""},
      {"127.0.0.1:6432", "\"127.0.0.1:6432\" overlaps the listen address \"127.0.0.1:6432\""},
      {"*:6432", "\"*:6432\" overlaps the listen address \"127.0.0.1:6432\""},
  }));
  CAPTURE(text);
  CHECK(errors_of("auth_type = \"trust\"\nmetrics_listen = \"" + text +
                  "\"\n[servers.main]\n[databases.app]\n") ==
        std::vector<std::string>{"t.toml:2: metrics_listen: " + reason});
  CHECK(errors_of("auth_type = \"trust\"\nmetrics_listen = [\"*:1\"]\n[servers.main]\n"
                  "[databases.app]\n") ==
        std::vector<std::string>{"t.toml:2: metrics_listen: expected string, got array"});
}

TEST_CASE("statement_timeout_grace defaults to 1s and may be 0", "[config]") {
  CHECK(parse_ok(kOneServer).statement_timeout_grace == 1s);
  CHECK(parse_ok("statement_timeout_grace = \"0\"\n" + std::string(kOneServer))
            .statement_timeout_grace == 0ms);
  CHECK(parse_ok("statement_timeout_grace = \"250ms\"\n" + std::string(kOneServer))
            .statement_timeout_grace == 250ms);
  CHECK(errors_of("statement_timeout_grace = \"-1s\"\n" + std::string(kOneServer))
            .at(0)
            .starts_with("t.toml:1: statement_timeout_grace: invalid duration \"-1s\""));
}
