// BulkheadAdmission::try_grant(): the immediate grant without side effects otherwise. Two
// admissions run the same random workload in lockstep, one deciding with try_acquire() alone,
// the other with try_grant() first and try_acquire() only when try_grant() says nullopt: every
// decision, id, statistic and retry hint must be the same.
#include "unit/pools/bulkhead_harness.hpp"

#include <random>

namespace {

using namespace sluice::test;
using sluice::pools::BulkheadStats;
using sluice::pools::Granted;
using sluice::pools::Queued;
using sluice::pools::RateLimit;

std::string text(const AcquireResult& r) {
  if (const auto* g = std::get_if<Granted>(&r)) {
    return "granted " + std::to_string(g->lease) + (g->probe ? " probe" : "");
  }
  if (const auto* q = std::get_if<Queued>(&r)) return "queued " + std::to_string(q->ticket);
  const auto& f = std::get<Refused>(r);
  return std::string("refused ") + sluice::pools::to_string(f.reason) + " retry " +
         std::to_string(f.retry_after.count()) + " waiters " + std::to_string(f.waiters);
}

std::string text(const BulkheadStats& s) {
  std::string out = s.name + " in_use " + std::to_string(s.in_use) + " waiters " +
                    std::to_string(s.waiters) + " admitted " + std::to_string(s.admitted) +
                    " handed_off " + std::to_string(s.handed_off) + " queued " +
                    std::to_string(s.queued) + " refused " + std::to_string(s.refused_total()) +
                    " lifo " + std::to_string(s.lifo);
  if (s.mean_hold) out += " hold " + std::to_string(s.mean_hold->count());
  return out;
}

std::string state(const BulkheadAdmission& a, sluice::pools::TimePoint now) {
  std::string out;
  for (BulkheadId id = 0; id < a.bulkhead_count(); ++id) out += text(a.stats(id, now)) + "\n";
  const auto s = a.server_stats(now);
  out += "server in_use " + std::to_string(s.in_use) + " waiters " + std::to_string(s.waiters) +
         " breaker " + sluice::pools::to_string(s.breaker);
  return out;
}

Policy workload_policy(unsigned seed) {
  BulkheadPolicy critical = bulkhead("critical", 0, 2, 4, 3, 50ms);
  BulkheadPolicy batch = bulkhead("batch", 1, 0, 5, 4, 80ms);
  if (seed % 2 == 0) batch.new_transactions = RateLimit{.per_second = 200, .burst = 3};
  Policy p{.capacity = 6, .bulkheads = {critical, batch}};
  p.breaker.failure_threshold = 2;
  p.breaker.open_delay = 20ms;
  return p;
}

}  // namespace

TEST_CASE("try_grant then try_acquire decides exactly as try_acquire alone", "[pools]") {
  for (unsigned seed = 1; seed <= 30; ++seed) {
    INFO("seed " << seed);
    BulkheadAdmission plain = make_admission(workload_policy(seed), seed);
    BulkheadAdmission fast = make_admission(workload_policy(seed), seed);
    const GroupId group_a = plain.add_group(3);
    REQUIRE(fast.add_group(3) == group_a);
    FakeClock clock;
    std::mt19937 rng(seed);
    std::vector<LeaseId> leases;
    std::vector<TicketId> tickets;
    int granted_fast = 0;
    for (int step = 0; step < 2000; ++step) {
      const auto now = clock.now();
      switch (rng() % 8) {
        case 0:
        case 1:
        case 2: {
          const BulkheadId b = rng() % plain.bulkhead_count();
          const GroupId g = rng() % 2 == 0 ? kNoGroup : group_a;
          const AcquireResult expected = plain.try_acquire(b, g, now);
          AcquireResult got;
          const std::string before = state(fast, now);
          if (auto lease = fast.try_grant(b, g, now)) {
            got = Granted{.lease = *lease};
            ++granted_fast;
          } else {
            REQUIRE(state(fast, now) == before);  // nullopt changed nothing
            got = fast.try_acquire(b, g, now);
          }
          REQUIRE(text(got) == text(expected));
          if (const auto* gr = std::get_if<Granted>(&expected)) leases.push_back(gr->lease);
          if (const auto* q = std::get_if<Queued>(&expected)) tickets.push_back(q->ticket);
          break;
        }
        case 3:
        case 4:
          if (!leases.empty()) {
            const std::size_t i = rng() % leases.size();
            const auto outcome = static_cast<LeaseOutcome>(rng() % 4);
            const auto a = plain.release(leases[i], now, outcome);
            const auto b = fast.release(leases[i], now, outcome);
            REQUIRE(a.size() == b.size());
            for (std::size_t k = 0; k < a.size(); ++k) {
              REQUIRE(a[k].lease == b[k].lease);
              REQUIRE(a[k].ticket == b[k].ticket);
              leases.push_back(a[k].lease);
            }
            leases.erase(leases.begin() + static_cast<std::ptrdiff_t>(i));
          }
          break;
        case 5:
          if (!tickets.empty()) {
            const std::size_t i = rng() % tickets.size();
            REQUIRE(plain.cancel(tickets[i], now) == fast.cancel(tickets[i], now));
            tickets.erase(tickets.begin() + static_cast<std::ptrdiff_t>(i));
          }
          REQUIRE(plain.expire(now).size() == fast.expire(now).size());
          break;
        case 6:
          if (rng() % 4 == 0) {
            REQUIRE(plain.record_connect_failure(now).size() ==
                    fast.record_connect_failure(now).size());
          } else if (rng() % 3 == 0) {
            plain.record_connect_success(now);
            fast.record_connect_success(now);
          }
          break;
        default:
          clock.advance(std::chrono::milliseconds(rng() % 15));
          break;
      }
      REQUIRE(state(fast, clock.now()) == state(plain, clock.now()));
      REQUIRE(fast.check_invariants() == std::nullopt);
    }
    CHECK(granted_fast > 0);
  }
}

TEST_CASE("try_grant refuses nothing and queues nothing", "[pools]") {
  Script s(Policy{.capacity = 2, .bulkheads = {bulkhead("only", 0, 0, 2, 4)}});
  const BulkheadId only = s.id("only");
  REQUIRE(s.a.try_grant(only, kNoGroup, s.clock.now()) == LeaseId{1});
  REQUIRE(s.a.try_grant(only, kNoGroup, s.clock.now()) == LeaseId{2});
  // Full: no lease, no ticket taken from the id counter, no refusal counted.
  REQUIRE_FALSE(s.a.try_grant(only, kNoGroup, s.clock.now()).has_value());
  REQUIRE(s.stats("only").refused_total() == 0);
  REQUIRE(s.stats("only").queued == 0);
  REQUIRE(s.acquire("only") == "queued ticket 3");
  s.check();
  // A group at its limit.
  const GroupId g = s.a.add_group(0);
  REQUIRE(s.release(1) == Lines{"ticket 3 -> lease 4 only"});
  REQUIRE(s.release(2).empty());
  REQUIRE_FALSE(s.a.try_grant(only, g, s.clock.now()).has_value());
  REQUIRE(s.a.try_grant(only, kNoGroup, s.clock.now()) == LeaseId{5});
  s.check();
}
