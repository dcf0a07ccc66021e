// The idle-pool reaper's decision (pools/pool_reaper.hpp) on a fake clock, and the two removals
// it leads to: BackendBook::remove_pool and BulkheadAdmission::remove_group, whose ids are reused
// so that cycling through pools never grows either core.
#include "pools/pool_reaper.hpp"

#include "unit/pools/bulkhead_harness.hpp"

#include "pools/backend_book.hpp"

#include <catch2/catch.hpp>

#include <chrono>

namespace {

using namespace std::chrono_literals;
using sluice::pools::BackendBook;
using sluice::pools::PoolCounts;
using sluice::pools::PoolId;
using sluice::pools::PoolSettings;
using sluice::pools::PoolUse;
using sluice::pools::reap_pool_now;
using sluice::test::bulkhead;
using sluice::test::FakeClock;
using sluice::test::Lines;
using sluice::test::Script;

constexpr sluice::pools::Duration kIdle = 10min;

}  // namespace

TEST_CASE("an unused pool is reaped once it has been idle for the timeout, not before", "[pools]") {
  FakeClock clock;
  const PoolUse use{.last_used = clock.now()};
  CHECK_FALSE(reap_pool_now(use, clock.now(), kIdle));
  clock.advance(kIdle - 1ms);
  CHECK_FALSE(reap_pool_now(use, clock.now(), kIdle));
  clock.advance(1ms);
  CHECK(reap_pool_now(use, clock.now(), kIdle));  // exactly at the timeout counts
  clock.advance(1h);
  CHECK(reap_pool_now(use, clock.now(), kIdle));
}

TEST_CASE("a pool that is held, has a backend or is configured is never reaped", "[pools]") {
  FakeClock clock;
  const auto later = clock.in(24h);
  PoolUse use{.last_used = clock.now()};
  SECTION("a client holds it (logged in, queued or running)") {
    use.clients = 1;
    CHECK_FALSE(reap_pool_now(use, later, kIdle));
  }
  SECTION("a backend in any state") {
    use.backends =
        GENERATE(PoolCounts{.connecting = 1}, PoolCounts{.idle = 1}, PoolCounts{.active = 1});
    CHECK_FALSE(reap_pool_now(use, later, kIdle));
  }
  SECTION("the config implies it (a database with a fixed user)") {
    use.configured = true;
    CHECK_FALSE(reap_pool_now(use, later, kIdle));
  }
  SECTION("a timeout of 0 disables reaping") { CHECK_FALSE(reap_pool_now(use, later, 0ms)); }
  SECTION("a use stamped after now (a client left since now was read)") {
    CHECK_FALSE(reap_pool_now(use, clock.now() - 1ms, kIdle));
  }
}

TEST_CASE("a removed book pool frees its id for the next pool; one with backends stays",
          "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/4);
  const PoolId a = book.add_pool(PoolSettings{});
  const PoolId b = book.add_pool(PoolSettings{.min_size = 1});
  REQUIRE(book.pick(a, clock.now()).kind == sluice::pools::Pick::Kind::Connect);
  CHECK_FALSE(book.remove_pool(a));  // connecting
  book.connected(1, clock.now(), /*idle=*/false);
  CHECK_FALSE(book.remove_pool(a));  // active
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  CHECK_FALSE(book.remove_pool(a));  // idle
  book.remove(1);
  REQUIRE_FALSE(book.check_invariants());

  CHECK(book.remove_pool(a));
  CHECK_FALSE(book.remove_pool(a));  // once
  REQUIRE_FALSE(book.check_invariants());
  CHECK(book.pool_count() == 1);
  CHECK(book.warm_deficit(b) == 1);

  // Cycling through many pools reuses the one free id.
  for (int i = 0; i < 100; ++i) {
    const PoolId p = book.add_pool(PoolSettings{.min_size = 2});
    REQUIRE(p == a);
    REQUIRE(book.warm_deficit(p) == 2);  // the new settings, not the removed pool's
    REQUIRE(book.remove_pool(p));
    REQUIRE_FALSE(book.check_invariants());
  }
  CHECK(book.add_pool(PoolSettings{}) == a);
  CHECK(book.add_pool(PoolSettings{}) == 2);
  CHECK(book.pool_count() == 3);
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("a group is removed only with no lease and no waiter; its id is reused", "[pools]") {
  Script s(sluice::pools::Policy{.capacity = 2, .bulkheads = {bulkhead("default", 0, 0, 2)}});
  const auto g = s.a.add_group(1);
  const auto other = s.a.add_group(1);
  REQUIRE(s.acquire("default", g) == "granted lease 1");
  REQUIRE(s.acquire("default", g) == "queued ticket 2");
  CHECK_FALSE(s.a.remove_group(g));  // a lease and a waiter
  REQUIRE(s.release(1) == Lines{"ticket 2 -> lease 3 default"});
  CHECK_FALSE(s.a.remove_group(g));  // the waiter's lease
  REQUIRE(s.acquire("default", g) == "queued ticket 4");
  REQUIRE(s.release(3) == Lines{"ticket 4 -> lease 5 default"});
  REQUIRE(s.release(5).empty());
  s.check();

  CHECK(s.a.remove_group(g));
  CHECK_FALSE(s.a.remove_group(g));
  s.check();
  for (int i = 0; i < 100; ++i) {
    const auto reused = s.a.add_group(2);
    REQUIRE(reused == g);
    s.check();
    // The reused group has the new limit and nothing of the removed one.
    REQUIRE(s.acquire("default", reused) == "granted lease " + std::to_string(6 + i));
    REQUIRE(s.release(6 + i).empty());
    REQUIRE(s.a.remove_group(reused));
    s.check();
  }
  REQUIRE(s.acquire("default", other) == "granted lease 106");
}
