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

TEST_CASE("one probe at a time, each given the current delay for its verdict", "[pools]") {
  FakeClock clock;
  CircuitBreaker b(kPolicy);
  REQUIRE(b.next_probe_at(clock.now()) == std::nullopt);  // closed
  REQUIRE(b.start_probe(clock.now()) == std::nullopt);
  for (int i = 0; i < 3; ++i) b.record_failure(clock.now());
  REQUIRE(b.next_probe_at(clock.now()) == clock.in(1000ms));  // open: when it turns half-open
  REQUIRE(b.start_probe(clock.now()) == std::nullopt);
  clock.advance(1000ms);
  REQUIRE(b.next_probe_at(clock.now()) == clock.now());  // half-open, nothing in flight: due
  const auto first = b.start_probe(clock.now());
  REQUIRE(first.has_value());
  REQUIRE(b.probe_in_flight(clock.now()));
  REQUIRE(b.start_probe(clock.now()) == std::nullopt);
  REQUIRE(b.next_probe_at(clock.now()) == clock.in(1000ms));
  REQUIRE(b.state(clock.now()) == BreakerState::HalfOpen);

  SECTION("a probe that ends without a verdict makes the next one due at once") {
    clock.advance(300ms);
    b.end_probe(*first, clock.now());
    REQUIRE_FALSE(b.probe_in_flight(clock.now()));
    REQUIRE(b.next_probe_at(clock.now()) == clock.now());
    const auto second = b.start_probe(clock.now());
    REQUIRE(second.has_value());
    REQUIRE(*second != *first);
    REQUIRE(b.current_delay() == 1000ms);  // no verdict, no backoff
    b.end_probe(*first, clock.now());      // a stale id changes nothing
    REQUIRE(b.probe_in_flight(clock.now()));
  }
  SECTION("a probe that hangs past its delay no longer blocks the next, which backs off") {
    clock.advance(999ms);
    REQUIRE(b.start_probe(clock.now()) == std::nullopt);
    clock.advance(1ms);
    REQUIRE_FALSE(b.probe_in_flight(clock.now()));
    REQUIRE(b.next_probe_at(clock.now()) == clock.now());
    const auto second = b.start_probe(clock.now());
    REQUIRE(second.has_value());
    REQUIRE(b.current_delay() == 2000ms);
    REQUIRE(b.next_probe_at(clock.now()) == clock.in(2000ms));
    b.end_probe(*first, clock.now());  // the hung one ending says nothing about the new one
    REQUIRE(b.probe_in_flight(clock.now()));
    SECTION("its failure, when it comes, reopens the breaker once") {
      REQUIRE(b.record_failure(clock.now()));
      REQUIRE(b.current_delay() == 3000ms);  // capped
      REQUIRE(b.state(clock.now()) == BreakerState::Open);
      REQUIRE_FALSE(b.probe_in_flight(clock.now()));
      REQUIRE(b.next_probe_at(clock.now()) == clock.in(3000ms));
    }
    SECTION("a late success closes it") {
      REQUIRE(b.record_success());
      REQUIRE(b.next_probe_at(clock.now()) == std::nullopt);
      REQUIRE_FALSE(b.probe_in_flight(clock.now()));
    }
  }
  SECTION("a failed probe reopens it: the next is due after the doubled delay") {
    clock.advance(5000ms);  // the verdict comes late
    REQUIRE(b.record_failure(clock.now()));
    REQUIRE(b.current_delay() == 2000ms);
    REQUIRE(b.next_probe_at(clock.now()) == clock.in(2000ms));
  }
}
