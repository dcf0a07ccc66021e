// Property (issue 13, item 2): whatever happens to its probes, a tripped breaker never stays open
// or half-open longer than its current delay without a probe starting.
//
// Random sequences drive a BulkheadAdmission (which owns the breaker and its probe leases) the
// way src/ does: clients arrive and may become the probe; connects succeed, fail, hang forever or
// lose their client; leases end by every path; the clock steps. A background prober, like
// src/breaker_prober.cpp's, starts a probe whenever next_probe_at() says one is due, and the
// clock never steps past that time (a timer fires then). After every step the test checks, from
// what it observed itself, that the time since the breaker (re)opened or since the last probe
// started is within the current delay; and that no second probe starts while one is in flight.
// Bounded: a fixed set of seeds, a fixed number of steps each; time is a parameter, no sleeping.
#include "unit/pools/bulkhead_harness.hpp"

#include <algorithm>
#include <random>
#include <variant>
#include <vector>

namespace {

using namespace sluice::test;
using sluice::pools::BreakerState;
using sluice::pools::Granted;
using sluice::pools::ProbeId;
using sluice::pools::Queued;
using TimePoint = std::chrono::steady_clock::time_point;

// What the runs exercised, so that the property is not met vacuously.
struct Coverage {
  int client_probes = 0;      // an arrival became the probe
  int background_probes = 0;  // the prober started one
  int hung_probes = 0;        // a probe still without a verdict when the next one started
  int ended_early = 0;        // a probe ended without a verdict within its delay
};

// A connect in flight: for a client's lease (maybe the probe's), or the background prober's.
struct Connect {
  std::optional<LeaseId> lease;  // none: a background probe (or a lease held for good)
  ProbeId probe = 0;             // the background probe's id
  std::uint64_t serial = 0;      // the test's name for this connect
  bool done = false;             // the connect has reported; a lease may still run
};

class Run {
 public:
  Run(std::uint64_t seed, Coverage& coverage) : s_(policy(), seed), rng_(seed), cov_(coverage) {}

  void step() {
    switch (pick(10)) {
      case 0:
      case 1:
        arrive();
        break;
      case 2:
      case 3:
        connect_outcome();
        break;
      case 4:
        finish_lease();
        break;
      case 5:
        leave_queue();
        break;
      default:
        step_clock();
        break;
    }
    background_prober();
    check();
  }

