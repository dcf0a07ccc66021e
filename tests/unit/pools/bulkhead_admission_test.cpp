// Scripted sequences for pools::BulkheadAdmission on a fake clock; the Script checks
// check_invariants() after every step. Lease and ticket ids share one counter, so every id
// below is exact: a test that hands a slot to the wrong waiter fails on the id.
#include "unit/pools/bulkhead_harness.hpp"

namespace {

using namespace sluice::test;

Policy two_classes(std::uint32_t capacity, BulkheadPolicy first, BulkheadPolicy second) {
  return Policy{.capacity = capacity, .bulkheads = {std::move(first), std::move(second)}};
}

}  // namespace

TEST_CASE("reserved slots hold while a lower class floods", "[pools]") {
  Script s(two_classes(10, bulkhead("critical", 0, 3, 10), bulkhead("batch", 1, 0, 10, 4)));

  for (LeaseId l = 1; l <= 7; ++l)
    REQUIRE(s.acquire("batch") == "granted lease " + std::to_string(l));
  // Seven shared slots are borrowed; the remaining three are critical's and stay free.
  REQUIRE(s.acquire("batch") == "queued ticket 8");
  REQUIRE(s.acquire("default") == "queued ticket 9");
  REQUIRE(s.a.server_stats(s.clock.now()).in_use == 7);

  REQUIRE(s.acquire("critical") == "granted lease 10");
  REQUIRE(s.acquire("critical") == "granted lease 11");
  REQUIRE(s.acquire("critical") == "granted lease 12");
  REQUIRE(s.acquire("critical") == "queued ticket 13");
  REQUIRE(s.stats("critical").in_use == 3);
  REQUIRE(s.stats("critical").borrowed == 0);
  REQUIRE(s.stats("batch").in_use == 7);
  REQUIRE(s.stats("batch").borrowed == 7);

  REQUIRE(s.release(10) == Lines{"ticket 13 -> lease 14 critical"});
  // A freed reserved slot is not lent to the flood, even with nobody of its own class waiting.
  REQUIRE(s.release(11).empty());
  REQUIRE(s.release(12).empty());
  REQUIRE(s.a.server_stats(s.clock.now()).in_use == 8);
  REQUIRE(s.stats("batch").waiters == 1);
  REQUIRE(s.acquire("critical") == "granted lease 15");

  // When the flood itself returns a shared slot, its own waiter (older class first) gets it.
  REQUIRE(s.release(1) == Lines{"ticket 8 -> lease 16 batch"});
  REQUIRE(s.release(2) == Lines{"ticket 9 -> lease 17 default"});
  REQUIRE(s.stats("batch").admitted == 8);
  REQUIRE(s.stats("batch").handed_off == 1);
}

TEST_CASE("spare capacity is borrowed up to max and returned on release", "[pools]") {
  SECTION("borrowed slots go back to the shared remainder") {
    Script s(two_classes(6, bulkhead("critical", 0, 2, 4), bulkhead("batch", 1, 2, 6)));
    for (LeaseId l = 1; l <= 4; ++l) {
      REQUIRE(s.acquire("critical") == "granted lease " + std::to_string(l));
    }
    REQUIRE(s.stats("critical").borrowed == 2);
    REQUIRE(s.a.server_stats(s.clock.now()).shared == 2);
    REQUIRE(s.a.server_stats(s.clock.now()).borrowed == 2);

    REQUIRE(s.acquire("batch") == "granted lease 5");  // batch's own reserved slots
    REQUIRE(s.acquire("batch") == "granted lease 6");
    REQUIRE(s.acquire("batch") == "queued ticket 7");

    // Critical ends one transaction: its borrowed slot returns and batch borrows it.
    REQUIRE(s.release(1) == Lines{"ticket 7 -> lease 8 batch"});
    REQUIRE(s.stats("critical").borrowed == 1);
    REQUIRE(s.stats("batch").borrowed == 1);

    // Slots are fungible: batch releasing an early lease gives back its borrowed slot first.
    REQUIRE(s.release(5).empty());
    REQUIRE(s.stats("batch").in_use == 2);
    REQUIRE(s.stats("batch").borrowed == 0);
    REQUIRE(s.acquire("critical") == "granted lease 9");
    REQUIRE(s.stats("critical").borrowed == 2);
  }
  SECTION("max caps borrowing even while the server has free slots") {
    Script s(two_classes(6, bulkhead("critical", 0, 1, 2), bulkhead("batch", 1, 0, 6)));
    REQUIRE(s.acquire("critical") == "granted lease 1");
    REQUIRE(s.acquire("critical") == "granted lease 2");
    REQUIRE(s.acquire("critical") == "queued ticket 3");
    REQUIRE(s.a.server_stats(s.clock.now()).in_use == 2);
    REQUIRE(s.acquire("batch") == "granted lease 4");
    REQUIRE(s.release(1) == Lines{"ticket 3 -> lease 5 critical"});
  }
}

