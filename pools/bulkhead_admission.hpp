// BulkheadAdmission: who may use one of a server's backend slots now, who waits, who is refused.
//
// One object per server (capacity domain, `capacity` slots = its max_connections). A *slot* is
// the right to use one backend connection of that server. The capacity is divided into
// *bulkheads*, priority classes of work (see docs/ADMISSION.md):
//  - a bulkhead's `reserved` slots are guaranteed to it; the remainder (capacity - sum of
//    reserved, the *shared* slots) is borrowed by any bulkhead up to its `max`. A bulkhead counts
//    as using its own reserved slots first; slots are fungible, so the borrowed count is
//    max(0, in_use - reserved) and a release returns a borrowed slot first;
//  - a request that cannot be granted waits in its bulkhead's bounded queue (queue_depth,
//    max_wait), or is refused early (queue full, oldest waiter too old, predicted wait too long);
//  - a freed slot is handed straight to one waiter: the head waiter of the highest-priority
//    bulkhead that may use it (equal priorities: in order of first definition; no thundering herd).
//    A congested queue is served newest-first (adaptive LIFO, QueueDelayMonitor). Running work is
//    never pre-empted;
//  - optional second dimension: *groups* (a (database, user) pool with its pool_size). A grant
//    needs room in both; a waiter blocked only by its group is skipped, not blocking its class;
//  - a circuit breaker refuses at once (server_down) while connects to the server keep failing;
//  - per-bulkhead client admission (max_clients, new connections per second: checked before
//    authentication, charged after it) and a token bucket for new transactions per second.
//
// Pure and single-threaded: no clock (every call that needs time takes `now`, a steady_clock
// time point), no I/O, no locks; randomness only from a std::mt19937_64 seeded by the caller
// (retry-hint jitter). The owner in src/ serialises all calls (one executor or one mutex) and
// maps tickets to waiting sessions and their timers. Lease and ticket ids share one counter,
// start at 1 and are never reused. Results are values; nothing throws on bad input except
// std::out_of_range for a BulkheadId or GroupId this object never issued (a caller bug).
#pragma once

#include "base/result.hpp"
#include "pools/bulkhead_policy.hpp"
#include "pools/circuit_breaker.hpp"
#include "pools/id_map.hpp"
#include "pools/queue_delay_monitor.hpp"
#include "pools/token_bucket.hpp"
#include "pools/types.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace sluice::pools {

using BulkheadId = std::uint32_t;

// try_acquire's group when no group limit applies.
inline constexpr GroupId kNoGroup = std::numeric_limits<GroupId>::max();

enum class RefusalReason {
  QueueFull,      // the bulkhead's queue holds queue_depth waiters
  QueueAge,       // its oldest waiter is already older than max_wait
  PredictedWait,  // waiters ahead x mean hold time / usable slots > max_wait
  MaxWait,        // waited max_wait in the queue (expired)
  RateLimit,      // new-transactions or new-connections token bucket empty
  MaxClients,     // the bulkhead has max_clients client connections
  ServerDown,     // the server's circuit breaker is open
};
inline constexpr std::size_t kRefusalReasonCount = 7;
// Exactly: queue_full, queue_age, predicted_wait, max_wait, rate_limit, max_clients, server_down.
const char* to_string(RefusalReason r);

// How a lease ended (Netflix concurrency-limits' onSuccess / onIgnore / onDropped).
enum class LeaseOutcome {
  Completed,  // work ran: the hold time is measured
  TimedOut,   // statement timeout: measured and counted in `timeouts`
  Failed,     // backend broke or the connect failed: not measured (connect timeouts would skew it)
  Ignored,    // no work ran (client gone before using the slot): not measured
};

struct Granted {
  LeaseId lease = 0;
  bool probe = false;  // the breaker is half-open and this grant is its probe (see class comment)
};
struct Queued {
  TicketId ticket = 0;
  TimePoint deadline{};  // now + max_wait: expire() refuses the waiter at this instant
};
struct Refused {
  RefusalReason reason = RefusalReason::QueueFull;
  std::chrono::milliseconds retry_after{0};  // hint for the client, jittered +-20%, clamped
  std::uint32_t waiters = 0;  // the bulkhead's queue depth at the decision (incl. a rejected one)
  std::chrono::milliseconds oldest_age{0};  // age of its oldest waiter then (0 if none)
  BulkheadId bulkhead = 0;
};
using AcquireResult = std::variant<Granted, Queued, Refused>;

struct ClientAdmitted {};
using ClientAdmission = std::variant<ClientAdmitted, Refused>;

