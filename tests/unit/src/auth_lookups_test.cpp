// AuthLookups on a fake clock, no sockets: the order of the decisions (cache, coalescing, the
// peer's rate, the pool) and which of them cost the peer a token.
#include "src/auth_lookups.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace {

using namespace std::chrono_literals;
using sluice::AuthLookups;
using sluice::FoundSecret;
using sluice::test::FakeClock;
using Kind = AuthLookups::Decision::Kind;
namespace asio = sluice::asio;

// One lookup a second per peer, bursts of 2; two connections; cached for 30 s.
const AuthLookups::Settings kSettings{.cache_ttl = 30s,
                                      .peer_rate = {.per_second = 1, .burst = 2},
                                      .pool = {.max_connections = 2, .idle_timeout = 60s}};

AuthLookups::Question question(const std::string& user, const std::string& db = "app") {
  return {.server = "main", .group = db, .key = db + "/" + user};
}

const std::optional<asio::ip::address> kPeer = asio::ip::make_address("192.0.2.7");

AuthLookups::Decision begin(AuthLookups& lookups, const FakeClock& clock, const std::string& user,
                            const std::optional<asio::ip::address>& peer = kPeer) {
  return lookups.begin(question(user), peer, kSettings, clock.now(), clock.in(10s));
}

}  // namespace

TEST_CASE("an answered name comes from the cache, at no cost to the peer's rate", "[auth_query]") {
  FakeClock clock;
  AuthLookups lookups;
  const auto first = begin(lookups, clock, "carol");
  REQUIRE(first.kind == Kind::Granted);
  lookups.finish(question("carol"), first.flight, FoundSecret("md5x"), true, kSettings,
                 clock.now());
  for (int i = 0; i < 20; ++i) {
    const auto again = begin(lookups, clock, "carol");
    REQUIRE(again.kind == Kind::Cached);
    CHECK(again.cached == FoundSecret("md5x"));
  }
  // An absence is cached too.
  const auto nobody = begin(lookups, clock, "nobody");
  REQUIRE(nobody.kind == Kind::Granted);
  lookups.finish(question("nobody"), nobody.flight, FoundSecret(), true, kSettings, clock.now());
  CHECK(begin(lookups, clock, "nobody").kind == Kind::Cached);
  // Two lookups were started: the burst is spent, the cache still answers.
  CHECK(begin(lookups, clock, "dave").kind == Kind::RateLimited);
  CHECK(begin(lookups, clock, "carol").kind == Kind::Cached);
  clock.advance(1s);
  CHECK(begin(lookups, clock, "dave").kind == Kind::Granted);
}

TEST_CASE("a failed lookup is not cached: the next login asks again", "[auth_query]") {
  FakeClock clock;
  AuthLookups lookups;
  const auto first = begin(lookups, clock, "carol");
  REQUIRE(first.kind == Kind::Granted);
  lookups.finish(question("carol"), first.flight, std::nullopt, true, kSettings, clock.now());
  CHECK(begin(lookups, clock, "carol").kind == Kind::Granted);
}

TEST_CASE("logins of a name being looked up join it, at no cost to the peer's rate",
          "[auth_query]") {
  FakeClock clock;
  AuthLookups lookups;
  const auto first = begin(lookups, clock, "carol");
  REQUIRE(first.kind == Kind::Granted);
  for (int i = 0; i < 50; ++i) {
    const auto joined = begin(lookups, clock, "carol");
    REQUIRE(joined.kind == Kind::Joined);
    CHECK(joined.flight == first.flight);
  }
  CHECK(lookups.counts("main").flights == 1);
  CHECK(begin(lookups, clock, "dave").kind == Kind::Granted);  // the burst's second token
  CHECK(begin(lookups, clock, "erin").kind == Kind::RateLimited);
}

TEST_CASE("the rate is per peer: an IPv4 address, an IPv6 /64, all Unix-socket clients",
          "[auth_query]") {
  FakeClock clock;
  AuthLookups lookups;
  const auto v6a = std::optional(asio::ip::make_address("2001:db8:1:2::a"));
  const auto v6b = std::optional(asio::ip::make_address("2001:db8:1:2:ffff::b"));  // same /64
  const auto v6c = std::optional(asio::ip::make_address("2001:db8:1:3::a"));       // another
  const std::optional<asio::ip::address> local;
  CHECK(begin(lookups, clock, "a1", v6a).kind != Kind::RateLimited);
  CHECK(begin(lookups, clock, "a2", v6b).kind != Kind::RateLimited);
  CHECK(begin(lookups, clock, "a3", v6a).kind == Kind::RateLimited);
  CHECK(begin(lookups, clock, "c1", v6c).kind != Kind::RateLimited);
  CHECK(begin(lookups, clock, "l1", local).kind != Kind::RateLimited);
  CHECK(begin(lookups, clock, "l2", local).kind != Kind::RateLimited);
  CHECK(begin(lookups, clock, "l3", local).kind == Kind::RateLimited);
  CHECK(begin(lookups, clock, "p1").kind != Kind::RateLimited);
}

TEST_CASE("with no rate every lookup may start; the pool still bounds the connections",
          "[auth_query]") {
  FakeClock clock;
  AuthLookups lookups;
  AuthLookups::Settings unlimited = kSettings;
  unlimited.peer_rate = {};
  int granted = 0;
  int queued = 0;
  for (int i = 0; i < 200; ++i) {
    const auto d = lookups.begin(question("u" + std::to_string(i)), kPeer, unlimited, clock.now(),
                                 clock.in(10s));
    REQUIRE(d.kind != Kind::RateLimited);
    (d.kind == Kind::Granted ? granted : queued)++;
  }
  CHECK(granted == 2);
  CHECK(queued == 198);
  CHECK(lookups.counts("main").connections() == 2);
  // A reload raising auth_query_pool_size grants waiters at the next decision.
  unlimited.pool.max_connections = 4;
  const auto d = lookups.begin(question("u0"), kPeer, unlimited, clock.now(), clock.in(10s));
  CHECK(d.kind == Kind::Joined);
  CHECK(d.served.granted.size() == 2);
  CHECK(lookups.counts("main").connections() == 4);
}
