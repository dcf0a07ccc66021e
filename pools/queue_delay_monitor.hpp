// QueueDelayMonitor: decides, CoDel-style, when a wait queue is congested enough to be served
// newest-first (adaptive LIFO).
//
// CoDel (Nichols & Jacobson, "Controlling Queue Delay", 2012) calls a queue bad when its
// *minimum* delay over an interval stays above a target: a burst that drains quickly has a
// minimum near zero, a standing queue does not. We take the delay sample to be the age of the
// oldest waiter, sampled on every admission event (the owner calls observe() before and after
// each change). Two reasons not to use CoDel's sojourn-at-dequeue: when no slot frees nothing is
// dequeued, so dequeue samples go silent exactly when congestion is worst; and once we serve
// LIFO the dequeued waiters are the newest, whose short sojourns would flip us straight back to
// FIFO (oscillation). The oldest waiter's age only falls when the backlog really clears.
//
// LIFO turns on when every sample over a whole `interval` was >= `target`; it turns off at once
// when a sample falls below `target` or the queue empties. Between events the oldest age only
// grows, so the minimum over an interval is always one of the samples taken right after an
// event; the rule is exact for the samples it is given and deterministic given `now`.
//
// Pure value type, time passed in; single-threaded.
#pragma once

#include <algorithm>
#include <chrono>
#include <optional>

namespace sluice::pools {

class QueueDelayMonitor {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Nanos = std::chrono::nanoseconds;

  void configure(bool enabled, Nanos target, Nanos interval) {
    enabled_ = enabled;
    target_ = target;
    interval_ = interval;
    if (!enabled_) lifo_ = false;
  }

  // `oldest_age`: age of the oldest waiter at `now`; nullopt when the queue is empty.
  void observe(TimePoint now, std::optional<Nanos> oldest_age) {
    if (!oldest_age) {
      lifo_ = false;
      measuring_ = false;
      return;
    }
    const Nanos age = *oldest_age;
    if (!measuring_) {
      measuring_ = true;
      interval_start_ = now;
      interval_min_ = age;
      return;
    }
    if (age < target_) lifo_ = false;
    interval_min_ = std::min(interval_min_, age);
    if (now - interval_start_ >= interval_) {
      if (enabled_ && interval_min_ >= target_) lifo_ = true;
      interval_start_ = now;
      interval_min_ = age;
    }
  }

  bool lifo() const { return lifo_; }
  Nanos target() const { return target_; }

 private:
  bool enabled_ = true;
  Nanos target_{0};
  Nanos interval_{0};
  bool lifo_ = false;
  bool measuring_ = false;  // an interval is open (the queue has been non-empty since its start)
  TimePoint interval_start_{};
  Nanos interval_min_{0};
};

}  // namespace sluice::pools
