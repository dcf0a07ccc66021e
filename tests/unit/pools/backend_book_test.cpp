// Scripted sequences for pools::BackendBook on a fake clock; check_invariants() after every step.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER

#include "pools/backend_book.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sluice::pools::BackendBook;
using sluice::pools::BackendId;
using sluice::pools::BackendState;
using sluice::pools::Pick;
using sluice::pools::PoolCounts;
using sluice::pools::PoolId;
using sluice::pools::PoolSettings;
using sluice::test::FakeClock;

// "idle 2", "connect 3", "evict 1 for 4", "busy": exact and readable on failure.
std::string describe(const Pick& p) {
  switch (p.kind) {
    case Pick::Kind::Idle:
      return "idle " + std::to_string(p.id);
    case Pick::Kind::Connect:
      return "connect " + std::to_string(p.id);
    case Pick::Kind::Evict:
      return "evict " + std::to_string(p.victim) + " for " + std::to_string(p.id);
    case Pick::Kind::Busy:
      return "busy";
  }
  return "unknown pick";
}

std::string describe(const PoolCounts& c) {
  return "connecting " + std::to_string(c.connecting) + ", idle " + std::to_string(c.idle) +
         ", active " + std::to_string(c.active);
}

std::string pick(BackendBook& book, PoolId pool, const FakeClock& clock) {
  return describe(book.pick(pool, clock.now()));
}

// Picks a new connection for `pool`, which must get id `expected`, and marks it connected.
void open_active(BackendBook& book, PoolId pool, const FakeClock& clock, BackendId expected) {
  REQUIRE(pick(book, pool, clock) == "connect " + std::to_string(expected));
  REQUIRE_FALSE(book.check_invariants());
  book.connected(expected, clock.now(), /*idle=*/false);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(expected) == BackendState::Active);
}

std::vector<BackendId> reap(BackendBook& book, const FakeClock& clock) {
  std::vector<BackendId> to_close;
  book.reap(clock.now(), to_close);
  return to_close;
}

}  // namespace

TEST_CASE("pick opens connections up to max_connections, then reports busy", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/2);
  const PoolId pool = book.add_pool(PoolSettings{});
  REQUIRE(pool == 0);
  REQUIRE(book.pool_count() == 1);
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(pick(book, pool, clock) == "connect 1");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Connecting);
  REQUIRE(describe(book.counts(pool)) == "connecting 1, idle 0, active 0");

  book.connected(1, clock.now(), /*idle=*/false);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Active);
  REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 0, active 1");

  REQUIRE(pick(book, pool, clock) == "connect 2");
  REQUIRE_FALSE(book.check_invariants());
  book.connected(2, clock.now(), /*idle=*/false);
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(pick(book, pool, clock) == "busy");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.totals()) == "connecting 0, idle 0, active 2");

  book.set_max_connections(3);
  REQUIRE(pick(book, pool, clock) == "connect 3");
  REQUIRE_FALSE(book.check_invariants());
  book.set_max_connections(2);  // over the new maximum: nothing is closed, nothing is opened
  REQUIRE(pick(book, pool, clock) == "busy");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.totals().total() == 3);
}

TEST_CASE("a released backend is reused most recently used first", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/5);
  const PoolId pool = book.add_pool(PoolSettings{});
  open_active(book, pool, clock, 1);
  open_active(book, pool, clock, 2);
  open_active(book, pool, clock, 3);

  clock.advance(1s);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1s);
  REQUIRE(book.release(3, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1s);
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(2) == BackendState::Idle);
  REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 3, active 0");

  REQUIRE(pick(book, pool, clock) == "idle 2");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(2) == BackendState::Active);
  REQUIRE(pick(book, pool, clock) == "idle 3");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "idle 1");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "connect 4");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.counts(pool)) == "connecting 1, idle 0, active 3");
}

