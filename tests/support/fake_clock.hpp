// FakeClock: a steady_clock time point that only moves when a test advances it.
//
// Pure cores take `now` as a parameter; tests pass `clock.now()` and step time with `advance()`
// (any std::chrono duration), so no test ever sleeps. Starts well after the clock's epoch so that
// a default-constructed TimePoint never coincides with "now". Single-threaded, test-only.
#pragma once

#include <chrono>

namespace sluice::test {

class FakeClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  FakeClock() = default;
  explicit FakeClock(TimePoint start) : now_(start) {}

  TimePoint now() const { return now_; }

  // Moves time forward by `d` and returns the new now.
  template <class Rep, class Period>
  TimePoint advance(std::chrono::duration<Rep, Period> d) {
    now_ += std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
    return now_;
  }

  // The time point `d` from now, without moving the clock (for deadlines).
  template <class Rep, class Period>
  TimePoint in(std::chrono::duration<Rep, Period> d) const {
    return now_ + std::chrono::duration_cast<std::chrono::steady_clock::duration>(d);
  }

 private:
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
};

}  // namespace sluice::test
