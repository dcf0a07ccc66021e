// Policy validation and normalisation, and live tuning of a BulkheadAdmission (set_policy),
// scripted on a fake clock with check_invariants() after every step.
#include "unit/pools/bulkhead_harness.hpp"

#include <string>
#include <vector>

namespace {

using namespace sluice::test;
using sluice::pools::normalize_policy;
using sluice::pools::PolicyErrors;

PolicyErrors errors_of(Policy p) {
  auto r = normalize_policy(std::move(p));
  if (r) return {};
  return r.error();
}

}  // namespace

TEST_CASE("a policy reports every error it has, naming the field", "[pools]") {
  Policy p{.capacity = 10,
           .bulkheads = {bulkhead("critical", 0, 6, 5), bulkhead("batch", 1, 5, 12),
                         bulkhead("batch", 2, 0, 1)}};
  p.breaker.failure_threshold = 0;
  REQUIRE(errors_of(p) ==
          PolicyErrors{"breaker.failure_threshold: must be at least 1",
                       "bulkheads.critical.reserved: 6 exceeds max 5",
                       "bulkheads.batch.max: 12 exceeds the server capacity 10",
                       "bulkheads.batch: defined twice",
                       "bulkheads: reserved slots add up to 11, more than the server capacity 10"});
}

TEST_CASE("single policy errors are caught one by one", "[pools]") {
  Policy p{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 4)}};
  REQUIRE(errors_of(p).empty());
  BulkheadPolicy& b = p.bulkheads[0];
  std::string expected;
  SECTION("capacity") {
    p.capacity = 0;
    b.max = 0;
    REQUIRE(errors_of(p) == PolicyErrors{"capacity: must be at least 1",
                                         "bulkheads.batch.max: must be at least 1"});
    return;
  }
  SECTION("max_wait") {
    b.max_wait = 0ms;
    expected = "bulkheads.batch.max_wait: must be > 0";
  }
  SECTION("burst") {
    b.new_transactions = {.per_second = 5, .burst = 0};
    expected = "bulkheads.batch.new_transactions: burst must be at least 1 when the rate is set";
  }
  SECTION("rate") {
    b.new_connections = {.per_second = -1, .burst = 1};
    expected = "bulkheads.batch.new_connections: rate must be between 0 (off) and 1e9 per second";
  }
  SECTION("name") {
    b.name = "";
    expected = "bulkheads: a bulkhead has no name";
  }
  SECTION("breaker delays") {
    p.breaker.max_open_delay = 10ms;
    expected = "breaker.max_open_delay: must be >= open_delay";
  }
  SECTION("hold-time weight") {
    p.hold_time_weight = 0;
    expected = "hold_time_weight: must be in (0, 1]";
  }
  REQUIRE(errors_of(p) == PolicyErrors{expected});
}

TEST_CASE("the default bulkhead always exists", "[pools]") {
  SECTION("created after every configured class when absent") {
    Script s(Policy{.capacity = 20,
                    .bulkheads = {bulkhead("critical", 0, 8, 20), bulkhead("batch", 5, 0, 4)}});
    REQUIRE(s.a.default_bulkhead() == 2);
    REQUIRE(s.id("default") == 2);
    const BulkheadPolicy& d = s.a.bulkhead_policy(2);
    CHECK(d.priority == 6);
    CHECK(d.reserved == 0);
    CHECK(d.max == 20);
    CHECK(d.queue_depth == 128);
    CHECK(d.max_wait == 5000ms);
    CHECK(d.lifo_target == 1000ms);                         // max_wait / 5
    CHECK(s.a.bulkhead_policy(0).lifo_target == 200ms);     // critical: 1000ms / 5
    CHECK(s.a.find_bulkhead("reporting") == std::nullopt);  // src/ falls back to default
    CHECK(s.stats("default").name == "default");
  }
  SECTION("kept as configured when present") {
    Script s(Policy{.capacity = 4, .bulkheads = {bulkhead("default", 3, 2, 3)}});
    REQUIRE(s.a.bulkhead_count() == 1);
    REQUIRE(s.a.bulkhead_policy(s.a.default_bulkhead()).reserved == 2);
  }
  SECTION("alone when nothing is configured") {
    Script s(Policy{.capacity = 4});
    REQUIRE(s.a.bulkhead_count() == 1);
    REQUIRE(s.acquire("default") == "granted lease 1");
  }
}

TEST_CASE("refusal reasons have stable names", "[pools]") {
  using sluice::pools::to_string;
  CHECK(std::string(to_string(RefusalReason::QueueFull)) == "queue_full");
  CHECK(std::string(to_string(RefusalReason::QueueAge)) == "queue_age");
  CHECK(std::string(to_string(RefusalReason::PredictedWait)) == "predicted_wait");
  CHECK(std::string(to_string(RefusalReason::MaxWait)) == "max_wait");
  CHECK(std::string(to_string(RefusalReason::RateLimit)) == "rate_limit");
  CHECK(std::string(to_string(RefusalReason::MaxClients)) == "max_clients");
  CHECK(std::string(to_string(RefusalReason::ServerDown)) == "server_down");
}