TEST_CASE("a freed slot goes to the highest-priority waiter, one waiter per slot", "[pools]") {
  // Listed out of priority order on purpose: priority decides, not position.
  Script s(Policy{.capacity = 2,
                  .bulkheads = {bulkhead("low", 2, 0, 2), bulkhead("high", 0, 0, 2),
                                bulkhead("mid", 1, 0, 2)}});
  REQUIRE(s.acquire("low") == "granted lease 1");
  REQUIRE(s.acquire("low") == "granted lease 2");
  REQUIRE(s.acquire("low") == "queued ticket 3");
  REQUIRE(s.acquire("mid") == "queued ticket 4");
  REQUIRE(s.acquire("high") == "queued ticket 5");
  REQUIRE(s.acquire("low") == "queued ticket 6");
  REQUIRE(s.acquire("high") == "queued ticket 7");
  REQUIRE(s.acquire("mid") == "queued ticket 8");

  REQUIRE(s.release(1) == Lines{"ticket 5 -> lease 9 high"});
  REQUIRE(s.release(2) == Lines{"ticket 7 -> lease 10 high"});
  REQUIRE(s.release(9) == Lines{"ticket 4 -> lease 11 mid"});
  REQUIRE(s.release(10) == Lines{"ticket 8 -> lease 12 mid"});
  REQUIRE(s.release(11) == Lines{"ticket 3 -> lease 13 low"});
  REQUIRE(s.release(12) == Lines{"ticket 6 -> lease 14 low"});
  REQUIRE(s.release(13).empty());
  REQUIRE(s.release(14).empty());
  REQUIRE(s.a.server_stats(s.clock.now()).in_use == 0);
}

TEST_CASE("slots freed at once all go to the highest class before the next", "[pools]") {
  Script s(two_classes(1, bulkhead("high", 0, 0, 1), bulkhead("low", 1, 0, 1)));
  REQUIRE(s.acquire("low") == "granted lease 1");
  REQUIRE(s.acquire("low") == "queued ticket 2");
  REQUIRE(s.acquire("high") == "queued ticket 3");
  REQUIRE(s.acquire("high") == "queued ticket 4");
  REQUIRE(s.set_policy(Policy{
              .capacity = 4, .bulkheads = {bulkhead("high", 0, 0, 4), bulkhead("low", 1, 0, 4)}}) ==
          Lines{"ticket 3 -> lease 5 high", "ticket 4 -> lease 6 high", "ticket 2 -> lease 7 low"});
}

TEST_CASE("a full queue refuses the next arrival at once", "[pools]") {
  SECTION("queue_depth waiters, then queue_full with the queue's depth and age") {
    Script s(two_classes(1, bulkhead("batch", 0, 0, 1, 2, 1000ms), bulkhead("other", 1, 0, 1)));
    REQUIRE(s.acquire("batch") == "granted lease 1");
    REQUIRE(s.acquire("batch") == "queued ticket 2");
    s.advance(30ms);
    REQUIRE(s.acquire("batch") == "queued ticket 3");
    s.advance(10ms);
    const Refused r = s.refusal("batch");
    CHECK(r.reason == RefusalReason::QueueFull);
    CHECK(r.waiters == 2);
    CHECK(r.oldest_age == 40ms);
    CHECK(r.bulkhead == s.id("batch"));
    CHECK(r.retry_after >= 800ms);  // no hold time measured yet: max_wait, +-20%
    CHECK(r.retry_after <= 1200ms);
    REQUIRE(s.stats("batch").refused_for(RefusalReason::QueueFull) == 1);
    REQUIRE(s.stats("batch").refused_total() == 1);
    REQUIRE(s.stats("batch").queued == 2);

    REQUIRE(s.cancel(2));
    REQUIRE(s.acquire("batch") == "queued ticket 4");  // refusals use no ids
  }
  SECTION("queue_depth 0 never queues") {
    Script s(two_classes(1, bulkhead("batch", 0, 0, 1, 0), bulkhead("other", 1, 0, 1)));
    REQUIRE(s.acquire("batch") == "granted lease 1");
    REQUIRE(s.acquire("batch") == "refused queue_full");
    REQUIRE(s.acquire("other") == "queued ticket 2");  // another class's queue is its own
  }
}

