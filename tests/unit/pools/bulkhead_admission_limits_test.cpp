// BulkheadAdmission's edge limits: token buckets for new transactions and new connections,
// max_clients, the circuit breaker, and the jittered retry hints. Scripted on a fake clock with
// check_invariants() after every step.
#include "unit/pools/bulkhead_harness.hpp"

#include <algorithm>
#include <set>
#include <vector>

namespace {

using namespace sluice::test;
using sluice::pools::BreakerState;
using sluice::pools::ClientAdmitted;
using sluice::pools::RateLimit;

void require_between(std::chrono::milliseconds v, std::chrono::milliseconds lo,
                     std::chrono::milliseconds hi) {
  INFO(v.count() << "ms not in [" << lo.count() << ", " << hi.count() << "]");
  REQUIRE(v >= lo);
  REQUIRE(v <= hi);
}

std::string admit_client(Script& s, std::string_view bulkhead) {
  auto r = s.a.acquire_client(s.id(bulkhead), s.clock.now());
  s.check();
  if (std::holds_alternative<ClientAdmitted>(r)) return "admitted";
  return std::string("refused ") + sluice::pools::to_string(std::get<Refused>(r).reason);
}

}  // namespace

TEST_CASE("new transactions per second are limited by a token bucket", "[pools]") {
  BulkheadPolicy batch = bulkhead("batch", 0, 0, 4);
  batch.new_transactions = RateLimit{.per_second = 2, .burst = 2};
  SECTION("a burst, then one every 500ms") {
    Script s(Policy{.capacity = 4, .bulkheads = {batch}});
    REQUIRE(s.acquire("batch") == "granted lease 1");
    REQUIRE(s.acquire("batch") == "granted lease 2");
    const Refused r = s.refusal("batch");
    CHECK(r.reason == RefusalReason::RateLimit);
    require_between(r.retry_after, 400ms, 600ms);  // the next token in 500ms, +-20%
    s.advance(499ms);
    const Refused soon = s.refusal("batch");
    CHECK(soon.retry_after == 10ms);  // 1ms, clamped to retry_after_min
    s.advance(1ms);
    REQUIRE(s.acquire("batch") == "granted lease 3");
    REQUIRE(s.stats("batch").refused_for(RefusalReason::RateLimit) == 2);
  }
  SECTION("queueing takes a token; refusing for a full queue does not") {
    batch.max = 1;
    batch.queue_depth = 1;
    Script s(Policy{.capacity = 1, .bulkheads = {batch}});
    REQUIRE(s.acquire("batch") == "granted lease 1");
    REQUIRE(s.acquire("batch") == "queued ticket 2");
    REQUIRE(s.acquire("batch") == "refused queue_full");
    s.advance(500ms);  // one token back
    REQUIRE(s.acquire("batch") == "refused queue_full");
    REQUIRE(s.cancel(2));
    REQUIRE(s.acquire("batch") == "queued ticket 3");
    REQUIRE(s.cancel(3));
    REQUIRE(s.acquire("batch") == "refused rate_limit");
  }
}

TEST_CASE("client connections are limited by max_clients and new connections per second",
          "[pools]") {
  BulkheadPolicy batch = bulkhead("batch", 0, 0, 2);
  batch.max_clients = 2;
  batch.new_connections = RateLimit{.per_second = 1, .burst = 2};
  Script s(Policy{.capacity = 2, .bulkheads = {batch}});
  REQUIRE(admit_client(s, "batch") == "admitted");
  REQUIRE(admit_client(s, "batch") == "admitted");
  auto full = s.a.acquire_client(s.id("batch"), s.clock.now());
  REQUIRE(std::get<Refused>(full).reason == RefusalReason::MaxClients);
  require_between(std::get<Refused>(full).retry_after, 800ms, 1200ms);

  REQUIRE(s.a.release_client(s.id("batch")));
  auto fast = s.a.acquire_client(s.id("batch"), s.clock.now());
  REQUIRE(std::get<Refused>(fast).reason == RefusalReason::RateLimit);
  require_between(std::get<Refused>(fast).retry_after, 800ms, 1200ms);
  s.advance(1s);
  REQUIRE(admit_client(s, "batch") == "admitted");

  const auto st = s.stats("batch");
  CHECK(st.clients == 2);
  CHECK(st.clients_admitted == 3);
  CHECK(st.refused_for(RefusalReason::MaxClients) == 1);
  CHECK(st.refused_for(RefusalReason::RateLimit) == 1);
  REQUIRE(s.a.release_client(s.id("batch")));
  REQUIRE(s.a.release_client(s.id("batch")));
  REQUIRE_FALSE(s.a.release_client(s.id("batch")));  // never below zero
  for (int i = 0; i < 100; ++i) REQUIRE(admit_client(s, "default") == "admitted");  // unlimited
}

