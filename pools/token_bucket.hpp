// TokenBucket: a rate limit of `per_second` events per second with bursts of up to `burst` events.
//
// Kept in the GCRA form (the "virtual scheduling" token bucket of ATM and of many HTTP rate
// limiters): instead of a fractional token count refilled on every call, the bucket stores one
// time point, the theoretical arrival time (TAT) of the next event at the sustained rate. An
// event at `now` conforms when now >= TAT - (burst - 1) / rate, and taking it moves TAT one
// emission interval past max(TAT, now). All arithmetic is in integer nanoseconds, so results are
// exact and repeatable (no floating-point drift in refills), and a quiet bucket refills itself
// without a timer. A bucket starts full.
//
// Pure value type: the caller passes `now` (std::chrono::steady_clock) to every call; no clock
// reads, no I/O, no locks. Single-threaded: its owner serialises calls.
#pragma once

#include <chrono>
#include <cstdint>

namespace sluice::pools {

// A configured limit. `per_second` 0 turns the limit off (every take succeeds).
struct RateLimit {
  double per_second = 0;    // sustained events per second; 0 = off
  std::uint32_t burst = 0;  // events allowed back to back after a quiet period; >= 1 when on
  bool enabled() const { return per_second > 0; }
};

class TokenBucket {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  TokenBucket() = default;  // off
  explicit TokenBucket(RateLimit limit);

  // Takes one token if one is available at `now`; false (and nothing taken) otherwise.
  bool try_take(TimePoint now);
  // How long from `now` until a token is available (zero when one is available now).
  std::chrono::nanoseconds time_to_next(TimePoint now) const;
  // Tokens available at `now` (burst at most); a large number when the limit is off.
  std::uint32_t available(TimePoint now) const;

  // Live tuning: keeps the bucket's history, but never leaves it emptier than "empty at `now`"
  // under the new limit (so lowering the rate cannot lock callers out for longer than one
  // new emission interval), nor fuller than the new burst.
  void reconfigure(RateLimit limit, TimePoint now);
  const RateLimit& limit() const { return limit_; }

 private:
  void derive_intervals();

  RateLimit limit_;
  std::chrono::nanoseconds interval_{0};   // 1 s / per_second: the emission interval
  std::chrono::nanoseconds tolerance_{0};  // (burst - 1) * interval_
  TimePoint tat_{};                        // theoretical arrival time of the next event
};

}  // namespace sluice::pools