TEST_CASE("shrinking max lets running work finish and takes effect as slots free", "[pools]") {
  Script s(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 4)}});
  for (LeaseId l = 1; l <= 4; ++l)
    REQUIRE(s.acquire("batch") == "granted lease " + std::to_string(l));
  REQUIRE(s.acquire("batch") == "queued ticket 5");
  REQUIRE(s.acquire("batch") == "queued ticket 6");

  REQUIRE(s.set_policy(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 2)}}).empty());
  REQUIRE(s.stats("batch").max == 2);
  REQUIRE(s.stats("batch").in_use == 4);  // nothing pre-empted
  REQUIRE(s.release(1).empty());
  REQUIRE(s.release(2).empty());  // 2 running = the new max
  REQUIRE(s.release(3) == Lines{"ticket 5 -> lease 7 batch"});
  REQUIRE(s.stats("batch").in_use == 2);

  // Growing wakes waiters at once.
  REQUIRE(s.set_policy(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 4)}}) ==
          Lines{"ticket 6 -> lease 8 batch"});
  REQUIRE(s.stats("batch").in_use == 3);
}

TEST_CASE("capacity can grow and shrink live", "[pools]") {
  Script s(Policy{.capacity = 2, .bulkheads = {bulkhead("batch", 0, 0, 2)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "granted lease 2");
  REQUIRE(s.acquire("batch") == "queued ticket 3");
  REQUIRE(s.acquire("batch") == "queued ticket 4");
  REQUIRE(s.acquire("batch") == "queued ticket 5");
  REQUIRE(s.set_policy(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 4)}}) ==
          Lines{"ticket 3 -> lease 6 batch", "ticket 4 -> lease 7 batch"});
  REQUIRE(s.acquire("batch") == "queued ticket 8");

  REQUIRE(s.set_policy(Policy{.capacity = 2, .bulkheads = {bulkhead("batch", 0, 0, 2)}}).empty());
  REQUIRE(s.a.server_stats(s.clock.now()).in_use == 4);
  REQUIRE(s.release(1).empty());
  REQUIRE(s.release(2).empty());
  REQUIRE(s.release(6) == Lines{"ticket 5 -> lease 9 batch"});
  REQUIRE(s.release(7) == Lines{"ticket 8 -> lease 10 batch"});
}

TEST_CASE("a reservation added live is honoured as borrowed slots come back", "[pools]") {
  Script s(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 1, 0, 4)}});
  for (LeaseId l = 1; l <= 4; ++l)
    REQUIRE(s.acquire("batch") == "granted lease " + std::to_string(l));
  REQUIRE(s.acquire("batch") == "queued ticket 5");

  REQUIRE(
      s.set_policy(Policy{.capacity = 4,
                          .bulkheads = {bulkhead("critical", 0, 2, 4), bulkhead("batch", 1, 0, 4)}})
          .empty());
  REQUIRE(s.stats("batch").borrowed == 4);              // over the 2 shared slots until it drains
  REQUIRE(s.acquire("critical") == "queued ticket 6");  // the server is full: no pre-emption
  REQUIRE(s.release(1) == Lines{"ticket 6 -> lease 7 critical"});
  REQUIRE(s.release(2).empty());  // batch holds both shared slots; the free one is critical's
  REQUIRE(s.acquire("critical") == "granted lease 8");
  REQUIRE(s.release(3) == Lines{"ticket 5 -> lease 9 batch"});
}

TEST_CASE("a bulkhead dropped from the policy retires without dropping its work", "[pools]") {
  const Policy both{.capacity = 3,
                    .bulkheads = {bulkhead("critical", 0, 1, 3), bulkhead("batch", 1, 1, 3)}};
  Script s(both);
  const BulkheadId batch = s.id("batch");
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "granted lease 2");
  REQUIRE(s.acquire("batch") == "queued ticket 3");
  REQUIRE(s.acquire("critical") == "granted lease 4");

  REQUIRE(
      s.set_policy(Policy{.capacity = 3, .bulkheads = {bulkhead("critical", 0, 1, 3)}}).empty());
  REQUIRE(s.a.find_bulkhead("batch") == std::nullopt);
  const auto retired = s.a.stats(batch, s.clock.now());
  CHECK(retired.retired);
  CHECK(retired.reserved == 0);
  CHECK(retired.in_use == 2);
  CHECK(retired.waiters == 1);
  // Its queued client is still served, from the shared slots.
  REQUIRE(s.release(1) == Lines{"ticket 3 -> lease 5 batch"});

  SECTION("re-adding the name revives it under the same id") {
    REQUIRE(s.set_policy(both).empty());
    REQUIRE(s.id("batch") == batch);
    REQUIRE_FALSE(s.a.stats(batch, s.clock.now()).retired);
  }
  SECTION("a retired bulkhead's max follows a smaller capacity") {
    REQUIRE(
        s.set_policy(Policy{.capacity = 2, .bulkheads = {bulkhead("critical", 0, 1, 2)}}).empty());
    REQUIRE(s.a.stats(batch, s.clock.now()).max == 2);
    REQUIRE(s.release(2).empty());
    REQUIRE(s.release(4).empty());
    REQUIRE(s.release(5).empty());
    REQUIRE(s.a.server_stats(s.clock.now()).in_use == 0);
  }
}

TEST_CASE("an invalid live policy changes nothing", "[pools]") {
  Script s(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 4)}});
  REQUIRE(s.acquire("batch") == "granted lease 1");
  auto r = s.a.set_policy(Policy{.capacity = 4, .bulkheads = {bulkhead("batch", 0, 0, 10)}},
                          s.clock.now());
  REQUIRE_FALSE(r.has_value());
  REQUIRE(r.error() == PolicyErrors{"bulkheads.batch.max: 10 exceeds the server capacity 4"});
  s.check();
  REQUIRE(s.stats("batch").max == 4);
  REQUIRE(s.acquire("batch") == "granted lease 2");
}