// A waiter that has just been given a slot: wake `ticket`'s owner, who now holds `lease`.
struct HandOff {
  TicketId ticket = 0;
  LeaseId lease = 0;
  BulkheadId bulkhead = 0;
  GroupId group = kNoGroup;
};
// A waiter removed from its queue with a refusal (expired, or the breaker opened).
struct Rejection {
  TicketId ticket = 0;
  Refused refusal;
};
// A lease given up unused (refuse_lease): the refusal its holder gets, and the waiters the freed
// slot was handed to, in grant order.
struct LeaseRefusal {
  Refused refusal;
  std::vector<HandOff> handed_off;
};

struct BulkheadStats {
  std::string name;
  bool retired = false;  // dropped from the policy; finishes its work, takes no reserved slots
  std::uint32_t priority = 0;
  std::uint32_t reserved = 0;
  std::uint32_t max = 0;
  std::uint32_t queue_depth = 0;
  std::chrono::milliseconds max_wait{0};
  std::chrono::milliseconds statement_timeout{0};
  std::uint32_t in_use = 0;
  std::uint32_t borrowed = 0;  // max(0, in_use - reserved)
  std::uint32_t waiters = 0;
  std::uint32_t clients = 0;
  std::optional<std::chrono::nanoseconds> oldest_wait;  // age of the oldest waiter at `now`
  std::uint64_t admitted = 0;                           // slots granted: at once plus handed off
  std::uint64_t handed_off = 0;                         // of those, granted from the queue
  std::uint64_t queued = 0;
  std::uint64_t expired = 0;  // also counted in refused[MaxWait]
  std::uint64_t cancelled = 0;
  std::uint64_t timeouts = 0;  // leases released with LeaseOutcome::TimedOut
  std::uint64_t clients_admitted = 0;
  std::array<std::uint64_t, kRefusalReasonCount> refused{};            // by RefusalReason
  std::optional<std::chrono::duration<double, std::milli>> mean_hold;  // EWMA; none measured yet
  bool lifo = false;  // adaptive LIFO is serving this queue newest-first

  std::uint64_t refused_for(RefusalReason r) const { return refused[static_cast<std::size_t>(r)]; }
  std::uint64_t refused_total() const;
};

struct ServerStats {
  std::uint32_t capacity = 0;
  std::uint32_t in_use = 0;
  std::uint32_t shared = 0;    // capacity - sum of reserved
  std::uint32_t borrowed = 0;  // shared slots in use
  std::uint32_t waiters = 0;
  BreakerState breaker = BreakerState::Closed;
  std::uint32_t consecutive_connect_failures = 0;
  std::optional<LeaseId> probe;  // the half-open breaker's probe lease
};

class BulkheadAdmission {
 public:
  // Validates and normalises `policy` (normalize_policy); `seed` seeds the retry-hint jitter.
  static Result<BulkheadAdmission, PolicyErrors> create(Policy policy, std::uint64_t seed);

  // ---- classification -------------------------------------------------------------------------
  // A live (not retired) bulkhead by name; src/ falls back to default_bulkhead().
  std::optional<BulkheadId> find_bulkhead(std::string_view name) const;
  BulkheadId default_bulkhead() const { return default_id_; }
  const BulkheadPolicy& bulkhead_policy(BulkheadId id) const;  // statement timeouts etc.
  std::size_t bulkhead_count() const { return bulkheads_.size(); }
  const Policy& policy() const { return policy_; }  // normalised

  // ---- groups (per (database, user) pool limits) -------------------------------------------
  // A removed group's id is reused first, so groups_ holds at most as many as were ever live.
  GroupId add_group(std::uint32_t limit);
  // Forgets a group nobody holds a slot of or waits in (a reaped pool: pools/pool_reaper.hpp).
  // False, and nothing changes, while it has a lease or a waiter, or once it is removed.
  bool remove_group(GroupId group);
  // Raising a limit may let waiters through; lowering it lets running work finish.
  std::vector<HandOff> set_group_limit(GroupId group, std::uint32_t limit, TimePoint now);

  // ---- client connections --------------------------------------------------------------------
  // Refused with MaxClients or RateLimit (new connections per second); otherwise counted until
  // release_client. release_client returns false (and changes nothing) if none is counted.
  // src/ calls it only once the client has authenticated, so that clients who merely claim to
  // belong to the bulkhead cannot spend its budget (issue 12, item 5).
  ClientAdmission acquire_client(BulkheadId bulkhead, TimePoint now);
  // The early refusal before authentication: what acquire_client() would answer now, without
  // counting the client or taking a token (a refusal is counted in the bulkhead's stats).
  ClientAdmission check_client(BulkheadId bulkhead, TimePoint now);
  bool release_client(BulkheadId bulkhead);

