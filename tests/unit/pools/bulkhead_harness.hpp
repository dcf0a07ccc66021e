// Script: drives a pools::BulkheadAdmission on a fake clock, checks its invariants after every
// step, and renders decisions as short exact strings ("granted lease 3", "queued ticket 4",
// "refused queue_full", "ticket 4 -> lease 7 critical") so a failing test shows what happened.
#pragma once

#define CATCH_CONFIG_ENABLE_OPTIONAL_STRINGMAKER

#include "support/fake_clock.hpp"

#include "pools/bulkhead_admission.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::test {

using namespace std::chrono_literals;
using pools::AcquireResult;
using pools::BulkheadAdmission;
using pools::BulkheadId;
using pools::BulkheadPolicy;
using pools::GroupId;
using pools::HandOff;
using pools::kNoGroup;
using pools::LeaseId;
using pools::LeaseOutcome;
using pools::Policy;
using pools::RefusalReason;
using pools::Refused;
using pools::Rejection;
using pools::TicketId;

using Lines = std::vector<std::string>;

inline std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : "; ") + p;
  return out;
}

inline BulkheadAdmission make_admission(Policy policy, std::uint64_t seed) {
  auto made = BulkheadAdmission::create(std::move(policy), seed);
  INFO((made ? std::string() : join(made.error())));
  REQUIRE(made.has_value());
  return std::move(made).value();
}

class Script {
 public:
  explicit Script(Policy policy, std::uint64_t seed = 42)
      : a(make_admission(std::move(policy), seed)) {
    check();
  }

  BulkheadId id(std::string_view name) const {
    auto found = a.find_bulkhead(name);
    REQUIRE(found.has_value());
    return *found;
  }
  std::string name(BulkheadId b) const { return a.bulkhead_policy(b).name; }

  void check() const { REQUIRE(a.check_invariants() == std::nullopt); }

  AcquireResult acquire_raw(std::string_view bulkhead, GroupId group = kNoGroup) {
    AcquireResult r = a.try_acquire(id(bulkhead), group, clock.now());
    check();
    return r;
  }
  std::string acquire(std::string_view bulkhead, GroupId group = kNoGroup) {
    return describe(acquire_raw(bulkhead, group));
  }
  // The refusal of an acquire that must be refused.
  Refused refusal(std::string_view bulkhead, GroupId group = kNoGroup) {
    AcquireResult r = acquire_raw(bulkhead, group);
    INFO(describe(r));
    REQUIRE(std::holds_alternative<Refused>(r));
    return std::get<Refused>(r);
  }
  Lines release(LeaseId lease, LeaseOutcome outcome = LeaseOutcome::Completed) {
    Lines out = describe(a.release(lease, clock.now(), outcome));
    check();
    return out;
  }
  // refuse_lease(): "refused max_wait; ticket 2 -> lease 3 batch", or "unknown lease".
  std::string refuse_lease(LeaseId lease, RefusalReason reason = RefusalReason::MaxWait) {
    auto r = a.refuse_lease(lease, reason, clock.now());
    check();
    if (!r) return "unknown lease";
    std::string out = std::string("refused ") + pools::to_string(r->refusal.reason);
    for (const std::string& line : describe(r->handed_off)) out += "; " + line;
    return out;
  }
  bool cancel(TicketId ticket) {
    bool ok = a.cancel(ticket, clock.now());
    check();
    return ok;
  }
  Lines expire() {
    Lines out = describe(a.expire(clock.now()));
    check();
    return out;
  }
  Lines connect_failed() {
    Lines out = describe(a.record_connect_failure(clock.now()));
    check();
    return out;
  }
  void connect_succeeded() {
    a.record_connect_success(clock.now());
    check();
  }
  Lines set_policy(Policy policy) {
    auto r = a.set_policy(std::move(policy), clock.now());
    INFO((r ? std::string() : join(r.error())));
    REQUIRE(r.has_value());
    check();
    return describe(*r);
  }
  Lines set_group_limit(GroupId group, std::uint32_t limit) {
    Lines out = describe(a.set_group_limit(group, limit, clock.now()));
    check();
    return out;
  }
  template <class Rep, class Period>
  void advance(std::chrono::duration<Rep, Period> d) {
    clock.advance(d);
  }
  pools::BulkheadStats stats(std::string_view bulkhead) const {
    auto found = a.find_bulkhead(bulkhead);
    REQUIRE(found.has_value());
    return a.stats(*found, clock.now());
  }

  static std::string describe(const AcquireResult& r) {
    if (const auto* g = std::get_if<pools::Granted>(&r)) {
      return std::string(g->probe ? "granted probe lease " : "granted lease ") +
             std::to_string(g->lease);
    }
    if (const auto* q = std::get_if<pools::Queued>(&r)) {
      return "queued ticket " + std::to_string(q->ticket);
    }
    return std::string("refused ") + pools::to_string(std::get<Refused>(r).reason);
  }
  Lines describe(const std::vector<HandOff>& handoffs) const {
    Lines out;
    for (const HandOff& h : handoffs) {
      out.push_back("ticket " + std::to_string(h.ticket) + " -> lease " + std::to_string(h.lease) +
                    " " + name(h.bulkhead));
    }
    return out;
  }
  static Lines describe(const std::vector<Rejection>& rejections) {
    Lines out;
    for (const Rejection& r : rejections) {
      out.push_back("ticket " + std::to_string(r.ticket) + " " +
                    pools::to_string(r.refusal.reason));
    }
    return out;
  }

  BulkheadAdmission a;
  FakeClock clock;
};

// Two-class policy used by several tests; callers adjust fields before constructing a Script.
inline BulkheadPolicy bulkhead(std::string name, std::uint32_t priority, std::uint32_t reserved,
                               std::uint32_t max, std::uint32_t queue_depth = 8,
                               std::chrono::milliseconds max_wait = 1000ms) {
  return BulkheadPolicy{.name = std::move(name),
                        .priority = priority,
                        .reserved = reserved,
                        .max = max,
                        .queue_depth = queue_depth,
                        .max_wait = max_wait};
}

}  // namespace sluice::test
