// Scripted sequences for pools::Admission on a fake clock; check_invariants() after every step.
#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER

#include "pools/admission.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sluice::pools::Admission;
using sluice::pools::Decision;
using sluice::pools::Grant;
using sluice::pools::GroupId;
using sluice::pools::LeaseId;
using sluice::pools::RefuseReason;
using sluice::pools::TicketId;
using sluice::pools::TimePoint;
using sluice::test::FakeClock;

constexpr auto kMaxWait = 30s;
constexpr std::uint32_t kManyWaiters = 16;

// "granted lease 1", "queued ticket 2", "refused queue_full": exact and readable on failure.
std::string describe(const Decision& d) {
  switch (d.kind) {
    case Decision::Kind::Granted:
      return "granted lease " + std::to_string(d.lease);
    case Decision::Kind::Queued:
      return "queued ticket " + std::to_string(d.ticket);
    case Decision::Kind::Refused:
      return std::string("refused ") + sluice::pools::to_string(d.reason);
  }
  return "unknown decision";
}

std::string acquire(Admission& a, GroupId group, const FakeClock& clock,
                    std::chrono::nanoseconds max_wait = kMaxWait) {
  return describe(a.try_acquire(group, clock.now(), clock.in(max_wait)));
}

// "ticket 3 lease 7 group 0": a waiter woken with a lease.
std::vector<std::string> describe(const std::vector<Grant>& grants) {
  std::vector<std::string> out;
  for (const Grant& g : grants) {
    out.push_back("ticket " + std::to_string(g.ticket) + " lease " + std::to_string(g.lease) +
                  " group " + std::to_string(g.group));
  }
  return out;
}

using Handoffs = std::vector<std::string>;

Handoffs release(Admission& a, LeaseId lease, const FakeClock& clock) {
  std::vector<Grant> granted;
  a.release(lease, clock.now(), granted);
  return describe(granted);
}

Handoffs set_capacity(Admission& a, std::uint32_t capacity, const FakeClock& clock) {
  std::vector<Grant> granted;
  a.set_capacity(capacity, clock.now(), granted);
  return describe(granted);
}

Handoffs set_group_limit(Admission& a, GroupId group, std::uint32_t limit, const FakeClock& clock) {
  std::vector<Grant> granted;
  a.set_group_limit(group, limit, clock.now(), granted);
  return describe(granted);
}

std::vector<TicketId> expire(Admission& a, const FakeClock& clock) {
  std::vector<TicketId> expired;
  a.expire(clock.now(), expired);
  return expired;
}

std::vector<TicketId> close(Admission& a) {
  std::vector<TicketId> refused;
  a.close(refused);
  return refused;
}

}  // namespace

TEST_CASE("grants are immediate up to the smaller of group limit and capacity, then queued",
          "[pools]") {
  auto [capacity, limit] = GENERATE(
      table<std::uint32_t, std::uint32_t>({{3, 2}, {2, 3}, {2, 2}, {1, 0}, {0, 1}, {4, 4}}));
  CAPTURE(capacity, limit);
  FakeClock clock;
  Admission a(capacity, kManyWaiters);
  const GroupId g = a.add_group(limit);
  REQUIRE_FALSE(a.check_invariants());

  const std::uint32_t slots = std::min(capacity, limit);
  for (std::uint32_t i = 1; i <= slots; ++i) {
    REQUIRE(acquire(a, g, clock) == "granted lease " + std::to_string(i));
    REQUIRE_FALSE(a.check_invariants());
  }
  REQUIRE(acquire(a, g, clock) == "queued ticket " + std::to_string(slots + 1));
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(a.in_use() == slots);
  REQUIRE(a.waiting() == 1);
  const auto stats = a.group_stats(g);
  REQUIRE(stats.limit == limit);
  REQUIRE(stats.in_use == slots);
  REQUIRE(stats.waiting == 1);
  REQUIRE(stats.granted_total == slots);
}

TEST_CASE("a group at its limit queues while another group still gets slots", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/3, kManyWaiters);
  const GroupId small = a.add_group(1);
  const GroupId big = a.add_group(3);
  REQUIRE(small == 0);
  REQUIRE(big == 1);
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(acquire(a, small, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, small, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, big, clock) == "granted lease 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, big, clock) == "granted lease 4");
  REQUIRE_FALSE(a.check_invariants());
  // The server is now full, so the big group queues too although it is below its own limit.
  REQUIRE(acquire(a, big, clock) == "queued ticket 5");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(a.in_use() == 3);
  REQUIRE(a.waiting() == 2);
  REQUIRE(a.group_stats(small).in_use == 1);
  REQUIRE(a.group_stats(small).waiting == 1);
  REQUIRE(a.group_stats(big).in_use == 2);
  REQUIRE(a.group_stats(big).waiting == 1);
}

