// pools::CircuitBreaker on a fake clock: thresholds, the half-open instant, backoff and its cap.
#include "pools/circuit_breaker.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

namespace {

using namespace std::chrono_literals;
using sluice::pools::BreakerPolicy;
using sluice::pools::BreakerState;
using sluice::pools::CircuitBreaker;
using sluice::test::FakeClock;

const BreakerPolicy kPolicy{
    .failure_threshold = 3, .open_delay = 1000ms, .max_open_delay = 3000ms, .backoff = 2};

}  // namespace

TEST_CASE("the breaker opens on the threshold-th consecutive failure", "[pools]") {
  FakeClock clock;
  CircuitBreaker b(kPolicy);
  REQUIRE_FALSE(b.record_failure(clock.now()));
  REQUIRE_FALSE(b.record_failure(clock.now()));
  REQUIRE_FALSE(b.record_success());  // closed: nothing to close, the count resets
  REQUIRE(b.consecutive_failures() == 0);
  REQUIRE_FALSE(b.record_failure(clock.now()));
  REQUIRE_FALSE(b.record_failure(clock.now()));
  REQUIRE(b.state(clock.now()) == BreakerState::Closed);
  REQUIRE(b.retry_after(clock.now()) == 0ns);
  REQUIRE(b.record_failure(clock.now()));
  REQUIRE(b.state(clock.now()) == BreakerState::Open);
  REQUIRE(b.retry_after(clock.now()) == 1000ms);
}

TEST_CASE("an open breaker turns half-open exactly at its probe time", "[pools]") {
  FakeClock clock;
  CircuitBreaker b(kPolicy);
  for (int i = 0; i < 3; ++i) b.record_failure(clock.now());
  REQUIRE(b.probe_at() == clock.in(1000ms));
  clock.advance(999ms);
  REQUIRE(b.state(clock.now()) == BreakerState::Open);
  REQUIRE(b.retry_after(clock.now()) == 1ms);
  clock.advance(1ms);
  REQUIRE(b.state(clock.now()) == BreakerState::HalfOpen);
  REQUIRE(b.retry_after(clock.now()) == 1000ms);
  REQUIRE(b.record_success());
  REQUIRE(b.state(clock.now()) == BreakerState::Closed);
  REQUIRE(b.probe_at() == std::nullopt);
}

TEST_CASE("failed probes back the delay off up to its cap; success resets it", "[pools]") {
  FakeClock clock;
  CircuitBreaker b(kPolicy);
  for (int i = 0; i < 3; ++i) b.record_failure(clock.now());
  for (auto expected : {2000ms, 3000ms, 3000ms}) {
    clock.advance(b.retry_after(clock.now()));
    REQUIRE(b.state(clock.now()) == BreakerState::HalfOpen);
    REQUIRE(b.record_failure(clock.now()));
    REQUIRE(b.current_delay() == expected);
    REQUIRE(b.probe_at() == clock.in(expected));
    REQUIRE_FALSE(b.record_failure(clock.now()));  // while open: no extension
    REQUIRE(b.probe_at() == clock.in(expected));
  }
  REQUIRE(b.record_success());  // a success while open closes it too
  REQUIRE(b.current_delay() == 1000ms);
  for (int i = 0; i < 3; ++i) b.record_failure(clock.now());
  REQUIRE(b.probe_at() == clock.in(1000ms));
}

TEST_CASE("breaker states have stable names", "[pools]") {
  CHECK(std::string(to_string(BreakerState::Closed)) == "closed");
  CHECK(std::string(to_string(BreakerState::Open)) == "open");
  CHECK(std::string(to_string(BreakerState::HalfOpen)) == "half_open");
}