TEST_CASE("the check before authentication refuses like acquire_client but spends nothing",
          "[pools]") {
  BulkheadPolicy critical = bulkhead("critical", 0, 0, 2);
  critical.max_clients = 2;
  critical.new_connections = RateLimit{.per_second = 1, .burst = 2};
  Script s(Policy{.capacity = 2, .bulkheads = {critical}});
  const auto check = [&] {
    auto r = s.a.check_client(s.id("critical"), s.clock.now());
    s.check();
    if (std::holds_alternative<ClientAdmitted>(r)) return std::string("admitted");
    return std::string("refused ") + sluice::pools::to_string(std::get<Refused>(r).reason);
  };
  // Any number of clients that only claim the bulkhead (and never authenticate) pass the check
  // and leave its budget whole.
  for (int i = 0; i < 100; ++i) REQUIRE(check() == "admitted");
  CHECK(s.stats("critical").clients == 0);
  REQUIRE(admit_client(s, "critical") == "admitted");  // a token and a client, after the check
  REQUIRE(admit_client(s, "critical") == "admitted");
  CHECK(check() == "refused max_clients");
  REQUIRE(s.a.release_client(s.id("critical")));
  CHECK(check() == "refused rate_limit");  // both tokens spent
  s.advance(1s);
  CHECK(check() == "admitted");
  CHECK(check() == "admitted");  // still one token: checks take none
  REQUIRE(admit_client(s, "critical") == "admitted");
  const auto st = s.stats("critical");
  CHECK(st.clients_admitted == 3);
  CHECK(st.refused_for(RefusalReason::MaxClients) == 1);
  CHECK(st.refused_for(RefusalReason::RateLimit) == 1);
}

TEST_CASE("the circuit breaker opens, probes half-open, and closes", "[pools]") {
  Policy p{.capacity = 2, .bulkheads = {bulkhead("batch", 0, 0, 2, 8, 5000ms)}};
  p.breaker = {
      .failure_threshold = 3, .open_delay = 1000ms, .max_open_delay = 4000ms, .backoff = 2};
  Script s(p);
  REQUIRE(s.acquire("batch") == "granted lease 1");
  REQUIRE(s.acquire("batch") == "granted lease 2");
  REQUIRE(s.acquire("batch") == "queued ticket 3");
  REQUIRE(s.acquire("batch") == "queued ticket 4");

  REQUIRE(s.connect_failed().empty());
  REQUIRE(s.connect_failed().empty());
  s.connect_succeeded();  // failures must be consecutive
  REQUIRE(s.connect_failed().empty());
  REQUIRE(s.connect_failed().empty());
  REQUIRE(s.a.server_stats(s.clock.now()).consecutive_connect_failures == 2);
  const auto refused = s.a.record_connect_failure(s.clock.now());
  s.check();
  REQUIRE(Script::describe(refused) == Lines{"ticket 3 server_down", "ticket 4 server_down"});
  for (const Rejection& r : refused) require_between(r.refusal.retry_after, 800ms, 1200ms);
  REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::Open);

  // Open: refused at once, not queued, with the time left as the hint.
  require_between(s.refusal("batch").retry_after, 800ms, 1200ms);
  s.advance(500ms);
  require_between(s.refusal("batch").retry_after, 400ms, 600ms);
  REQUIRE(s.stats("batch").refused_for(RefusalReason::ServerDown) == 4);

  s.advance(500ms);
  REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::HalfOpen);
  REQUIRE(s.release(1).empty());
  REQUIRE(s.release(2).empty());
  REQUIRE(s.acquire("batch") == "granted probe lease 5");
  REQUIRE(s.acquire("batch") == "refused server_down");  // one probe at a time, despite room
  REQUIRE(s.a.server_stats(s.clock.now()).probe == LeaseId{5});

  SECTION("a failed probe reopens it with a doubled delay") {
    const auto reopened_at = s.clock.now();
    REQUIRE(s.connect_failed().empty());
    REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::Open);
    REQUIRE(s.a.server_stats(s.clock.now()).probe == std::nullopt);
    REQUIRE(s.a.breaker_probe_at() == reopened_at + 2000ms);
    s.advance(100ms);
    REQUIRE(s.connect_failed().empty());  // a straggler while open does not extend the delay
    REQUIRE(s.a.breaker_probe_at() == reopened_at + 2000ms);
    REQUIRE(s.release(5, LeaseOutcome::Failed).empty());
    s.advance(1899ms);
    REQUIRE(s.acquire("batch") == "refused server_down");
    s.advance(1ms);
    REQUIRE(s.acquire("batch") == "granted probe lease 6");
    s.connect_succeeded();
    REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::Closed);
    REQUIRE(s.acquire("batch") == "granted lease 7");
    REQUIRE(s.acquire("batch") == "queued ticket 8");
    REQUIRE(s.release(6) == Lines{"ticket 8 -> lease 9 batch"});
  }
  SECTION("a probe that completes on an open connection closes it") {
    REQUIRE(s.release(5).empty());
    REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::Closed);
    REQUIRE(s.acquire("batch") == "granted lease 6");
    REQUIRE(s.acquire("batch") == "granted lease 7");
    REQUIRE(s.acquire("batch") == "queued ticket 8");
  }
  SECTION("a probe whose client left lets the next arrival probe") {
    REQUIRE(s.release(5, LeaseOutcome::Ignored).empty());
    REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::HalfOpen);
    REQUIRE(s.acquire("batch") == "granted probe lease 6");
  }
}