  // ---- slots ---------------------------------------------------------------------------------
  // Grants a slot at once, queues until now + max_wait, or refuses (reason, retry hint). Order:
  // breaker (Open: server_down; HalfOpen: with no probe in flight, the first arrival that could
  // be granted becomes the probe, every other arrival is server_down, nobody queues); if a slot
  // is free: a
  // new-transactions token (else rate_limit), then Granted; otherwise queue_full, queue_age,
  // predicted_wait, a token (else rate_limit), then Queued. A refusal takes no token.
  AcquireResult try_acquire(BulkheadId bulkhead, GroupId group, TimePoint now);
  // The lease try_acquire() would grant at once, if it would grant at once with the breaker
  // closed; otherwise nullopt and nothing changes (no queueing, no refusal counted, no token
  // taken): the caller then calls try_acquire() for the full decision.
  std::optional<LeaseId> try_grant(BulkheadId bulkhead, GroupId group, TimePoint now);
  // Returns the slot and hands freed capacity to waiters (the returned hand-offs, in grant
  // order). An unknown or already released lease is ignored (empty result): double release is
  // harmless.
  std::vector<HandOff> release(LeaseId lease, TimePoint now,
                               LeaseOutcome outcome = LeaseOutcome::Completed);
  // A lease whose holder gives up before it could use a backend: it waited its max_wait for one
  // (the backend's connect still running, or no room to open one). The refusal is counted under
  // `reason` (src/ uses MaxWait) as any other refusal of the lease's bulkhead, with a retry hint
  // from the bulkhead's drain estimate; the slot is returned as LeaseOutcome::Ignored (no hold
  // time measured) and handed on as by release(). An unknown or already released lease: nullopt,
  // nothing counted.
  std::optional<LeaseRefusal> refuse_lease(LeaseId lease, RefusalReason reason, TimePoint now);
  // Removes a waiter (client gone, CancelRequest). False if the ticket is not waiting: it was
  // already granted (cancel racing a grant: the owner must release that lease as Ignored),
  // expired, refused or never issued.
  bool cancel(TicketId ticket, TimePoint now);
  // Refuses one waiter now, as expire() does at its deadline (counted as MaxWait and expired):
  // its owner stopped waiting when its own timer said the deadline had come. Nullopt, counting
  // nothing, if the ticket is not waiting.
  std::optional<Rejection> expire_ticket(TicketId ticket, TimePoint now);
  // Refuses every waiter whose deadline is <= now (exactly at the deadline counts as expired),
  // in priority order, oldest first within a bulkhead.
  std::vector<Rejection> expire(TimePoint now);
  // The earliest waiter deadline; nullopt when nobody waits.
  std::optional<TimePoint> next_deadline() const;

  // ---- server health -------------------------------------------------------------------------
  // A failed backend connect. When it opens the breaker every waiter is refused (server_down)
  // and returned.
  std::vector<Rejection> record_connect_failure(TimePoint now);
  // A successful connect closes the breaker in any state.
  void record_connect_success(TimePoint now);
  BreakerState breaker_state(TimePoint now) const { return breaker_.state(now); }
  // When an open breaker turns half-open; nullopt when closed.
  std::optional<TimePoint> breaker_probe_at() const { return breaker_.probe_at(); }
  // When the breaker's next probe is due (CircuitBreaker::next_probe_at): for a background
  // prober's timer. nullopt when closed.
  std::optional<TimePoint> next_probe_at(TimePoint now) const {
    return breaker_.next_probe_at(now);
  }
  std::chrono::milliseconds breaker_delay() const { return breaker_.current_delay(); }
  // A probe without a client (a background connect): its id when one may start now (half-open,
  // no probe in flight), else nullopt. Its connect reports through record_connect_success() or
  // record_connect_failure(); one that ends otherwise (no connect made, or a login error that
  // says nothing about the server) calls end_probe(). A probe lease, if any, is ordinary now.
  std::optional<ProbeId> start_probe(TimePoint now);
  void end_probe(ProbeId probe, TimePoint now) { breaker_.end_probe(probe, now); }

  // ---- live tuning ---------------------------------------------------------------------------
  // Applies a new policy without dropping anyone. Bulkheads are matched by name and keep their
  // ids, queues, leases and counters; a bulkhead missing from the new policy is *retired*
  // (reserved 0, max capped at the capacity, no longer found by name; its id stays valid and
  // its sessions keep working); re-adding the name revives it. Growth hands slots to waiters at
  // once (returned); shrinking lets running work and queued waiters (with their deadlines) finish,
  // and takes effect as slots free. On errors nothing changes.
  Result<std::vector<HandOff>, PolicyErrors> set_policy(Policy policy, TimePoint now);

