// LoginGate: per peer, a bound on connections still logging in and a rate of new ones, on a fake
// clock, with check_invariants() after each step; the table of peers stays bounded.
#include "pools/login_gate.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <cstdint>

namespace {

using sluice::pools::LoginGate;
using sluice::pools::LoginLimits;
using sluice::pools::LoginVerdict;
using sluice::pools::PeerKey;
using sluice::pools::RateLimit;
using sluice::test::FakeClock;
using std::chrono::milliseconds;

PeerKey peer(std::uint32_t n) {
  PeerKey k{};
  k[12] = static_cast<unsigned char>(n >> 24);
  k[13] = static_cast<unsigned char>(n >> 16);
  k[14] = static_cast<unsigned char>(n >> 8);
  k[15] = static_cast<unsigned char>(n);
  return k;
}

void check(const LoginGate& g) {
  const auto problem = g.check_invariants();
  INFO(problem.value_or(""));
  REQUIRE_FALSE(problem);
}

}  // namespace

TEST_CASE("a peer may have max_per_peer logins in progress; each end makes room for one",
          "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.max_per_peer = 3});
  for (int i = 0; i < 3; ++i) CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::TooMany);
  CHECK(g.in_progress(peer(1)) == 3);                              // a refusal counts nothing
  CHECK(g.begin(peer(2), clock.now()) == LoginVerdict::Admitted);  // another peer has its own
  check(g);
  CHECK(g.end(peer(1), clock.now()));
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::TooMany);
  check(g);
}

TEST_CASE("without a rate limit a peer's entry goes when its last login ends", "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.max_per_peer = 2});
  g.begin(peer(1), clock.now());
  g.begin(peer(1), clock.now());
  CHECK(g.peers() == 1);
  CHECK(g.end(peer(1), clock.now()));
  CHECK(g.peers() == 1);
  CHECK(g.end(peer(1), clock.now()));
  CHECK(g.peers() == 0);
  CHECK_FALSE(g.end(peer(1), clock.now()));  // a second end of the same login changes nothing
  CHECK_FALSE(g.end(peer(7), clock.now()));  // nor one of a peer never seen
  check(g);
}

TEST_CASE("new connections of a peer are limited by its bucket, whether or not they ended",
          "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.rate = RateLimit{.per_second = 10, .burst = 3}});
  for (int i = 0; i < 3; ++i) {
    REQUIRE(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
    REQUIRE(g.end(peer(1), clock.now()));  // logging in one at a time does not help
  }
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::RateLimited);
  CHECK(g.begin(peer(2), clock.now()) == LoginVerdict::Admitted);
  check(g);
  clock.advance(milliseconds(99));
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::RateLimited);
  clock.advance(milliseconds(1));  // one emission interval
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::RateLimited);
  check(g);
}

TEST_CASE("the count is checked before the rate, and a refusal takes no token", "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.max_per_peer = 1, .rate = RateLimit{.per_second = 1, .burst = 2}});
  REQUIRE(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
  for (int i = 0; i < 5; ++i) CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::TooMany);
  REQUIRE(g.end(peer(1), clock.now()));
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);  // the second token is there
  REQUIRE(g.end(peer(1), clock.now()));
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::RateLimited);
  check(g);
}

TEST_CASE("a peer without logins is kept while its bucket refills, and forgotten once full",
          "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.rate = RateLimit{.per_second = 1, .burst = 2}});
  REQUIRE(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
  REQUIRE(g.end(peer(1), clock.now()));
  CHECK(g.peers() == 1);  // one token spent: it must be remembered
  check(g);
  clock.advance(std::chrono::seconds(1));
  g.begin(peer(2), clock.now());  // any later call forgets peers whose bucket is full again
  CHECK(g.in_progress(peer(1)) == 0);
  CHECK(g.peers() == 1);
  check(g);
}

TEST_CASE("peers kept only for their buckets are bounded; the oldest is forgotten first",
          "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.rate = RateLimit{.per_second = 1, .burst = 1}, .max_idle_peers = 100});
  for (std::uint32_t i = 0; i < 1000; ++i) {
    REQUIRE(g.begin(peer(i), clock.now()) == LoginVerdict::Admitted);
    REQUIRE(g.end(peer(i), clock.now()));
    REQUIRE(g.peers() <= 100);
  }
  check(g);
  CHECK(g.begin(peer(999), clock.now()) == LoginVerdict::RateLimited);  // recent: remembered
  CHECK(g.begin(peer(0), clock.now()) == LoginVerdict::Admitted);       // oldest: forgotten
  check(g);
}

TEST_CASE("peers with logins in progress are never forgotten", "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{
      .max_per_peer = 1, .rate = RateLimit{.per_second = 1, .burst = 1}, .max_idle_peers = 2});
  for (std::uint32_t i = 0; i < 50; ++i)
    REQUIRE(g.begin(peer(i), clock.now()) == LoginVerdict::Admitted);
  CHECK(g.peers() == 50);  // one per open connection: bounded by the connections
  for (std::uint32_t i = 0; i < 50; ++i)
    CHECK(g.begin(peer(i), clock.now()) == LoginVerdict::TooMany);
  for (std::uint32_t i = 0; i < 50; ++i) REQUIRE(g.end(peer(i), clock.now()));
  CHECK(g.peers() == 2);
  check(g);
}

TEST_CASE("new limits apply to the next connection and keep logins in progress", "[pools]") {
  FakeClock clock;
  LoginGate g(LoginLimits{.max_per_peer = 5});
  for (int i = 0; i < 4; ++i) REQUIRE(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);
  g.set_limits(LoginLimits{.max_per_peer = 2}, clock.now());
  CHECK(g.in_progress(peer(1)) == 4);
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::TooMany);
  g.set_limits(LoginLimits{.max_per_peer = 0, .rate = RateLimit{.per_second = 1, .burst = 1}},
               clock.now());
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::Admitted);  // a new limit starts full
  CHECK(g.begin(peer(1), clock.now()) == LoginVerdict::RateLimited);
  check(g);
}
