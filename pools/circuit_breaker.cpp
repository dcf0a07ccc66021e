#include "pools/circuit_breaker.hpp"

#include <algorithm>

namespace sluice::pools {

const char* to_string(BreakerState s) {
  switch (s) {
    case BreakerState::Closed:
      return "closed";
    case BreakerState::Open:
      return "open";
    case BreakerState::HalfOpen:
      return "half_open";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(BreakerPolicy policy) : policy_(policy), delay_(policy.open_delay) {}

void CircuitBreaker::set_policy(BreakerPolicy policy) {
  policy_ = policy;
  // An open breaker keeps its current probe time; the next delay obeys the new bounds.
  delay_ = std::clamp(delay_, policy_.open_delay, policy_.max_open_delay);
  if (!tripped_) delay_ = policy_.open_delay;
}

BreakerState CircuitBreaker::state(TimePoint now) const {
  if (!tripped_) return BreakerState::Closed;
  return now < probe_at_ ? BreakerState::Open : BreakerState::HalfOpen;
}

void CircuitBreaker::trip(TimePoint now) {
  tripped_ = true;
  probe_at_ = now + delay_;
  probe_open_ = false;  // a probe still running is an ordinary connect now
}

void CircuitBreaker::back_off() {
  const auto next = delay_ * policy_.backoff;
  delay_ = std::min<std::chrono::milliseconds>(next, policy_.max_open_delay);
}

bool CircuitBreaker::record_failure(TimePoint now) {
  ++failures_;
  switch (state(now)) {
    case BreakerState::Closed:
      if (failures_ < policy_.failure_threshold) return false;
      delay_ = policy_.open_delay;
      trip(now);
      return true;
    case BreakerState::Open:
      return false;  // a connect that started before the breaker opened
    case BreakerState::HalfOpen:
      back_off();
      trip(now);
      return true;
  }
  return false;
}

bool CircuitBreaker::record_success() {
  failures_ = 0;
  if (!tripped_) return false;
  tripped_ = false;
  probe_open_ = false;
  delay_ = policy_.open_delay;
  return true;
}

bool CircuitBreaker::probe_in_flight(TimePoint now) const {
  return tripped_ && probe_open_ && now - probe_started_ < delay_;
}

std::optional<ProbeId> CircuitBreaker::start_probe(TimePoint now) {
  if (state(now) != BreakerState::HalfOpen || probe_in_flight(now)) return std::nullopt;
  // The last probe ran out of time without a verdict (a connect that hangs): as after a failure,
  // the next one gets a longer delay, so that hanging connects do not pile up.
  if (probe_open_) back_off();
  probe_ = next_probe_++;
  probe_open_ = true;
  probe_started_ = now;
  return probe_;
}

void CircuitBreaker::end_probe(ProbeId id, TimePoint now) {
  if (id == probe_ && probe_in_flight(now)) probe_open_ = false;
}

std::optional<CircuitBreaker::TimePoint> CircuitBreaker::next_probe_at(TimePoint now) const {
  switch (state(now)) {
    case BreakerState::Closed:
      return std::nullopt;
    case BreakerState::Open:
      return probe_at_;
    case BreakerState::HalfOpen:
      if (probe_in_flight(now)) return probe_started_ + delay_;
      return now;
  }
  return std::nullopt;
}

std::chrono::nanoseconds CircuitBreaker::retry_after(TimePoint now) const {
  switch (state(now)) {
    case BreakerState::Closed:
      return std::chrono::nanoseconds{0};
    case BreakerState::Open:
      return probe_at_ - now;
    case BreakerState::HalfOpen:
      return delay_;
  }
  return std::chrono::nanoseconds{0};
}

std::optional<CircuitBreaker::TimePoint> CircuitBreaker::probe_at() const {
  if (!tripped_) return std::nullopt;
  return probe_at_;
}

}  // namespace sluice::pools