TEST_CASE("a waiter expires exactly at its max_wait deadline", "[pools]") {
  // FIFO throughout: this backlog stands above the LIFO target (50ms) for a whole interval,
  // and LIFO would hand the slot below to ticket 3.
  BulkheadPolicy batch = bulkhead("batch", 0, 0, 1, 8, 250ms);
  batch.adaptive_lifo = false;
  Script s(Policy{.capacity = 1, .bulkheads = {batch}});
  const auto t0 = s.clock.now();
  REQUIRE(s.acquire("batch") == "granted lease 1");
  const AcquireResult queued = s.acquire_raw("batch");
  REQUIRE(std::get<sluice::pools::Queued>(queued).ticket == 2);
  REQUIRE(std::get<sluice::pools::Queued>(queued).deadline == t0 + 250ms);
  s.advance(100ms);
  REQUIRE(s.acquire("batch") == "queued ticket 3");
  REQUIRE(s.a.next_deadline() == t0 + 250ms);

  s.advance(149ms);
  REQUIRE(s.expire().empty());
  s.advance(1ms);  // exactly t0 + 250ms

  SECTION("expire at the deadline refuses it with max_wait") {
    REQUIRE(s.expire() == Lines{"ticket 2 max_wait"});
    REQUIRE(s.stats("batch").expired == 1);
    REQUIRE(s.stats("batch").refused_for(RefusalReason::MaxWait) == 1);
    REQUIRE(s.a.next_deadline() == t0 + 350ms);
    REQUIRE_FALSE(s.cancel(2));
    REQUIRE(s.release(1) == Lines{"ticket 3 -> lease 4 batch"});
    REQUIRE(s.a.next_deadline() == std::nullopt);
  }
  SECTION("a grant at the deadline, before expire runs, keeps the lease") {
    REQUIRE(s.release(1) == Lines{"ticket 2 -> lease 4 batch"});
    REQUIRE(s.expire().empty());
    REQUIRE(s.stats("batch").expired == 0);
    REQUIRE(s.stats("batch").in_use == 1);
  }
}