TEST_CASE("release keeps a backend only when it is reusable and within its lifetime", "[pools]") {
  auto [reusable, age, kept] = GENERATE(table<bool, std::chrono::milliseconds, bool>({
      {true, 59'999ms, true},
      {true, 60'000ms, false},
      {true, 61'000ms, false},
      {false, 1'000ms, false},
      {false, 0ms, false},
  }));
  CAPTURE(reusable, age.count(), kept);
  FakeClock clock;
  BackendBook book(/*max_connections=*/2);
  const PoolId pool = book.add_pool(PoolSettings{.lifetime = 60s});
  open_active(book, pool, clock, 1);

  clock.advance(age);
  REQUIRE(book.release(1, clock.now(), reusable) == kept);
  REQUIRE_FALSE(book.check_invariants());
  if (kept) {
    REQUIRE(book.state(1) == BackendState::Idle);
    REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 1, active 0");
    REQUIRE(pick(book, pool, clock) == "idle 1");
  } else {
    REQUIRE(book.state(1) == std::nullopt);
    REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 0, active 0");
    REQUIRE(pick(book, pool, clock) == "connect 2");
  }
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("a zero lifetime never retires a backend", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/1);
  const PoolId pool = book.add_pool(PoolSettings{.lifetime = 0ms});
  open_active(book, pool, clock, 1);
  clock.advance(1000h);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(reap(book, clock).empty());
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "idle 1");
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("an idle backend past its lifetime is never handed out", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/2);
  const PoolId pool = book.add_pool(PoolSettings{.lifetime = 60s});
  open_active(book, pool, clock, 1);  // created at t0
  clock.advance(30s);
  open_active(book, pool, clock, 2);  // created at t30
  clock.advance(10s);
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));  // t40
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(10s);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));  // t50: 1 is most recently used
  REQUIRE_FALSE(book.check_invariants());

  // t61: backend 1 is past its lifetime, backend 2 (31s old) is still good and must be used,
  // even though the server is at max_connections.
  clock.advance(11s);
  REQUIRE(pick(book, pool, clock) == "idle 2");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Idle);
  REQUIRE(reap(book, clock) == std::vector<BackendId>{1});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 0, active 1");
}

TEST_CASE("at max_connections a pool whose only idle backend is too old waits for reap",
          "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/1);
  const PoolId pool = book.add_pool(PoolSettings{.lifetime = 60s});
  open_active(book, pool, clock, 1);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());

  clock.advance(60s);
  REQUIRE(pick(book, pool, clock) == "busy");  // never hands out or evicts its own backend
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Idle);
  REQUIRE(reap(book, clock) == std::vector<BackendId>{1});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "connect 2");
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("at max_connections the least recently used idle backend of another pool is evicted",
          "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/3);
  const PoolId a = book.add_pool(PoolSettings{});
  const PoolId b = book.add_pool(PoolSettings{});
  const PoolId c = book.add_pool(PoolSettings{});
  open_active(book, a, clock, 1);
  open_active(book, b, clock, 2);
  open_active(book, c, clock, 3);

  // Pool b's backend goes idle first, so it is the least recently used across pools.
  clock.advance(1s);
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1s);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(pick(book, c, clock) == "evict 2 for 4");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(2) == std::nullopt);
  REQUIRE(book.state(4) == BackendState::Connecting);
  REQUIRE(describe(book.counts(b)) == "connecting 0, idle 0, active 0");
  REQUIRE(pick(book, c, clock) == "evict 1 for 5");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, c, clock) == "busy");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.counts(c)) == "connecting 2, idle 0, active 1");

  // A pool's own idle backend is reused, never evicted for itself.
  clock.advance(1s);
  REQUIRE(book.release(3, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, c, clock) == "idle 3");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.release(3, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, a, clock) == "evict 3 for 6");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.totals()) == "connecting 3, idle 0, active 0");
}

