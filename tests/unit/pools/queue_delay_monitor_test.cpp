// pools::QueueDelayMonitor: the CoDel-style switch between FIFO and LIFO, sample by sample.
#include "pools/queue_delay_monitor.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>

namespace {

using namespace std::chrono_literals;
using sluice::pools::QueueDelayMonitor;
using sluice::test::FakeClock;

struct Monitor {
  explicit Monitor(bool enabled = true) { m.configure(enabled, 50ms, 100ms); }
  // Moves the clock to t0 + `at` and samples the oldest waiter's age (nullopt: empty queue).
  bool at(std::chrono::milliseconds at, std::optional<std::chrono::milliseconds> age) {
    clock = FakeClock(t0 + at);
    m.observe(clock.now(), age);
    return m.lifo();
  }
  FakeClock clock;
  FakeClock::TimePoint t0 = clock.now();
  QueueDelayMonitor m;
};

}  // namespace

TEST_CASE("LIFO starts after a whole interval above target and stops below it", "[pools]") {
  Monitor x;
  REQUIRE_FALSE(x.at(0ms, 0ms));      // first waiter: an interval starts
  REQUIRE_FALSE(x.at(100ms, 100ms));  // that interval's minimum was 0
  REQUIRE_FALSE(x.at(150ms, 150ms));
  REQUIRE(x.at(200ms, 200ms));       // [100, 200] never went below 100ms >= 50ms
  REQUIRE(x.at(210ms, 60ms));        // the oldest left; the next is still above target
  REQUIRE_FALSE(x.at(220ms, 30ms));  // below target: FIFO at once
  REQUIRE_FALSE(x.at(400ms, std::nullopt));
}

TEST_CASE("a dip below target within the interval keeps the queue FIFO", "[pools]") {
  Monitor x;
  REQUIRE_FALSE(x.at(0ms, 0ms));
  REQUIRE_FALSE(x.at(100ms, 100ms));
  REQUIRE_FALSE(x.at(150ms, 40ms));  // a burst drained and refilled
  REQUIRE_FALSE(x.at(200ms, 90ms));  // the minimum over [100, 200] was 40ms
  REQUIRE(x.at(300ms, 190ms));       // [200, 300] stayed above
}

TEST_CASE("an emptied queue resets the measurement", "[pools]") {
  Monitor x;
  REQUIRE_FALSE(x.at(0ms, 0ms));
  REQUIRE_FALSE(x.at(100ms, 100ms));
  REQUIRE(x.at(200ms, 200ms));
  REQUIRE_FALSE(x.at(250ms, std::nullopt));
  REQUIRE_FALSE(x.at(260ms, 300ms));  // a new interval starts; no verdict yet
  REQUIRE_FALSE(x.at(359ms, 399ms));
  REQUIRE(x.at(360ms, 400ms));
}

TEST_CASE("a disabled monitor never switches to LIFO", "[pools]") {
  Monitor x(false);
  for (int i = 0; i <= 10; ++i) {
    REQUIRE_FALSE(
        x.at(std::chrono::milliseconds(100 * i), std::chrono::milliseconds(100 * i + 100)));
  }
}