TEST_CASE("an arrival is refused early when the oldest waiter is already past max_wait",
          "[pools]") {
  Script s(Policy{.capacity = 1, .bulkheads = {bulkhead("batch", 0, 0, 1, 8, 200ms)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "queued ticket 2");
  s.advance(199ms);
  REQUIRE(s.acquire("batch") == "queued ticket 3");
  s.advance(1ms);  // ticket 2 is now 200ms old and its expiry timer has not run yet
  const Refused r = s.refusal("batch");
  CHECK(r.reason == RefusalReason::QueueAge);
  CHECK(r.waiters == 2);
  CHECK(r.oldest_age == 200ms);
  REQUIRE(s.stats("batch").refused_for(RefusalReason::QueueAge) == 1);

  REQUIRE(s.expire() == Lines{"ticket 2 max_wait"});
  REQUIRE(s.acquire("batch") == "queued ticket 4");  // the oldest is now 1ms old
}

TEST_CASE("an arrival is refused early when its predicted wait exceeds max_wait", "[pools]") {
  // batch may use 2 slots; predicted wait = waiters ahead x mean hold / 2.
  Script s(two_classes(4, bulkhead("batch", 0, 0, 2, 16, 1000ms), bulkhead("other", 1, 0, 4)));

  SECTION("without a measured hold time nobody is refused by prediction") {
    REQUIRE(s.acquire("batch") == "granted lease 1");
    REQUIRE(s.acquire("batch") == "granted lease 2");
    for (TicketId t = 3; t <= 18; ++t) {
      REQUIRE(s.acquire("batch") == "queued ticket " + std::to_string(t));
    }
    REQUIRE(s.acquire("batch") == "refused queue_full");
    REQUIRE(s.stats("batch").mean_hold == std::nullopt);
  }
  SECTION("with a measured hold time the queue stops where the prediction crosses max_wait") {
    REQUIRE(s.acquire("batch") == "granted lease 1");
    s.advance(400ms);
    REQUIRE(s.release(1).empty());
    REQUIRE(s.stats("batch").mean_hold->count() == Approx(400.0));
    REQUIRE(s.acquire("batch") == "granted lease 2");
    REQUIRE(s.acquire("batch") == "granted lease 3");
    // 0, 200, 400, 600, 800, 1000 ms predicted: queued (1000 is not above max_wait).
    for (TicketId t = 4; t <= 9; ++t) {
      REQUIRE(s.acquire("batch") == "queued ticket " + std::to_string(t));
    }
    const Refused r = s.refusal("batch");  // 6 ahead: 1200ms
    CHECK(r.reason == RefusalReason::PredictedWait);
    CHECK(r.waiters == 6);
    CHECK(r.retry_after >= 1120ms);  // drain estimate (6 + 1) x 400 / 2 = 1400ms, +-20%
    CHECK(r.retry_after <= 1680ms);
    REQUIRE(s.stats("batch").refused_for(RefusalReason::PredictedWait) == 1);

    // An ignored lease is not measured; a completed one moves the EWMA by 0.2 of the error.
    REQUIRE(s.release(2, LeaseOutcome::Ignored) == Lines{"ticket 4 -> lease 10 batch"});
    REQUIRE(s.stats("batch").mean_hold->count() == Approx(400.0));
    s.advance(100ms);
    REQUIRE(s.release(3, LeaseOutcome::TimedOut) == Lines{"ticket 5 -> lease 11 batch"});
    REQUIRE(s.stats("batch").mean_hold->count() == Approx(340.0));
    REQUIRE(s.stats("batch").timeouts == 1);
    // 4 ahead x 340 / 2 = 680, 5 ahead = 850: queued; 6 ahead = 1020: refused.
    REQUIRE(s.acquire("batch") == "queued ticket 12");
    REQUIRE(s.acquire("batch") == "queued ticket 13");
    REQUIRE(s.acquire("batch") == "refused predicted_wait");
  }
}

TEST_CASE("cancel racing a grant: the grant wins and the lease comes back unused", "[pools]") {
  Script s(Policy{.capacity = 1, .bulkheads = {bulkhead("batch", 0, 0, 1)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "queued ticket 2");
  REQUIRE(s.acquire("batch") == "queued ticket 3");

  REQUIRE(s.release(1) == Lines{"ticket 2 -> lease 4 batch"});
  REQUIRE_FALSE(s.cancel(2));  // the client left just as it was granted
  REQUIRE(s.release(4, LeaseOutcome::Ignored) == Lines{"ticket 3 -> lease 5 batch"});
  REQUIRE_FALSE(s.cancel(3));

  REQUIRE(s.acquire("batch") == "queued ticket 6");
  REQUIRE(s.cancel(6));  // the cancel wins: the waiter is gone before any slot frees
  REQUIRE_FALSE(s.cancel(6));
  REQUIRE(s.stats("batch").cancelled == 1);
  REQUIRE(s.stats("batch").waiters == 0);
  REQUIRE(s.release(5).empty());
  REQUIRE(s.release(5).empty());  // double release is harmless
  REQUIRE_FALSE(s.cancel(999));
  REQUIRE(s.a.server_stats(s.clock.now()).in_use == 0);
  REQUIRE(s.acquire("batch") == "granted lease 7");
}

namespace {

// One slot, a backlog that builds up over 370ms; LIFO target 200ms, interval 100ms.
Script lifo_backlog(bool adaptive_lifo) {
  BulkheadPolicy batch = bulkhead("batch", 0, 0, 1, 16, 1000ms);
  batch.lifo_target = 200ms;
  batch.adaptive_lifo = adaptive_lifo;
  Script s(Policy{.capacity = 1, .bulkheads = {batch}, .lifo_interval = 100ms});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "queued ticket 2");  // t = 0: the first interval starts
  s.advance(150ms);
  REQUIRE(s.acquire("batch") == "queued ticket 3");  // the first interval saw a 0ms delay
  REQUIRE_FALSE(s.stats("batch").lifo);
  s.advance(110ms);
  REQUIRE(s.acquire("batch") == "queued ticket 4");  // the second saw 150ms < target
  REQUIRE_FALSE(s.stats("batch").lifo);
  s.advance(110ms);
  REQUIRE(s.acquire("batch") == "queued ticket 5");  // t = 370: min 260ms over [260, 370]
  return s;
}

}  // namespace

TEST_CASE("adaptive LIFO switches on for a standing queue and off when it clears", "[pools]") {
  Script s = lifo_backlog(true);
  REQUIRE(s.stats("batch").lifo);

  SECTION("serves newest-first, and FIFO again once the oldest waiter is younger than target") {
    s.advance(10ms);
    REQUIRE(s.release(1) == Lines{"ticket 5 -> lease 6 batch"});
    s.advance(10ms);
    REQUIRE(s.cancel(2));  // the oldest is now ticket 3, 240ms old: still congested
    REQUIRE(s.stats("batch").lifo);
    s.advance(10ms);
    REQUIRE(s.cancel(3));  // the oldest is now ticket 4, 140ms old: below target
    REQUIRE_FALSE(s.stats("batch").lifo);
    s.advance(10ms);
    REQUIRE(s.acquire("batch") == "queued ticket 7");
    s.advance(10ms);
    REQUIRE(s.release(6) == Lines{"ticket 4 -> lease 8 batch"});
  }
  SECTION("an emptied queue is FIFO") {
    s.advance(5ms);
    REQUIRE(s.cancel(5));
    REQUIRE(s.cancel(4));
    REQUIRE(s.cancel(3));
    REQUIRE(s.stats("batch").lifo);  // ticket 2 is still 375ms old
    REQUIRE(s.cancel(2));
    REQUIRE_FALSE(s.stats("batch").lifo);
  }
}

TEST_CASE("with adaptive LIFO off the same backlog is served oldest-first", "[pools]") {
  Script s = lifo_backlog(false);
  REQUIRE_FALSE(s.stats("batch").lifo);
  s.advance(10ms);
  REQUIRE(s.release(1) == Lines{"ticket 2 -> lease 6 batch"});
}

TEST_CASE("a waiter blocked only by its group limit does not block its class", "[pools]") {
  SECTION("within one bulkhead") {
    Script s(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 4)}});
    const GroupId g1 = s.a.add_group(1);
    const GroupId g2 = s.a.add_group(3);
    REQUIRE(s.acquire("batch", g1) == "granted lease 1");
    REQUIRE(s.acquire("batch", g1) == "queued ticket 2");
    REQUIRE(s.acquire("batch", g2) == "granted lease 3");  // not stuck behind ticket 2
    REQUIRE(s.set_group_limit(g1, 2) == Lines{"ticket 2 -> lease 4 batch"});
    REQUIRE(s.set_group_limit(g1, 1).empty());  // g1 keeps its 2 running leases
    REQUIRE(s.acquire("batch", g1) == "queued ticket 5");
    REQUIRE(s.acquire("batch", g2) == "granted lease 6");
    REQUIRE(s.acquire("batch", g2) == "queued ticket 7");  // the server is full
    REQUIRE(s.release(3) == Lines{"ticket 7 -> lease 8 batch"});
    REQUIRE(s.release(1).empty());  // g1 is down to 1 running, still at its new limit
    REQUIRE(s.release(4) == Lines{"ticket 5 -> lease 9 batch"});
  }
  SECTION("across bulkheads: a higher class blocked by its group lets a lower class through") {
    Script s(two_classes(2, bulkhead("high", 0, 0, 2), bulkhead("low", 1, 0, 2)));
    const GroupId a = s.a.add_group(1);
    const GroupId b = s.a.add_group(2);
    REQUIRE(s.acquire("high", a) == "granted lease 1");
    REQUIRE(s.acquire("low", b) == "granted lease 2");
    REQUIRE(s.acquire("high", a) == "queued ticket 3");
    REQUIRE(s.acquire("low", b) == "queued ticket 4");
    REQUIRE(s.release(2) == Lines{"ticket 4 -> lease 5 low"});
    REQUIRE(s.set_group_limit(a, 2).empty());  // the server is full
    REQUIRE(s.release(5) == Lines{"ticket 3 -> lease 6 high"});
  }
}