TEST_CASE("within the victim pool the least recently used idle backend is evicted", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/2);
  const PoolId a = book.add_pool(PoolSettings{});
  const PoolId b = book.add_pool(PoolSettings{});
  open_active(book, a, clock, 1);
  open_active(book, a, clock, 2);
  clock.advance(1s);
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1s);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(pick(book, b, clock) == "evict 2 for 3");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, a, clock) == "idle 1");
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("at max_connections with only connecting backends pick is busy", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/2);
  const PoolId a = book.add_pool(PoolSettings{});
  const PoolId b = book.add_pool(PoolSettings{});

  REQUIRE(pick(book, a, clock) == "connect 1");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, b, clock) == "connect 2");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, a, clock) == "busy");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, b, clock) == "busy");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.totals()) == "connecting 2, idle 0, active 0");

  // Once pool a's connection is up and idle, pool b may evict it.
  book.connected(1, clock.now(), /*idle=*/true);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, b, clock) == "evict 1 for 3");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, a, clock) == "busy");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.counts(a)) == "connecting 0, idle 0, active 0");
  REQUIRE(describe(book.counts(b)) == "connecting 2, idle 0, active 0");
}

TEST_CASE("max_connecting caps connections being opened at once but not idle reuse", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/5);
  book.set_max_connecting(1);
  const PoolId pool = book.add_pool(PoolSettings{});
  open_active(book, pool, clock, 1);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(pick(book, pool, clock) == "idle 1");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "connect 2");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "busy");  // room under max_connections, but 2 is connecting
  REQUIRE_FALSE(book.check_invariants());
  book.connected(2, clock.now(), /*idle=*/false);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "connect 3");
  REQUIRE_FALSE(book.check_invariants());

  book.set_max_connecting(0);  // no limit
  REQUIRE(pick(book, pool, clock) == "connect 4");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.counts(pool)) == "connecting 2, idle 0, active 2");
}

TEST_CASE("reap closes idle backends from the moment their idle timeout is reached", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/5);
  const PoolId pool = book.add_pool(PoolSettings{.idle_timeout = 30s});
  open_active(book, pool, clock, 1);
  open_active(book, pool, clock, 2);
  open_active(book, pool, clock, 3);
  open_active(book, pool, clock, 4);                // stays active throughout
  REQUIRE(pick(book, pool, clock) == "connect 5");  // stays connecting throughout
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));  // idle since t0
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(10s);
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));  // idle since t10
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(10s);
  REQUIRE(book.release(3, clock.now(), /*reusable=*/true));  // idle since t20
  REQUIRE_FALSE(book.check_invariants());

  clock.advance(10s - 1ns);
  REQUIRE(reap(book, clock).empty());
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1ns);  // t30
  REQUIRE(reap(book, clock) == std::vector<BackendId>{1});
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(10s);  // t40
  REQUIRE(reap(book, clock) == std::vector<BackendId>{2});
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1h);
  REQUIRE(reap(book, clock) == std::vector<BackendId>{3});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(describe(book.counts(pool)) == "connecting 1, idle 0, active 1");
}

TEST_CASE("reap never takes a pool below its min_size for idleness", "[pools]") {
  // Idle backends 1, 2, 3 (least recently used first) plus `active` busy ones, all long idle.
  auto [min_size, active, closed] =
      GENERATE(table<std::uint32_t, std::uint32_t, std::vector<BackendId>>({
          {0, 0, {1, 2, 3}},
          {1, 0, {1, 2}},
          {2, 0, {1}},
          {3, 0, {}},
          {2, 1, {1, 2}},
          {4, 1, {}},
          {1, 2, {1, 2, 3}},
      }));
  CAPTURE(min_size, active);
  FakeClock clock;
  BackendBook book(/*max_connections=*/10);
  const PoolId pool = book.add_pool(PoolSettings{.idle_timeout = 30s, .min_size = min_size});
  for (BackendId id = 1; id <= 3 + active; ++id) open_active(book, pool, clock, id);
  for (BackendId id = 1; id <= 3; ++id) {
    clock.advance(1s);
    REQUIRE(book.release(id, clock.now(), /*reusable=*/true));
    REQUIRE_FALSE(book.check_invariants());
  }

  clock.advance(1h);
  REQUIRE(reap(book, clock) == closed);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.counts(pool).total() == 3 + active - closed.size());
  REQUIRE(book.counts(pool).active == active);
  REQUIRE(reap(book, clock).empty());  // a second pass finds nothing more
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("reap always closes idle backends past their lifetime, even below min_size", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/4);
  const PoolId pool = book.add_pool(PoolSettings{.lifetime = 60s, .min_size = 3});
  open_active(book, pool, clock, 1);
  open_active(book, pool, clock, 2);
  open_active(book, pool, clock, 3);  // stays active: reap leaves it to release()
  clock.advance(10s);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());

  clock.advance(50s - 1ms);
  REQUIRE(reap(book, clock).empty());
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(1ms);  // t60: exactly the lifetime
  REQUIRE(reap(book, clock) == std::vector<BackendId>{1, 2});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(3) == BackendState::Active);
  REQUIRE(book.warm_deficit(pool) == 2);

  REQUIRE_FALSE(book.release(3, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(3) == std::nullopt);
  REQUIRE(book.warm_deficit(pool) == 3);
}

