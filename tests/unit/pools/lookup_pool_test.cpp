// Scripted sequences for pools::LookupPool on a fake clock; check_invariants() after every step.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER

#include "pools/lookup_pool.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sluice::pools::ConnId;
using sluice::pools::FlightId;
using sluice::pools::LookupFinish;
using sluice::pools::LookupPool;
using sluice::pools::LookupPoolSettings;
using sluice::pools::LookupStart;
using sluice::test::FakeClock;
using Kind = LookupStart::Kind;

constexpr LookupPoolSettings kTwo{.max_connections = 2, .idle_timeout = 60s};

void check(const LookupPool& pool) {
  const auto problem = pool.check_invariants();
  CAPTURE(problem);
  REQUIRE_FALSE(problem);
}

// Starts a lookup of `key` in group "db" (or `group`) with a 10 s deadline.
LookupStart start(LookupPool& pool, const FakeClock& clock, const std::string& key,
                  const std::string& group = "db") {
  LookupStart s = pool.start(key, group, clock.now(), clock.in(10s));
  check(pool);
  return s;
}

LookupFinish finish(LookupPool& pool, const FakeClock& clock, FlightId flight,
                    bool reusable = true) {
  LookupFinish f = pool.finish(flight, clock.now(), reusable);
  check(pool);
  return f;
}

}  // namespace

TEST_CASE("lookups of one key share one flight, lookups of others take their own connection",
          "[pools]") {
  FakeClock clock;
  LookupPool pool(kTwo);
  const LookupStart first = start(pool, clock, "carol");
  REQUIRE(first.kind == Kind::Granted);
  CHECK(first.grant.fresh);
  for (int i = 0; i < 50; ++i) {
    const LookupStart again = start(pool, clock, "carol");
    CHECK(again.kind == Kind::Joined);
    CHECK(again.flight == first.flight);
  }
  CHECK(pool.counts().flights == 1);
  CHECK(pool.counts().connections() == 1);
  const LookupStart other = start(pool, clock, "dave");
  REQUIRE(other.kind == Kind::Granted);
  CHECK(other.grant.conn != first.grant.conn);
  // Once answered, the key is no longer in flight: the next lookup of it is a new flight (the
  // cache, in src/, is what spares it), on the connection just given back.
  finish(pool, clock, first.flight);
  const LookupStart later = start(pool, clock, "carol");
  REQUIRE(later.kind == Kind::Granted);
  CHECK_FALSE(later.grant.fresh);
  CHECK(later.grant.conn == first.grant.conn);
}

TEST_CASE("200 distinct lookups never hold more than max_connections connections", "[pools]") {
  FakeClock clock;
  LookupPool pool(kTwo);
  std::vector<FlightId> running;
  std::uint32_t fresh = 0;
  std::uint32_t queued = 0;
  for (int i = 0; i < 200; ++i) {
    const LookupStart s = start(pool, clock, "user" + std::to_string(i));
    if (s.kind == Kind::Granted) {
      running.push_back(s.flight);
      fresh += s.grant.fresh ? 1 : 0;
    } else {
      REQUIRE(s.kind == Kind::Queued);
      ++queued;
    }
    CHECK(pool.counts().connections() <= 2);
  }
  CHECK(running.size() == 2);
  CHECK(queued == 198);
  // Each answer hands its connection to the oldest waiter: nobody opens another one.
  std::uint32_t answered = 0;
  while (!running.empty()) {
    clock.advance(5ms);
    const FlightId done = running.front();
    running.erase(running.begin());
    const LookupFinish f = finish(pool, clock, done);
    ++answered;
    CHECK(f.close.empty());
    CHECK(f.expired.empty());
    for (const auto& grant : f.granted) {
      CHECK_FALSE(grant.fresh);
      fresh += grant.fresh ? 1 : 0;
      running.push_back(grant.flight);
    }
    CHECK(pool.counts().connections() <= 2);
  }
  CHECK(answered == 200);
  CHECK(fresh == 2);
  CHECK(pool.counts().idle == 2);
  CHECK(pool.counts().flights == 0);
}

TEST_CASE("a waiter past its deadline expires and is never granted", "[pools]") {
  FakeClock clock;
  LookupPool pool({.max_connections = 1, .idle_timeout = 60s});
  const LookupStart a = start(pool, clock, "a");
  REQUIRE(a.kind == Kind::Granted);
  const LookupStart b = pool.start("b", "db", clock.now(), clock.in(1s));
  const LookupStart c = pool.start("c", "db", clock.now(), clock.in(3s));
  REQUIRE(b.kind == Kind::Queued);
  REQUIRE(c.kind == Kind::Queued);
  check(pool);
  clock.advance(999ms);
  CHECK(pool.expire(clock.now()).empty());
  clock.advance(1ms);  // exactly b's deadline
  CHECK(pool.expire(clock.now()) == std::vector<FlightId>{b.flight});
  check(pool);
  CHECK_FALSE(pool.flight_of("b"));
  // c's deadline passes too before a is answered: finish() finds it expired, grants nobody.
  clock.advance(5s);
  const LookupFinish f = finish(pool, clock, a.flight);
  CHECK(f.granted.empty());
  CHECK(f.expired == std::vector<FlightId>{c.flight});
  CHECK(pool.counts().flights == 0);
  CHECK(pool.counts().idle == 1);
}

