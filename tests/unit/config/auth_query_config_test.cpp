// auth_query's connections come out of each server's max_connections (issue 12, item 6):
// Config::backend_capacity and the checks that keep at least one backend slot.
#include "tests/unit/config/parse_helpers.hpp"

#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sluice::config;
using namespace sluice::config::test;

namespace {

// Lines 1-6.
std::string config_with(const std::string& auth_user, int max_connections) {
  return "auth_type = \"trust\"\nauth_user = \"" + auth_user +
         "\"\nauth_query_pool_size = 3\n[servers.main]\nmax_connections = " +
         std::to_string(max_connections) + "\n[databases.app]\n";
}

}  // namespace

TEST_CASE("while auth_user is set, auth_query_pool_size slots of each server are its", "[config]") {
  const Config on = parse_ok(config_with("sluice_auth", 10));
  CHECK(on.auth_query_pool_size == 3);
  CHECK(on.auth_query_peer_rate == 20);
  CHECK(on.backend_capacity(on.servers.at("main")) == 7);
  const Config off = parse_ok(config_with("", 10));
  CHECK(off.backend_capacity(off.servers.at("main")) == 10);
  // Without auth_user the pool size does not matter, even if it exceeds max_connections.
  CHECK(parse_ok(config_with("", 2)).backend_capacity(Server{.max_connections = 2}) == 2);
}

TEST_CASE("max_connections must leave backends a slot beside auth_user's", "[config]") {
  CHECK(errors_of(config_with("sluice_auth", 3)) ==
        std::vector<std::string>{"t.toml:5: servers.main.max_connections: must exceed "
                                 "auth_query_pool_size (3), whose connections for auth_user it "
                                 "includes"});
  CHECK(parse_ok(config_with("sluice_auth", 4)).backend_capacity(Server{.max_connections = 4}) ==
        1);
}

TEST_CASE("bulkheads reserve at most the slots auth_user leaves", "[config]") {
  CHECK(errors_of(config_with("sluice_auth", 10) + "[[bulkheads]]\nname = \"a\"\nreserved = 8\n") ==
        std::vector<std::string>{
            "t.toml:9: bulkheads.a.reserved: the bulkheads of server \"main\" reserve 8 slots up "
            "to here, more than its max_connections (7 left of 10 after auth_query_pool_size)"});
  parse_ok(config_with("sluice_auth", 10) + "[[bulkheads]]\nname = \"a\"\nreserved = 7\n");
}