TEST_CASE("backends closed for lifetime count against min_size before idle ones are closed",
          "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/4);
  const PoolId pool =
      book.add_pool(PoolSettings{.lifetime = 100s, .idle_timeout = 30s, .min_size = 1});
  open_active(book, pool, clock, 1);  // created t0
  clock.advance(50s);
  open_active(book, pool, clock, 2);  // created t50
  clock.advance(5s);
  REQUIRE(book.release(2, clock.now(), /*reusable=*/true));  // t55: least recently used
  REQUIRE_FALSE(book.check_invariants());
  clock.advance(5s);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));  // t60
  REQUIRE_FALSE(book.check_invariants());

  // t100: backend 1 reaches its lifetime and must go; backend 2 is idle too long, but closing it
  // as well would leave the pool below min_size.
  clock.advance(40s);
  REQUIRE(reap(book, clock) == std::vector<BackendId>{1});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(2) == BackendState::Idle);
  REQUIRE(book.warm_deficit(pool) == 0);
}

TEST_CASE("reserve_warm opens connections up to min_size while there is room", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/4);
  const PoolId a = book.add_pool(PoolSettings{.min_size = 3});
  const PoolId b = book.add_pool(PoolSettings{.min_size = 2});
  REQUIRE(book.warm_deficit(a) == 3);
  REQUIRE(book.warm_deficit(b) == 2);

  REQUIRE(book.reserve_warm(a, clock.now()) == BackendId{1});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Connecting);
  REQUIRE(book.warm_deficit(a) == 2);
  REQUIRE(book.reserve_warm(a, clock.now()) == BackendId{2});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.reserve_warm(a, clock.now()) == BackendId{3});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.warm_deficit(a) == 0);
  REQUIRE(book.reserve_warm(a, clock.now()) == std::nullopt);  // room left, but no deficit
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(book.reserve_warm(b, clock.now()) == BackendId{4});
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.warm_deficit(b) == 1);
  REQUIRE(book.reserve_warm(b, clock.now()) == std::nullopt);  // deficit, but server full
  REQUIRE_FALSE(book.check_invariants());

  book.connected(1, clock.now(), /*idle=*/true);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Idle);
  REQUIRE(describe(book.counts(a)) == "connecting 2, idle 1, active 0");
  REQUIRE(pick(book, a, clock) == "idle 1");
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.warm_deficit(a) == 0);  // active backends count towards min_size

  book.remove(4);  // b's warm-up connection failed
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.warm_deficit(b) == 2);
  REQUIRE(book.reserve_warm(b, clock.now()) == BackendId{5});
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("remove forgets a backend in any state", "[pools]") {
  const BackendState state =
      GENERATE(BackendState::Connecting, BackendState::Idle, BackendState::Active);
  CAPTURE(static_cast<int>(state));
  FakeClock clock;
  BackendBook book(/*max_connections=*/1);
  const PoolId pool = book.add_pool(PoolSettings{});
  REQUIRE(pick(book, pool, clock) == "connect 1");
  REQUIRE_FALSE(book.check_invariants());
  if (state != BackendState::Connecting) {
    book.connected(1, clock.now(), /*idle=*/state == BackendState::Idle);
    REQUIRE_FALSE(book.check_invariants());
  }
  REQUIRE(book.state(1) == state);
  REQUIRE(book.counts(pool).total() == 1);

  book.remove(1);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == std::nullopt);
  REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 0, active 0");
  REQUIRE(describe(book.totals()) == "connecting 0, idle 0, active 0");
  book.remove(1);  // twice is harmless
  REQUIRE_FALSE(book.check_invariants());
  book.remove(42);  // never issued
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(pick(book, pool, clock) == "connect 2");  // ids are never reused
  REQUIRE_FALSE(book.check_invariants());
}