TEST_CASE("a freed slot goes to the oldest waiter that may use it", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/2, kManyWaiters);
  const GroupId capped = a.add_group(1);
  const GroupId open = a.add_group(2);
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(acquire(a, capped, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, open, clock) == "granted lease 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, capped, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, open, clock) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, open, clock) == "queued ticket 5");
  REQUIRE_FALSE(a.check_invariants());

  // Ticket 3 is older but its group is at its limit: it is skipped and does not block ticket 4.
  REQUIRE(release(a, 2, clock) == Handoffs{"ticket 4 lease 6 group 1"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(capped).waiting == 1);
  REQUIRE(a.group_stats(open).waiting == 1);

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 3 lease 7 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 6, clock) == Handoffs{"ticket 5 lease 8 group 1"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.waiting() == 0);
  REQUIRE(a.in_use() == 2);
}

TEST_CASE("waiters of different groups are served in arrival order", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g0 = a.add_group(1);
  const GroupId g1 = a.add_group(1);
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(acquire(a, g0, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g1, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g0, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g1, clock) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 5 group 1"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 5, clock) == Handoffs{"ticket 3 lease 6 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 6, clock) == Handoffs{"ticket 4 lease 7 group 1"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 7, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 0);
}

TEST_CASE("no newcomer overtakes a waiter of its own group", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/2, kManyWaiters);
  const GroupId g = a.add_group(1);
  const GroupId other = a.add_group(2);
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());

  // The hand-off goes to ticket 2; a newcomer arriving right after queues behind ticket 3.
  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 4 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 5");
  REQUIRE_FALSE(a.check_invariants());
  // The other group still has room and is not held up by group 0's queue.
  REQUIRE(acquire(a, other, clock) == "granted lease 6");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 6, clock).empty());  // group 0 is at its limit: nobody may take it
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 4, clock) == Handoffs{"ticket 3 lease 7 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 7, clock) == Handoffs{"ticket 5 lease 8 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.waiting() == 0);
}

TEST_CASE("a full queue refuses newcomers of every group with queue_full", "[pools]") {
  const std::uint32_t max_waiters = GENERATE(0u, 1u, 3u);
  CAPTURE(max_waiters);
  FakeClock clock;
  Admission a(/*capacity=*/1, max_waiters);
  const GroupId g0 = a.add_group(1);
  const GroupId g1 = a.add_group(1);
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(acquire(a, g0, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  for (std::uint32_t i = 0; i < max_waiters; ++i) {
    REQUIRE(acquire(a, g0, clock) == "queued ticket " + std::to_string(2 + i));
    REQUIRE_FALSE(a.check_invariants());
  }
  REQUIRE(acquire(a, g0, clock) == "refused queue_full");
  REQUIRE_FALSE(a.check_invariants());
  // The bound is shared by all groups.
  REQUIRE(acquire(a, g1, clock) == "refused queue_full");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(a.waiting() == max_waiters);
  REQUIRE(a.group_stats(g0).refused_total == 1);
  REQUIRE(a.group_stats(g1).refused_total == 1);
  REQUIRE(a.group_stats(g0).waiting == max_waiters);

  if (max_waiters > 0) {
    // A cancelled waiter makes room; refusals consumed no ids.
    REQUIRE(a.cancel(2));
    REQUIRE_FALSE(a.check_invariants());
    REQUIRE(acquire(a, g1, clock) == "queued ticket " + std::to_string(2 + max_waiters));
    REQUIRE_FALSE(a.check_invariants());
  }
}

TEST_CASE("a waiter expires at exactly its deadline and not a nanosecond before", "[pools]") {
  auto [offset, expires] = GENERATE(table<std::chrono::nanoseconds, bool>(
      {{-1ns, false}, {0ns, true}, {1ns, true}, {-1s, false}}));
  CAPTURE(offset.count(), expires);
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(1);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock, 5s) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());

  clock.advance(5s + offset);
  REQUIRE(expire(a, clock) == (expires ? std::vector<TicketId>{2} : std::vector<TicketId>{}));
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.waiting() == (expires ? 0u : 1u));
  REQUIRE(a.group_stats(g).expired_total == (expires ? 1u : 0u));
  // An expired ticket can no longer be cancelled; a waiting one can.
  REQUIRE(a.cancel(2) == !expires);
  REQUIRE_FALSE(a.check_invariants());
}

