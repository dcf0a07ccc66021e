#include "config/listen.hpp"

#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using sluice::config::ListenAddress;
using sluice::config::parse_config;
using sluice::config::parse_listen;

namespace {

std::vector<ListenAddress> parse_ok(const std::vector<std::string>& entries) {
  auto parsed = parse_listen(entries);
  if (!parsed) FAIL(parsed.error());
  return *parsed;
}

}  // namespace

TEST_CASE("TCP listen entries give host and port", "[config]") {
  const auto [entry, host, port] = GENERATE(table<std::string, std::string, int>({
      {"127.0.0.1:6432", "127.0.0.1", 6432},
      {"0.0.0.0:1", "0.0.0.0", 1},
      {"*:65535", "*", 65535},
      {"localhost:5000", "localhost", 5000},
      {"[::1]:6432", "::1", 6432},
      {"[::]:7000", "::", 7000},
      {"[fe80::1%eth0]:6432", "fe80::1%eth0", 6432},
  }));
  CAPTURE(entry);
  const auto addresses = parse_ok({entry});
  REQUIRE(addresses.size() == 1);
  CHECK_FALSE(addresses[0].is_unix);
  CHECK(addresses[0].host == host);
  CHECK(addresses[0].port == port);
  CHECK(addresses[0].to_string() == entry);
}

TEST_CASE("a Unix socket takes the port of the first TCP entry", "[config]") {
  const auto addresses = parse_ok({"unix:/run/sluice", "127.0.0.1:7000", "[::1]:7001"});
  REQUIRE(addresses.size() == 3);
  CHECK(addresses[0].is_unix);
  CHECK(addresses[0].unix_dir == "/run/sluice");
  CHECK(addresses[0].port == 7000);
  CHECK(addresses[0].host.empty());
  CHECK(addresses[0].to_string() == "unix:/run/sluice");
  CHECK(addresses[2].port == 7001);
}

TEST_CASE("a Unix socket without any TCP entry uses port 6432", "[config]") {
  const auto addresses = parse_ok({"unix:sockets"});
  REQUIRE(addresses.size() == 1);
  CHECK(addresses[0].is_unix);
  CHECK(addresses[0].unix_dir == "sockets");
  CHECK(addresses[0].port == 6432);
}

TEST_CASE("malformed listen entries are rejected with the entry named", "[config]") {
  const auto [entry, reason] = GENERATE(table<std::string, std::string>({
      {"localhost", "expected HOST:PORT, [IPv6]:PORT or unix:DIR"},
      {":6432", "empty host (use \"*\" for all)"},
      {"::1:6432", "an IPv6 address needs brackets, e.g. \"[::1]:6432\""},
      {"[::1]6432", "expected ':PORT' after ']'"},
      {"[::1]:", "expected ':PORT' after ']'"},
      {"[::1", "missing ']'"},
      {"[]:6432", "empty address in brackets"},
      {"host:0", "port must be a number from 1 to 65535"},
      {"host:65536", "port must be a number from 1 to 65535"},
      {"host:123456", "port must be a number from 1 to 65535"},
      {"host:-1", "port must be a number from 1 to 65535"},
      {"host:+80", "port must be a number from 1 to 65535"},
      {"host:http", "port must be a number from 1 to 65535"},
      {"host:", "port must be a number from 1 to 65535"},
      {"unix:", "empty directory"},
  }));
  CAPTURE(entry);
  const auto parsed = parse_listen(std::vector<std::string>{entry});
  REQUIRE_FALSE(parsed);
  CHECK(parsed.error() == "invalid listen entry \"" + entry + "\": " + reason);
}

TEST_CASE("an empty listen list and duplicate entries are rejected", "[config]") {
  CHECK(parse_listen(std::vector<std::string>{}).error() == "must list at least one address");
  CHECK(parse_listen(std::vector<std::string>{"*:1", "unix:/x", "*:1"}).error() ==
        "\"*:1\" is listed twice");
}

TEST_CASE("a bad listen entry in a config file is reported at the key's line", "[config]") {
  const auto parsed = parse_config(R"(auth_type = "trust"
listen = ["127.0.0.1:6432",
          "[::1]"]
[servers.main]
[databases.app]
)",
                                   "t.toml");
  REQUIRE_FALSE(parsed);
  REQUIRE(parsed.error().size() == 1);
  CHECK(parsed.error()[0].to_string() ==
        "t.toml:2: listen: invalid listen entry \"[::1]\": expected ':PORT' after ']'");
}

TEST_CASE("listen in a config file accepts IPv6 and Unix entries", "[config]") {
  const auto parsed = parse_config(R"(auth_type = "trust"
listen = ["[::1]:7432", "unix:/run/sluice"]
[servers.main]
[databases.app]
)",
                                   "t.toml");
  REQUIRE(parsed);
  REQUIRE(parsed->listen.size() == 2);
  CHECK(parsed->listen[0].host == "::1");
  CHECK(parsed->listen[1].is_unix);
  CHECK(parsed->listen[1].port == 7432);
}