TEST_CASE("connected ignores unknown backends and backends that are not connecting", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/2);
  const PoolId pool = book.add_pool(PoolSettings{});
  open_active(book, pool, clock, 1);
  book.connected(1, clock.now(), /*idle=*/true);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(1) == BackendState::Active);
  book.connected(42, clock.now(), /*idle=*/true);
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.state(42) == std::nullopt);
  REQUIRE(describe(book.totals()) == "connecting 0, idle 0, active 1");
}

TEST_CASE("counts and totals follow every backend through its states", "[pools]") {
  FakeClock clock;
  BackendBook book(/*max_connections=*/10);
  const PoolId a = book.add_pool(PoolSettings{});
  const PoolId b = book.add_pool(PoolSettings{});
  REQUIRE(book.pool_count() == 2);

  open_active(book, a, clock, 1);
  open_active(book, a, clock, 2);
  open_active(book, a, clock, 3);
  REQUIRE(pick(book, a, clock) == "connect 4");
  REQUIRE_FALSE(book.check_invariants());
  open_active(book, b, clock, 5);
  open_active(book, b, clock, 6);
  open_active(book, b, clock, 7);
  REQUIRE(book.release(1, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.release(5, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE(book.release(6, clock.now(), /*reusable=*/true));
  REQUIRE_FALSE(book.check_invariants());
  REQUIRE_FALSE(book.release(7, clock.now(), /*reusable=*/false));
  REQUIRE_FALSE(book.check_invariants());

  REQUIRE(describe(book.counts(a)) == "connecting 1, idle 1, active 2");
  REQUIRE(describe(book.counts(b)) == "connecting 0, idle 2, active 0");
  REQUIRE(describe(book.totals()) == "connecting 1, idle 3, active 2");
  REQUIRE(book.totals().total() == 6);
}

TEST_CASE("take_idle is pick's idle case and changes nothing when there is none", "[pools]") {
  BackendBook book(3);
  FakeClock clock;
  const PoolId pool = book.add_pool(PoolSettings{.lifetime = 60s});
  REQUIRE_FALSE(book.take_idle(pool, clock.now()).has_value());
  REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 0, active 0");
  open_active(book, pool, clock, 1);
  open_active(book, pool, clock, 2);
  REQUIRE_FALSE(book.take_idle(pool, clock.now()).has_value());  // both active: no new entry
  REQUIRE(describe(book.counts(pool)) == "connecting 0, idle 0, active 2");
  REQUIRE(book.release(1, clock.now(), true));
  clock.advance(1s);
  REQUIRE(book.release(2, clock.now(), true));
  // Most recently used first, as pick().
  REQUIRE(book.take_idle(pool, clock.now()) == BackendId{2});
  REQUIRE(book.state(2) == BackendState::Active);
  REQUIRE_FALSE(book.check_invariants());
  // One past its lifetime is not handed out.
  clock.advance(60s);
  REQUIRE_FALSE(book.take_idle(pool, clock.now()).has_value());
  REQUIRE(book.state(1) == BackendState::Idle);
  REQUIRE_FALSE(book.check_invariants());
}
