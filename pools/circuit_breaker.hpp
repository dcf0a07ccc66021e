// CircuitBreaker: stops queueing clients behind a server whose connects keep failing, and says
// when to try the server again.
//
// Closed: normal service; consecutive connect failures are counted and any success resets the
// count. After `failure_threshold` consecutive failures it opens for `open_delay`: admission then
// refuses at once (server_down) instead of queueing work that cannot be served. Once the delay
// has passed it is half-open: one *probe* (a connect, or a client's transaction on an open
// connection) may start. A success closes it and resets the delay; a failure while half-open
// reopens it with the delay multiplied by `backoff`, capped at `max_open_delay`. Failures
// reported while open (connects started before it opened) do not extend the delay.
//
// A probe is given the current delay to come back with a verdict. Whatever else happens to it,
// the next probe is due within that delay (issue 13, item 2): a probe that ends without a verdict
// (end_probe: its client left, its lease ended) makes the next one due at once; a probe still
// without a verdict when its delay has passed (a connect that hangs) no longer blocks the next,
// which is due then and starts with the delay backed off, as after a failure. So while the
// breaker is tripped, the time since it (re)opened or since the last probe started or ended never
// exceeds the current delay before the next probe is due (next_probe_at), and probes never come
// closer together than that unless one ended early.
//
// Every transition is derived from `now`, so no timer is needed inside; an owner that wants
// recovery without client traffic arms one at next_probe_at() and calls start_probe() then.
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

// Names one probe; 0 is never issued.
using ProbeId = std::uint64_t;

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

  // ---- probes --------------------------------------------------------------------------------
  // A probe that started less than the current delay ago and has no verdict yet.
  bool probe_in_flight(TimePoint now) const;
  // Half-open with no probe in flight: this probe starts now (its id); otherwise nullopt and
  // nothing changes. A probe left without a verdict past its delay backs the delay off first.
  std::optional<ProbeId> start_probe(TimePoint now);
  // The probe `id` ended without a verdict (no connect was made or finished): the next probe is
  // due at once. Ignored for a probe that is no longer the one in flight.
  void end_probe(ProbeId id, TimePoint now);
  // When the next probe is due: when an Open breaker turns half-open, when the probe in flight
  // runs out of time, or (half-open, none in flight) `now`. nullopt when closed.
  std::optional<TimePoint> next_probe_at(TimePoint now) const;

  // While Open: time until half-open. While HalfOpen: the current delay (a probe is due or in
  // flight; its verdict comes within about that long). Closed: zero.
  std::chrono::nanoseconds retry_after(TimePoint now) const;
  // When an Open breaker turns half-open; nullopt when closed.
  std::optional<TimePoint> probe_at() const;
  std::uint32_t consecutive_failures() const { return failures_; }
  std::chrono::milliseconds current_delay() const { return delay_; }

 private:
  void trip(TimePoint now);
  void back_off();

  BreakerPolicy policy_;
  bool tripped_ = false;
  TimePoint probe_at_{};
  std::chrono::milliseconds delay_;
  std::uint32_t failures_ = 0;
  // The last probe started; it is in flight until a verdict, end_probe() or its delay passes.
  ProbeId probe_ = 0;
  bool probe_open_ = false;  // probe_ has had no verdict and has not ended
  TimePoint probe_started_{};
  ProbeId next_probe_ = 1;
};

}  // namespace sluice::pools
