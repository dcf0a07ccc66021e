// BulkheadAdmission::refuse_lease: a slot holder that waited its max_wait for a backend (its
// connect still running, or no room to open one) is refused, counted like every other refusal,
// and its slot goes on to the next waiter as if it had never been used.
#include "unit/pools/bulkhead_harness.hpp"

namespace {

using namespace sluice::test;

}  // namespace

TEST_CASE("a lease refused while waiting for a backend is counted as max_wait and handed on",
          "[pools]") {
  Script s(Policy{.capacity = 1, .bulkheads = {bulkhead("batch", 0, 0, 1, 8, 1000ms)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "queued ticket 2");
  s.advance(1000ms);

  REQUIRE(s.refuse_lease(1) == "refused max_wait; ticket 2 -> lease 3 batch");
  const sluice::pools::BulkheadStats st = s.stats("batch");
  REQUIRE(st.refused_for(RefusalReason::MaxWait) == 1);
  REQUIRE(st.refused_total() == 1);
  REQUIRE(st.expired == 0);  // nobody's queue wait expired
  REQUIRE(st.admitted == 2);
  REQUIRE(st.in_use == 1);
  // Released as Ignored: the connect time it waited is no hold time.
  REQUIRE_FALSE(st.mean_hold.has_value());
}

TEST_CASE("a refusal's hint and queue figures come from the lease's bulkhead", "[pools]") {
  Script s(Policy{.capacity = 2,
                  .bulkheads = {bulkhead("critical", 0, 1, 2), bulkhead("batch", 1, 0, 1)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "queued ticket 2");
  REQUIRE(s.acquire("critical") == "granted lease 3");
  s.advance(300ms);
  auto r = s.a.refuse_lease(1, RefusalReason::MaxWait, s.clock.now());
  s.check();
  REQUIRE(r.has_value());
  REQUIRE(r->refusal.bulkhead == s.id("batch"));
  REQUIRE(r->refusal.waiters == 1);  // counted before the slot went to the waiter
  REQUIRE(r->refusal.oldest_age == 300ms);
  REQUIRE(r->refusal.retry_after > std::chrono::milliseconds(0));
  REQUIRE(s.describe(r->handed_off) == Lines{"ticket 2 -> lease 4 batch"});
  REQUIRE(s.stats("batch").refused_for(RefusalReason::MaxWait) == 1);
  REQUIRE(s.stats("critical").refused_total() == 0);
}

TEST_CASE("refusing a lease twice, or one never granted, counts nothing", "[pools]") {
  Script s(Policy{.capacity = 1, .bulkheads = {bulkhead("batch", 0, 0, 1)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.refuse_lease(1) == "refused max_wait");
  REQUIRE(s.refuse_lease(1) == "unknown lease");
  REQUIRE(s.refuse_lease(999) == "unknown lease");
  REQUIRE(s.release(1).empty());  // the lease is gone: the owner's later release is harmless
  REQUIRE(s.stats("batch").refused_total() == 1);
  REQUIRE(s.stats("batch").in_use == 0);
  REQUIRE(s.acquire("batch") == "granted lease 2");
}

TEST_CASE("a breaker probe's lease refused unused leaves the breaker no verdict", "[pools]") {
  Script s(Policy{.capacity = 1,
                  .bulkheads = {bulkhead("batch", 0, 0, 1)},
                  .breaker = {.failure_threshold = 1, .open_delay = 100ms}});
  REQUIRE(s.connect_failed().empty());
  s.advance(100ms);
  REQUIRE(s.acquire("batch") == "granted probe lease 1");
  REQUIRE(s.refuse_lease(1) == "refused max_wait");
  // The probe ended without a verdict: the next arrival may probe at once.
  REQUIRE(s.acquire("batch") == "granted probe lease 2");
}

TEST_CASE("a waiter whose own timer ran out is expired, not cancelled", "[pools]") {
  // src/ refuses a waiter when its timer fires even if the core's clock is a hair behind.
  Script s(Policy{.capacity = 1, .bulkheads = {bulkhead("batch", 0, 0, 1, 8, 1000ms)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "queued ticket 2");
  s.advance(999ms);
  auto r = s.a.expire_ticket(2, s.clock.now());
  s.check();
  REQUIRE(r.has_value());
  REQUIRE(r->ticket == 2);
  REQUIRE(r->refusal.reason == RefusalReason::MaxWait);
  const sluice::pools::BulkheadStats st = s.stats("batch");
  REQUIRE(st.refused_for(RefusalReason::MaxWait) == 1);
  REQUIRE(st.expired == 1);
  REQUIRE(st.cancelled == 0);
  REQUIRE(st.waiters == 0);
  REQUIRE_FALSE(s.a.expire_ticket(2, s.clock.now()).has_value());  // no longer waiting
  REQUIRE(s.stats("batch").refused_total() == 1);
}