TEST_CASE("the worked example of docs/ADMISSION.md keeps critical's slots under a batch flood",
          "[pools]") {
  Script s(
      Policy{.capacity = 20,
             .bulkheads = {bulkhead("critical", 0, 8, 14, 20, 250ms),
                           bulkhead("batch", 1, 2, 12, 120, 500ms), bulkhead("default", 2, 0, 4)}});
  int granted = 0, queued = 0, refused = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string d = s.acquire("batch");
    granted += d.starts_with("granted");
    queued += d.starts_with("queued");
    refused += d == "refused queue_full";
  }
  REQUIRE(granted == 12);  // 2 reserved + all 10 shared
  REQUIRE(queued == 120);
  REQUIRE(refused == 68);
  REQUIRE(s.acquire("default") == "queued ticket 133");  // nothing spare is left
  for (LeaseId l = 134; l <= 141; ++l) {
    REQUIRE(s.acquire("critical") == "granted lease " + std::to_string(l));
  }
  REQUIRE(s.acquire("critical") == "queued ticket 142");  // borrowing waits for spare capacity
  // The first shared slot batch returns goes to critical, ahead of 120 older batch waiters.
  REQUIRE(s.release(1) == Lines{"ticket 142 -> lease 143 critical"});
  REQUIRE(s.release(2) == Lines{"ticket 13 -> lease 144 batch"});
}