TEST_CASE("expire removes every due waiter in queue order and keeps the rest", "[pools]") {
  FakeClock clock;
  const TimePoint t0 = clock.now();
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(1);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock, 10s) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock, 5s) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock, 20s) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());

  clock.advance(10s);
  REQUIRE(expire(a, clock) == std::vector<TicketId>{2, 3});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == t0 + 20s);
  REQUIRE(a.group_stats(g).expired_total == 2);

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 4 lease 5 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  clock.advance(1h);
  REQUIRE(expire(a, clock).empty());  // a granted waiter never expires
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g).expired_total == 2);
}

TEST_CASE("next_deadline is the earliest deadline of any waiter", "[pools]") {
  FakeClock clock;
  const TimePoint t0 = clock.now();
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g0 = a.add_group(1);
  const GroupId g1 = a.add_group(1);
  REQUIRE(a.next_deadline() == std::nullopt);

  REQUIRE(acquire(a, g0, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == std::nullopt);  // holders have no deadline
  REQUIRE(acquire(a, g0, clock, 10s) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == t0 + 10s);
  REQUIRE(acquire(a, g1, clock, 5s) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == t0 + 5s);
  REQUIRE(acquire(a, g0, clock, 20s) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == t0 + 5s);

  REQUIRE(a.cancel(3));
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == t0 + 10s);
  clock.advance(10s);
  REQUIRE(expire(a, clock) == std::vector<TicketId>{2});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == t0 + 20s);
  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 4 lease 5 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.next_deadline() == std::nullopt);
}

TEST_CASE("cancel removes a waiter and is false for tickets that are not waiting", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(1);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(a.cancel(3));
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.waiting() == 2);
  REQUIRE(a.group_stats(g).waiting == 2);
  REQUIRE_FALSE(a.cancel(3));  // already cancelled
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE_FALSE(a.cancel(1));  // a lease id, not a waiting ticket
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE_FALSE(a.cancel(99));  // never issued
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 5 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE_FALSE(a.cancel(2));  // granted
  REQUIRE_FALSE(a.check_invariants());
  // The cancelled ticket 3 is skipped: the next hand-off goes to ticket 4.
  REQUIRE(release(a, 5, clock) == Handoffs{"ticket 4 lease 6 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.waiting() == 0);
}

TEST_CASE("a cancel that loses the race to a grant returns false and the lease stays held",
          "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(1);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 3 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE_FALSE(a.cancel(2));
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 1);
  REQUIRE(a.group_stats(g).in_use == 1);

  // The owner must release the lease it was handed; until then nobody else gets the slot.
  REQUIRE(acquire(a, g, clock) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 3, clock) == Handoffs{"ticket 4 lease 5 group 0"});
  REQUIRE_FALSE(a.check_invariants());
}

TEST_CASE("a grant at the deadline keeps the lease", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(1);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock, 5s) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());

  clock.advance(5s);
  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 3 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(expire(a, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 1);
  REQUIRE(a.group_stats(g).expired_total == 0);
  REQUIRE(a.group_stats(g).granted_total == 2);
}

TEST_CASE("releasing a lease twice or an unknown lease changes nothing", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(1);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 4 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 1, clock).empty());  // a second release must not free lease 4's slot
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 99, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 3, clock).empty());  // a ticket id is not a lease
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(a.in_use() == 1);
  REQUIRE(a.waiting() == 1);
  REQUIRE(a.group_stats(g).granted_total == 2);
}