TEST_CASE("a breaker's probe that hangs, or leaves, never holds up the next one", "[pools]") {
  Policy p{.capacity = 2, .bulkheads = {bulkhead("batch", 0, 0, 2, 8, 5000ms)}};
  p.breaker = {
      .failure_threshold = 1, .open_delay = 1000ms, .max_open_delay = 4000ms, .backoff = 2};
  Script s(p);
  REQUIRE(s.connect_failed().empty());
  REQUIRE(s.a.next_probe_at(s.clock.now()) == s.clock.in(1000ms));
  s.advance(1000ms);
  REQUIRE(s.a.next_probe_at(s.clock.now()) == s.clock.now());
  REQUIRE(s.acquire("batch") == "granted probe lease 1");
  REQUIRE(s.a.next_probe_at(s.clock.now()) == s.clock.in(1000ms));

  SECTION("its connect hangs: after the delay the next arrival probes, with the delay doubled") {
    s.advance(999ms);
    REQUIRE(s.acquire("batch") == "refused server_down");
    s.advance(1ms);
    REQUIRE(s.acquire("batch") == "granted probe lease 2");
    REQUIRE(s.a.server_stats(s.clock.now()).probe == LeaseId{2});
    REQUIRE(s.a.breaker_delay() == 2000ms);
    REQUIRE(s.release(1, LeaseOutcome::Failed).empty());  // the hung one gives up: no effect
    REQUIRE(s.a.server_stats(s.clock.now()).probe == LeaseId{2});
    REQUIRE(s.acquire("batch") == "refused server_down");
  }
  SECTION("its client leaves: the next probe is due at once") {
    s.advance(10ms);
    REQUIRE(s.release(1, LeaseOutcome::Ignored).empty());
    REQUIRE(s.a.next_probe_at(s.clock.now()) == s.clock.now());
    REQUIRE(s.acquire("batch") == "granted probe lease 2");
  }
  SECTION("a background probe takes over from a hung probe lease") {
    s.advance(1000ms);
    const auto probe = s.a.start_probe(s.clock.now());
    REQUIRE(probe.has_value());
    s.check();
    REQUIRE(s.a.server_stats(s.clock.now()).probe == std::nullopt);  // lease 1 is ordinary now
    REQUIRE(s.acquire("batch") == "refused server_down");            // one probe in flight
    REQUIRE(s.a.start_probe(s.clock.now()) == std::nullopt);
    SECTION("ending without a verdict makes the next one due") {
      s.a.end_probe(*probe, s.clock.now());
      REQUIRE(s.acquire("batch") == "granted probe lease 2");
    }
    SECTION("its connect succeeds: closed") {
      s.connect_succeeded();
      REQUIRE(s.a.breaker_state(s.clock.now()) == BreakerState::Closed);
      REQUIRE(s.acquire("batch") == "granted lease 2");
    }
  }
}

namespace {

// 200 queue_full refusals whose drain estimate is (1 waiter + 1) x 300ms / 1 slot = 600ms.
std::vector<std::chrono::milliseconds> hints(std::uint64_t seed, Policy p) {
  Script s(std::move(p), seed);
  REQUIRE(s.acquire("batch") == "granted lease 1");
  s.advance(300ms);
  REQUIRE(s.release(1).empty());
  REQUIRE(s.acquire("batch") == "granted lease 2");
  REQUIRE(s.acquire("batch") == "queued ticket 3");
  std::vector<std::chrono::milliseconds> out;
  for (int i = 0; i < 200; ++i) {
    const Refused r = s.refusal("batch");
    REQUIRE(r.reason == RefusalReason::QueueFull);
    out.push_back(r.retry_after);
  }
  return out;
}

}  // namespace

TEST_CASE("retry hints are jittered within 20% of the drain estimate, from the seed", "[pools]") {
  const Policy p{.capacity = 1, .bulkheads = {bulkhead("batch", 0, 0, 1, 1, 1000ms)}};
  const auto a = hints(42, p);
  for (auto h : a) require_between(h, 480ms, 720ms);
  CHECK(*std::min_element(a.begin(), a.end()) < 500ms);
  CHECK(*std::max_element(a.begin(), a.end()) > 700ms);
  CHECK(std::set<std::chrono::milliseconds>(a.begin(), a.end()).size() > 50);
  CHECK(hints(42, p) == a);  // deterministic given the seed
  CHECK(hints(7, p) != a);

  Policy clamped = p;
  clamped.retry_after_min = 700ms;
  clamped.retry_after_max = 710ms;
  for (auto h : hints(42, clamped)) require_between(h, 700ms, 710ms);
}