TEST_CASE("a broken connection is closed and its slot goes to the next waiter", "[pools]") {
  FakeClock clock;
  LookupPool pool({.max_connections = 1, .idle_timeout = 60s});
  const LookupStart a = start(pool, clock, "a");
  const LookupStart b = start(pool, clock, "b");
  REQUIRE(b.kind == Kind::Queued);
  const LookupFinish f = finish(pool, clock, a.flight, /*reusable=*/false);
  CHECK(f.close == std::vector<ConnId>{a.grant.conn});
  REQUIRE(f.granted.size() == 1);
  CHECK(f.granted[0].flight == b.flight);
  CHECK(f.granted[0].fresh);
  CHECK(pool.running(b.flight));
  CHECK(pool.counts().connections() == 1);
}

TEST_CASE("another group's idle connection is closed to make room, a busy one never", "[pools]") {
  FakeClock clock;
  LookupPool pool({.max_connections = 1, .idle_timeout = 60s});
  const LookupStart a = start(pool, clock, "a", "db1");
  // Busy: a lookup for db2 waits rather than opening a second connection.
  const LookupStart b = start(pool, clock, "b", "db2");
  REQUIRE(b.kind == Kind::Queued);
  // a's connection is given back while b, of another group, waits: it is closed, b gets a new one.
  const LookupFinish f = finish(pool, clock, a.flight);
  CHECK(f.close == std::vector<ConnId>{a.grant.conn});
  REQUIRE(f.granted.size() == 1);
  CHECK(f.granted[0].fresh);
  finish(pool, clock, b.flight);
  // Idle now, of db2: a db1 lookup closes it and opens its own.
  const LookupStart c = start(pool, clock, "c", "db1");
  REQUIRE(c.kind == Kind::Granted);
  CHECK(c.grant.fresh);
  CHECK(c.grant.close == std::vector<ConnId>{f.granted[0].conn});
  CHECK(pool.counts().connections() == 1);
}

TEST_CASE("idle connections are closed after idle_timeout, busy ones are not", "[pools]") {
  FakeClock clock;
  LookupPool pool(kTwo);
  const LookupStart a = start(pool, clock, "a");
  const LookupStart b = start(pool, clock, "b");
  finish(pool, clock, a.flight);
  clock.advance(59s);
  CHECK(pool.reap(clock.now()).empty());
  clock.advance(1s);
  CHECK(pool.reap(clock.now()) == std::vector<ConnId>{a.grant.conn});
  check(pool);
  CHECK(pool.counts().busy == 1);
  CHECK(pool.counts().idle == 0);
  finish(pool, clock, b.flight);
  CHECK(pool.counts().idle == 1);
}

TEST_CASE("a lower max_connections closes the surplus; a higher one serves waiters at once",
          "[pools]") {
  FakeClock clock;
  LookupPool pool(kTwo);
  const LookupStart a = start(pool, clock, "a");
  const LookupStart b = start(pool, clock, "b");
  const LookupStart c = start(pool, clock, "c");
  REQUIRE(c.kind == Kind::Queued);
  // Lowered to 1: the first connection given back is closed, not handed to c.
  CHECK(
      pool.set_settings({.max_connections = 1, .idle_timeout = 60s}, clock.now()).granted.empty());
  LookupFinish f = finish(pool, clock, a.flight);
  CHECK(f.close == std::vector<ConnId>{a.grant.conn});
  CHECK(f.granted.empty());
  CHECK(pool.counts().connections() == 1);
  // b's connection is within the bound: it goes to c.
  f = finish(pool, clock, b.flight);
  REQUIRE(f.granted.size() == 1);
  CHECK(f.granted[0].flight == c.flight);
  CHECK(f.granted[0].conn == b.grant.conn);
  // Raised to 3 with two waiting: both run at once on new connections.
  const LookupStart d = start(pool, clock, "d");
  const LookupStart e = start(pool, clock, "e");
  REQUIRE(d.kind == Kind::Queued);
  REQUIRE(e.kind == Kind::Queued);
  f = pool.set_settings({.max_connections = 3, .idle_timeout = 60s}, clock.now());
  check(pool);
  CHECK(f.granted.size() == 2);
  CHECK(pool.counts().connections() == 3);
}

TEST_CASE("unknown flight ids are a caller bug", "[pools]") {
  FakeClock clock;
  LookupPool pool(kTwo);
  CHECK_THROWS_AS(pool.finish(42, clock.now(), true), std::out_of_range);
  const LookupStart a = start(pool, clock, "a");
  const LookupStart b = start(pool, clock, "b");
  const LookupStart c = start(pool, clock, "c");
  REQUIRE(c.kind == Kind::Queued);
  CHECK_THROWS_AS(pool.finish(c.flight, clock.now(), true), std::out_of_range);  // not running
  finish(pool, clock, a.flight);
  finish(pool, clock, b.flight);
}