 private:
  static Policy policy() {
    Policy p{.capacity = 3, .bulkheads = {bulkhead("app", 0, 0, 3, 4, 5000ms)}};
    p.breaker = {
        .failure_threshold = 3, .open_delay = 1000ms, .max_open_delay = 8000ms, .backoff = 2};
    return p;
  }

  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_);
  }
  TimePoint now() const { return s_.clock.now(); }
  BreakerState state() const { return s_.a.breaker_state(now()); }

  // Runs `event`, noting a (re)opening it caused: the anchor of the next wait.
  template <class F>
  void observe(F&& event) {
    const BreakerState before = state();
    event();
    s_.check();
    if (before != BreakerState::Open && state() == BreakerState::Open) anchor_ = now();
  }

  // Returns the new connect's serial.
  std::uint64_t started_probe() {
    // No second probe while one started less than the delay ago and is still without a verdict.
    if (in_flight_since_ && now() - *in_flight_since_ < delay_at_start_) {
      FAIL("a second probe started " << (now() - *in_flight_since_).count() << "ns after one");
    }
    if (in_flight_since_) ++cov_.hung_probes;
    anchor_ = now();
    in_flight_since_ = now();
    delay_at_start_ = s_.a.breaker_delay();
    probe_serial_ = ++serials_;
    return probe_serial_;
  }
  // Any verdict ends the probe in flight: a success closes the breaker, a failure opens it.
  void verdict() { in_flight_since_.reset(); }
  // Connect `serial` ended without a verdict: if it was the probe in flight, it is over.
  void ended(std::uint64_t serial) {
    if (serial == probe_serial_ && in_flight_since_ &&
        now() - *in_flight_since_ < delay_at_start_) {
      in_flight_since_.reset();
      ++cov_.ended_early;
    }
  }

  void arrive() {
    observe([&] {
      AcquireResult r = s_.a.try_acquire(s_.id("app"), kNoGroup, now());
      if (const auto* g = std::get_if<Granted>(&r)) {
        if (g->probe) ++cov_.client_probes;
        const std::uint64_t serial = g->probe ? started_probe() : ++serials_;
        connects_.push_back(Connect{.lease = g->lease, .serial = serial});
      } else if (const auto* q = std::get_if<Queued>(&r)) {
        tickets_.push_back(q->ticket);
      }
    });
  }

  void connect_outcome() {
    std::vector<std::size_t> pending;
    for (std::size_t i = 0; i < connects_.size(); ++i) {
      if (!connects_[i].done) pending.push_back(i);
    }
    if (pending.empty()) return;
    const std::size_t i = pending[pick(pending.size())];
    // A copy: grants() appends to connects_, which would leave a reference dangling.
    const Connect c = connects_[i];
    switch (pick(8)) {
      case 0:  // the server answered: success
        observe([&] {
          s_.a.record_connect_success(now());
          verdict();
        });
        connects_[i].done = true;
        break;
      case 1:  // the connect failed (maybe long after its probe's delay): its lease ends Failed
        observe([&] {
          forget(s_.a.record_connect_failure(now()));
          verdict();
          if (c.lease) grants(s_.a.release(*c.lease, now(), LeaseOutcome::Failed));
        });
        connects_.erase(connects_.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      case 2:  // no verdict: the client left, or a login error that says nothing of the server
        observe([&] {
          if (c.lease) {
            grants(s_.a.release(*c.lease, now(),
                                pick(2) ? LeaseOutcome::Ignored : LeaseOutcome::Failed));
          } else {
            s_.a.end_probe(c.probe, now());
          }
          ended(c.serial);
        });
        connects_.erase(connects_.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      case 3:  // it hangs for good: nothing ever comes back, its lease is never released
        connects_[i].done = true;
        connects_[i].lease.reset();
        break;
      default:  // still hanging for now; it may answer later
        break;
    }
  }

  void finish_lease() {
    std::vector<std::size_t> running;
    for (std::size_t i = 0; i < connects_.size(); ++i) {
      if (connects_[i].done && connects_[i].lease) running.push_back(i);
    }
    if (running.empty()) return;
    const std::size_t i = running[pick(running.size())];
    observe([&] { grants(s_.a.release(*connects_[i].lease, now(), LeaseOutcome::Completed)); });
    connects_.erase(connects_.begin() + static_cast<std::ptrdiff_t>(i));
  }

  void leave_queue() {
    observe([&] {
      if (!tickets_.empty() && pick(2) == 0) {
        const std::size_t i = pick(tickets_.size());
        s_.a.cancel(tickets_[i], now());
        tickets_.erase(tickets_.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        forget(s_.a.expire(now()));
      }
    });
  }

  // Up to 2.5 s on, but never past a due probe: the background prober's timer fires then.
  void step_clock() {
    TimePoint to = now() + std::chrono::milliseconds(pick(2501));
    if (auto due = s_.a.next_probe_at(now())) to = std::min(to, std::max(now(), *due));
    observe([&] { s_.clock.advance(to - now()); });
  }

  void background_prober() {
    const std::optional<TimePoint> due = s_.a.next_probe_at(now());
    if (!due || *due > now()) return;
    // Now and then an arrival at this very instant gets there first (the clock cannot move on
    // past a due probe either way: step_clock() stops there).
    if (pick(2) == 0) return;
    std::optional<ProbeId> probe;
    observe([&] { probe = s_.a.start_probe(now()); });
    REQUIRE(probe.has_value());  // due means it may start
    ++cov_.background_probes;
    connects_.push_back(Connect{.probe = *probe, .serial = started_probe()});
  }

  void check() {
    if (state() == BreakerState::Closed) {
      anchor_.reset();
      in_flight_since_.reset();
      return;
    }
    REQUIRE(anchor_.has_value());
    INFO("tripped, " << (now() - *anchor_).count() << "ns since it opened or a probe started");
    REQUIRE(now() - *anchor_ <= s_.a.breaker_delay());
    const std::optional<TimePoint> due = s_.a.next_probe_at(now());
    REQUIRE(due.has_value());
    REQUIRE(*due <= *anchor_ + s_.a.breaker_delay());
  }

  void grants(const std::vector<HandOff>& handed) {
    for (const HandOff& h : handed) {
      std::erase(tickets_, h.ticket);
      connects_.push_back(Connect{.lease = h.lease});
    }
  }
  void forget(const std::vector<Rejection>& rejected) {
    for (const Rejection& r : rejected) std::erase(tickets_, r.ticket);
  }

  Script s_;
  std::mt19937_64 rng_;
  Coverage& cov_;
  std::vector<Connect> connects_;
  std::vector<TicketId> tickets_;
  std::optional<TimePoint> anchor_;           // the breaker (re)opened or a probe started
  std::optional<TimePoint> in_flight_since_;  // the last probe, until its verdict or end
  std::chrono::milliseconds delay_at_start_{0};
  std::uint64_t probe_serial_ = 0;  // the last probe started
  std::uint64_t serials_ = 0;
};

}  // namespace

TEST_CASE("a tripped breaker probes again within its delay whatever happens to its probes",
          "[pools]") {
  Coverage coverage;
  for (std::uint64_t seed = 1; seed <= 300; ++seed) {
    INFO("seed " << seed);
    Run run(seed, coverage);
    for (int i = 0; i < 400; ++i) run.step();
  }
  CHECK(coverage.client_probes > 20);
  CHECK(coverage.background_probes > 100);
  CHECK(coverage.hung_probes > 100);
  CHECK(coverage.ended_early > 20);
}