TEST_CASE("growing capacity wakes waiters and shrinking it lets running leases finish", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g = a.add_group(5);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(set_capacity(a, 3, clock) ==
          Handoffs{"ticket 2 lease 5 group 0", "ticket 3 lease 6 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 3);
  REQUIRE(a.waiting() == 1);

  REQUIRE(set_capacity(a, 1, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.capacity() == 1);
  REQUIRE(a.in_use() == 3);  // over the new capacity until the leases come back
  REQUIRE(acquire(a, g, clock) == "queued ticket 7");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 1, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 2);
  REQUIRE(release(a, 5, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 1);
  REQUIRE(release(a, 6, clock) == Handoffs{"ticket 4 lease 8 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 1);
  REQUIRE(a.waiting() == 1);
}

TEST_CASE("growing a group limit wakes its waiters and shrinking it lets running leases finish",
          "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/10, kManyWaiters);
  const GroupId g = a.add_group(1);
  const GroupId other = a.add_group(5);
  REQUIRE(acquire(a, g, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(set_group_limit(a, g, 3, clock) ==
          Handoffs{"ticket 2 lease 4 group 0", "ticket 3 lease 5 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g).in_use == 3);

  REQUIRE(set_group_limit(a, g, 1, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g).limit == 1);
  REQUIRE(a.group_stats(g).in_use == 3);
  REQUIRE(acquire(a, g, clock) == "queued ticket 6");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, other, clock) == "granted lease 7");  // other groups are unaffected
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(release(a, 1, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(release(a, 4, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g).in_use == 1);
  REQUIRE(release(a, 5, clock) == Handoffs{"ticket 6 lease 8 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g).in_use == 1);
  REQUIRE(a.in_use() == 2);
}

TEST_CASE("close refuses every waiter and every later acquisition", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, kManyWaiters);
  const GroupId g0 = a.add_group(1);
  const GroupId g1 = a.add_group(1);
  REQUIRE(acquire(a, g0, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g0, clock) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g1, clock) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(close(a) == std::vector<TicketId>{2, 3});
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.waiting() == 0);
  REQUIRE(a.next_deadline() == std::nullopt);
  REQUIRE(a.group_stats(g0).refused_total == 1);
  REQUIRE(a.group_stats(g1).refused_total == 1);
  REQUIRE_FALSE(a.cancel(2));
  REQUIRE_FALSE(a.check_invariants());

  REQUIRE(acquire(a, g1, clock) == "refused closed");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g1).refused_total == 2);

  // The running lease finishes normally; its slot goes to nobody.
  REQUIRE(release(a, 1, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.in_use() == 0);
  REQUIRE(acquire(a, g0, clock) == "refused closed");  // even with a free slot
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g0).refused_total == 2);
  REQUIRE(a.group_stats(g0).granted_total == 1);
  clock.advance(1h);
  REQUIRE(expire(a, clock).empty());
  REQUIRE_FALSE(a.check_invariants());
}

TEST_CASE("group stats count grants, expiries and refusals and show the oldest wait", "[pools]") {
  FakeClock clock;
  Admission a(/*capacity=*/1, /*max_waiters=*/3);
  const GroupId g0 = a.add_group(1);
  const GroupId g1 = a.add_group(1);

  REQUIRE(acquire(a, g0, clock) == "granted lease 1");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(a.group_stats(g0).oldest_wait_since == std::nullopt);

  const TimePoint t1 = clock.advance(1s);
  REQUIRE(acquire(a, g0, clock, 10s) == "queued ticket 2");
  REQUIRE_FALSE(a.check_invariants());
  const TimePoint t2 = clock.advance(1s);
  REQUIRE(acquire(a, g0, clock, 2s) == "queued ticket 3");
  REQUIRE_FALSE(a.check_invariants());
  const TimePoint t3 = clock.advance(1s);
  REQUIRE(acquire(a, g1, clock, 30s) == "queued ticket 4");
  REQUIRE_FALSE(a.check_invariants());
  REQUIRE(acquire(a, g0, clock) == "refused queue_full");
  REQUIRE_FALSE(a.check_invariants());

  auto s0 = a.group_stats(g0);
  REQUIRE(s0.limit == 1);
  REQUIRE(s0.in_use == 1);
  REQUIRE(s0.waiting == 2);
  REQUIRE(s0.granted_total == 1);
  REQUIRE(s0.expired_total == 0);
  REQUIRE(s0.refused_total == 1);
  REQUIRE(s0.oldest_wait_since == t1);
  auto s1 = a.group_stats(g1);
  REQUIRE(s1.in_use == 0);
  REQUIRE(s1.waiting == 1);
  REQUIRE(s1.oldest_wait_since == t3);

  clock.advance(t2 + 2s - clock.now());
  REQUIRE(expire(a, clock) == std::vector<TicketId>{3});
  REQUIRE_FALSE(a.check_invariants());
  s0 = a.group_stats(g0);
  REQUIRE(s0.expired_total == 1);
  REQUIRE(s0.waiting == 1);
  REQUIRE(s0.oldest_wait_since == t1);

  REQUIRE(release(a, 1, clock) == Handoffs{"ticket 2 lease 5 group 0"});
  REQUIRE_FALSE(a.check_invariants());
  s0 = a.group_stats(g0);
  REQUIRE(s0.granted_total == 2);
  REQUIRE(s0.waiting == 0);
  REQUIRE(s0.oldest_wait_since == std::nullopt);

  REQUIRE(release(a, 5, clock) == Handoffs{"ticket 4 lease 6 group 1"});
  REQUIRE_FALSE(a.check_invariants());
  s1 = a.group_stats(g1);
  REQUIRE(s1.granted_total == 1);
  REQUIRE(s1.oldest_wait_since == std::nullopt);
  REQUIRE(a.group_stats(g0).in_use == 0);
}
