// pools::TokenBucket (GCRA form): exact token counts on a fake clock.
#include "pools/token_bucket.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <limits>

namespace {

using namespace std::chrono_literals;
using sluice::pools::RateLimit;
using sluice::pools::TokenBucket;
using sluice::test::FakeClock;

}  // namespace

TEST_CASE("a bucket that is off lets everything through", "[pools]") {
  FakeClock clock;
  TokenBucket off;
  for (int i = 0; i < 1000; ++i) REQUIRE(off.try_take(clock.now()));
  REQUIRE(off.time_to_next(clock.now()) == 0ns);
  REQUIRE(off.available(clock.now()) == std::numeric_limits<std::uint32_t>::max());
}

TEST_CASE("a bucket allows its burst at once, then one token per interval", "[pools]") {
  FakeClock clock;
  TokenBucket b(RateLimit{.per_second = 10, .burst = 3});
  REQUIRE(b.available(clock.now()) == 3);
  REQUIRE(b.try_take(clock.now()));
  REQUIRE(b.try_take(clock.now()));
  REQUIRE(b.try_take(clock.now()));
  REQUIRE_FALSE(b.try_take(clock.now()));
  REQUIRE(b.available(clock.now()) == 0);
  REQUIRE(b.time_to_next(clock.now()) == 100ms);

  clock.advance(99ms);
  REQUIRE_FALSE(b.try_take(clock.now()));
  REQUIRE(b.time_to_next(clock.now()) == 1ms);
  clock.advance(1ms);
  REQUIRE(b.try_take(clock.now()));
  REQUIRE_FALSE(b.try_take(clock.now()));

  clock.advance(250ms);  // 2.5 tokens' worth: 2 whole tokens
  REQUIRE(b.available(clock.now()) == 2);
  clock.advance(10s);  // never more than the burst
  REQUIRE(b.available(clock.now()) == 3);
}

TEST_CASE("a steady caller at the rate is never refused, a faster one every other time",
          "[pools]") {
  FakeClock clock;
  TokenBucket b(RateLimit{.per_second = 10, .burst = 1});
  int granted = 0;
  for (int i = 0; i < 40; ++i) {  // every 50ms for 2s: 10/s allowed
    if (b.try_take(clock.now())) ++granted;
    REQUIRE(b.try_take(clock.now()) == false);
    clock.advance(50ms);
  }
  REQUIRE(granted == 20);
}

TEST_CASE("a slow rate refills exactly at its interval", "[pools]") {
  FakeClock clock;
  TokenBucket b(RateLimit{.per_second = 0.5, .burst = 1});
  REQUIRE(b.try_take(clock.now()));
  clock.advance(1999ms);
  REQUIRE_FALSE(b.try_take(clock.now()));
  clock.advance(1ms);
  REQUIRE(b.try_take(clock.now()));
}

TEST_CASE("reconfiguring a bucket keeps its history within the new limit", "[pools]") {
  FakeClock clock;
  SECTION("lowering the burst never leaves it emptier than empty under the new limit") {
    TokenBucket b(RateLimit{.per_second = 1, .burst = 10});
    for (int i = 0; i < 10; ++i) REQUIRE(b.try_take(clock.now()));
    b.reconfigure(RateLimit{.per_second = 1, .burst = 1}, clock.now());
    REQUIRE(b.time_to_next(clock.now()) == 1s);  // not the 10s the old debt implies
  }
  SECTION("switching a limit on starts full") {
    TokenBucket b;
    b.reconfigure(RateLimit{.per_second = 10, .burst = 3}, clock.now());
    REQUIRE(b.available(clock.now()) == 3);
  }
  SECTION("switching it off lets everything through") {
    TokenBucket b(RateLimit{.per_second = 1, .burst = 1});
    REQUIRE(b.try_take(clock.now()));
    b.reconfigure(RateLimit{}, clock.now());
    REQUIRE(b.try_take(clock.now()));
  }
}
