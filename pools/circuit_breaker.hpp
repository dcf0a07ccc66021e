// CircuitBreaker: stops queueing clients behind a server whose connects keep failing.
//
// Closed: normal service; consecutive connect failures are counted and any success resets the
// count. After `failure_threshold` consecutive failures it opens for `open_delay`: admission then
// refuses at once (server_down) instead of queueing work that cannot be served. Once the delay
// has passed it is half-open: the owner lets exactly one request through as a probe (tracked by
// the owner, which knows the probe's lease). A success closes it and resets the delay; a failure
// while half-open reopens it with the delay multiplied by `backoff`, capped at `max_open_delay`.
// Failures reported while open (connects started before it opened) do not extend the delay.
//
// Open -> HalfOpen needs no event: it is derived from `now`, so no timer is needed to leave Open.
// Pure value type, time passed in; single-threaded (the owner serialises calls).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

namespace sluice::pools {

struct BreakerPolicy {
  std::uint32_t failure_threshold = 3;         // consecutive failed connects that open it
  std::chrono::milliseconds open_delay{1000};  // first wait before a probe is allowed
  std::chrono::milliseconds max_open_delay{30000};
  std::uint32_t backoff = 2;  // the delay is multiplied by this after a failed probe
};

enum class BreakerState { Closed, Open, HalfOpen };
const char* to_string(BreakerState s);

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit CircuitBreaker(BreakerPolicy policy = {});
  void set_policy(BreakerPolicy policy);
  const BreakerPolicy& policy() const { return policy_; }

  BreakerState state(TimePoint now) const;
  // True while Open or HalfOpen (whatever `now` is).
  bool tripped() const { return tripped_; }

  // Returns true when this failure opened (or, half-open, reopened) the breaker.
  bool record_failure(TimePoint now);
  // Returns true when this success closed a tripped breaker.
  bool record_success();

  // While Open: time until half-open. While HalfOpen: the current delay (a probe is due or in
  // flight; its verdict comes within about that long). Closed: zero.
  std::chrono::nanoseconds retry_after(TimePoint now) const;
  // When an Open breaker turns half-open; nullopt when closed.
  std::optional<TimePoint> probe_at() const;
  std::uint32_t consecutive_failures() const { return failures_; }
  std::chrono::milliseconds current_delay() const { return delay_; }

 private:
  void trip(TimePoint now);

  BreakerPolicy policy_;
  bool tripped_ = false;
  TimePoint probe_at_{};
  std::chrono::milliseconds delay_;
  std::uint32_t failures_ = 0;
};

}  // namespace sluice::pools