  // ---- observation ---------------------------------------------------------------------------
  BulkheadStats stats(BulkheadId bulkhead, TimePoint now) const;
  ServerStats server_stats(TimePoint now) const;
  // Recomputes every count from the containers and checks the bounds and the hand-off rule
  // (nobody waits for a slot they could have); a description of the first mismatch, if any.
  std::optional<std::string> check_invariants() const;

 private:
  struct Waiter {
    TicketId ticket = 0;
    GroupId group = kNoGroup;
    TimePoint since{};
    TimePoint deadline{};
  };
  struct LeaseRecord {
    BulkheadId bulkhead = 0;
    GroupId group = kNoGroup;
    TimePoint granted_at{};
  };
  struct Group {
    std::uint32_t limit = 0;
    std::uint32_t in_use = 0;
    std::uint32_t in_use_ceiling = 0;  // in_use may exceed a lowered limit until it drains
    bool live = true;                  // false: removed, its id waiting in free_groups_
  };
  struct Bulkhead {
    BulkheadPolicy policy;
    bool retired = false;
    std::uint32_t in_use = 0;
    std::uint32_t clients = 0;
    std::deque<Waiter> waiters;  // arrival order: front is the oldest
    TokenBucket new_connections;
    TokenBucket new_transactions;
    QueueDelayMonitor delay;
    std::optional<double> mean_hold_ns;
    // After a live shrink the current values may exceed the new limits; the ceilings only fall
    // (to the limit) as work drains, and check_invariants() holds the counts under them.
    std::uint32_t in_use_ceiling = 0;
    std::size_t waiters_ceiling = 0;
    BulkheadStats counters;  // only the cumulative counters are kept up to date here
  };

  BulkheadAdmission(Policy policy, std::uint64_t seed);

  void apply_bulkhead_policy(Bulkhead& b, const BulkheadPolicy& p, TimePoint now);
  void rebuild_indexes();
  std::uint32_t shared_slots() const;
  std::uint32_t borrowed_slots() const;
  std::uint32_t usable_slots(const Bulkhead& b) const;
  bool bulkhead_may_take(const Bulkhead& b) const;
  bool group_has_room(GroupId group) const;
  std::optional<std::size_t> pick_waiter(const Bulkhead& b) const;
  LeaseId grant(BulkheadId id, GroupId group, TimePoint now);
  void dispatch(TimePoint now, std::vector<HandOff>& out);
  std::optional<AcquireResult> queue_or_refuse(BulkheadId id, GroupId group, TimePoint now);
  Refused refuse(BulkheadId id, RefusalReason reason, TimePoint now,
                 std::chrono::nanoseconds retry_base);
  std::chrono::nanoseconds drain_estimate(const Bulkhead& b) const;
  std::chrono::milliseconds jittered(std::chrono::nanoseconds base);
  std::vector<Rejection> refuse_all_waiters(RefusalReason reason, TimePoint now);
  void remove_waiter(Bulkhead& b, std::size_t index);
  void observe_queues(TimePoint now);
  void settle_ceilings();
  std::optional<std::string> check_counts() const;
  std::optional<std::string> check_bounds() const;
  std::optional<std::string> check_hand_off_rule() const;

  Policy policy_;
  std::vector<Bulkhead> bulkheads_;                      // by BulkheadId; never shrinks
  std::vector<BulkheadId> by_priority_;                  // (priority, id) order
  std::unordered_map<std::string, BulkheadId> by_name_;  // live bulkheads only
  BulkheadId default_id_ = 0;
  std::vector<Group> groups_;         // by GroupId; never shrinks
  std::vector<GroupId> free_groups_;  // removed groups' ids, reused by add_group()
  IdMap<LeaseRecord> leases_;         // flat: no allocation per lease (bench/PROFILE.md C7)
  IdMap<BulkheadId> tickets_;         // every waiting ticket -> its queue
  std::uint32_t in_use_ = 0;
  std::uint32_t reserved_total_ = 0;
  std::uint32_t capacity_ceiling_ = 0;
  std::uint32_t borrowed_ceiling_ = 0;
  bool ceilings_raised_ = true;  // some ceiling may be above its limit (settle_ceilings has work)
  CircuitBreaker breaker_;
  std::optional<LeaseId> probe_;  // the half-open breaker's latest probe lease, until released
  ProbeId probe_id_ = 0;          // the breaker's name for probe_
  std::mt19937_64 rng_;
  std::uint64_t next_id_ = 1;
};

}  // namespace sluice::pools
