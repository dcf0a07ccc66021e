#include "pools/bulkhead_admission.hpp"

#include <algorithm>
#include <numeric>

namespace sluice::pools {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// Retry hint when a bulkhead is at max_clients: client connections last long and their end is
// not predictable from slot hold times, so a fixed base (jittered like every hint).
constexpr nanoseconds kMaxClientsRetryBase = std::chrono::seconds(1);
constexpr std::int64_t kJitterPermille = 200;  // +-20%

std::size_t index_of(RefusalReason r) { return static_cast<std::size_t>(r); }

}  // namespace

const char* to_string(RefusalReason r) {
  switch (r) {
    case RefusalReason::QueueFull:
      return "queue_full";
    case RefusalReason::QueueAge:
      return "queue_age";
    case RefusalReason::PredictedWait:
      return "predicted_wait";
    case RefusalReason::MaxWait:
      return "max_wait";
    case RefusalReason::RateLimit:
      return "rate_limit";
    case RefusalReason::MaxClients:
      return "max_clients";
    case RefusalReason::ServerDown:
      return "server_down";
  }
  return "unknown";
}

std::uint64_t BulkheadStats::refused_total() const {
  return std::accumulate(refused.begin(), refused.end(), std::uint64_t{0});
}

// ---- construction and policy -------------------------------------------------------------------

Result<BulkheadAdmission, PolicyErrors> BulkheadAdmission::create(Policy policy,
                                                                  std::uint64_t seed) {
  auto normalized = normalize_policy(std::move(policy));
  if (!normalized) return unexpected(std::move(normalized.error()));
  return BulkheadAdmission(std::move(*normalized), seed);
}

BulkheadAdmission::BulkheadAdmission(Policy policy, std::uint64_t seed)
    : policy_(std::move(policy)), breaker_(policy_.breaker), rng_(seed) {
  for (const BulkheadPolicy& p : policy_.bulkheads) {
    bulkheads_.emplace_back();
    apply_bulkhead_policy(bulkheads_.back(), p, TimePoint{});
  }
  rebuild_indexes();
  capacity_ceiling_ = policy_.capacity;
  borrowed_ceiling_ = shared_slots();
}

void BulkheadAdmission::apply_bulkhead_policy(Bulkhead& b, const BulkheadPolicy& p, TimePoint now) {
  b.policy = p;
  b.retired = false;
  b.new_connections.reconfigure(p.new_connections, now);
  b.new_transactions.reconfigure(p.new_transactions, now);
  b.delay.configure(p.adaptive_lifo, p.lifo_target, policy_.lifo_interval);
  b.in_use_ceiling = std::max(p.max, b.in_use);
  b.waiters_ceiling = std::max<std::size_t>(p.queue_depth, b.waiters.size());
  ceilings_raised_ = true;
}

void BulkheadAdmission::rebuild_indexes() {
  by_name_.clear();
  by_priority_.clear();
  reserved_total_ = 0;
  for (BulkheadId id = 0; id < bulkheads_.size(); ++id) {
    const Bulkhead& b = bulkheads_[id];
    by_priority_.push_back(id);
    reserved_total_ += b.policy.reserved;
    if (!b.retired) by_name_.emplace(b.policy.name, id);
  }
  std::stable_sort(by_priority_.begin(), by_priority_.end(), [&](BulkheadId a, BulkheadId b) {
    return bulkheads_[a].policy.priority < bulkheads_[b].policy.priority;
  });
  default_id_ = by_name_.at(kDefaultBulkhead);
}

Result<std::vector<HandOff>, PolicyErrors> BulkheadAdmission::set_policy(Policy policy,
                                                                         TimePoint now) {
  auto normalized = normalize_policy(std::move(policy));
  if (!normalized) return unexpected(std::move(normalized.error()));
  observe_queues(now);
  policy_ = std::move(*normalized);

  std::vector<bool> live(bulkheads_.size(), false);
  for (const BulkheadPolicy& p : policy_.bulkheads) {
    auto it = std::find_if(bulkheads_.begin(), bulkheads_.end(),
                           [&](const Bulkhead& b) { return b.policy.name == p.name; });
    if (it == bulkheads_.end()) {
      bulkheads_.emplace_back();
      live.push_back(true);
      apply_bulkhead_policy(bulkheads_.back(), p, now);
    } else {
      live[static_cast<std::size_t>(it - bulkheads_.begin())] = true;
      apply_bulkhead_policy(*it, p, now);
    }
  }
  for (std::size_t i = 0; i < bulkheads_.size(); ++i) {
    if (live[i]) continue;
    // Retired: its sessions finish under its old numbers, but it guarantees itself nothing.
    Bulkhead& b = bulkheads_[i];
    BulkheadPolicy p = b.policy;
    p.reserved = 0;
    p.max = std::min(p.max, policy_.capacity);
    apply_bulkhead_policy(b, p, now);
    b.retired = true;
  }
  breaker_.set_policy(policy_.breaker);
  rebuild_indexes();
  capacity_ceiling_ = std::max(policy_.capacity, in_use_);
  borrowed_ceiling_ = std::max(shared_slots(), borrowed_slots());
  ceilings_raised_ = true;

  std::vector<HandOff> out;
  dispatch(now, out);
  settle_ceilings();
  observe_queues(now);
  return out;
}

std::optional<BulkheadId> BulkheadAdmission::find_bulkhead(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return std::nullopt;
  return it->second;
}

const BulkheadPolicy& BulkheadAdmission::bulkhead_policy(BulkheadId id) const {
  return bulkheads_.at(id).policy;
}

// ---- groups and clients ------------------------------------------------------------------------

GroupId BulkheadAdmission::add_group(std::uint32_t limit) {
  const Group fresh{.limit = limit, .in_use = 0, .in_use_ceiling = limit};
  if (!free_groups_.empty()) {
    const GroupId id = free_groups_.back();
    free_groups_.pop_back();
    groups_[id] = fresh;
    return id;
  }
  groups_.push_back(fresh);
  return static_cast<GroupId>(groups_.size() - 1);
}

bool BulkheadAdmission::remove_group(GroupId group) {
  Group& g = groups_.at(group);
  if (!g.live || g.in_use != 0) return false;
  for (const Bulkhead& b : bulkheads_) {
    for (const Waiter& w : b.waiters) {
      if (w.group == group) return false;
    }
  }
  g = Group{.live = false};
  free_groups_.push_back(group);
  return true;
}

std::vector<HandOff> BulkheadAdmission::set_group_limit(GroupId group, std::uint32_t limit,
                                                        TimePoint now) {
  Group& g = groups_.at(group);
  observe_queues(now);
  g.limit = limit;
  g.in_use_ceiling = std::max(limit, g.in_use);
  ceilings_raised_ = true;
  std::vector<HandOff> out;
  dispatch(now, out);
  settle_ceilings();
  observe_queues(now);
  return out;
}

ClientAdmission BulkheadAdmission::acquire_client(BulkheadId id, TimePoint now) {
  Bulkhead& b = bulkheads_.at(id);
  if (b.policy.max_clients != 0 && b.clients >= b.policy.max_clients) {
    return refuse(id, RefusalReason::MaxClients, now, kMaxClientsRetryBase);
  }
  if (!b.new_connections.try_take(now)) {
    return refuse(id, RefusalReason::RateLimit, now, b.new_connections.time_to_next(now));
  }
  ++b.clients;
  ++b.counters.clients_admitted;
  return ClientAdmitted{};
}

ClientAdmission BulkheadAdmission::check_client(BulkheadId id, TimePoint now) {
  const Bulkhead& b = bulkheads_.at(id);
  if (b.policy.max_clients != 0 && b.clients >= b.policy.max_clients) {
    return refuse(id, RefusalReason::MaxClients, now, kMaxClientsRetryBase);
  }
  if (b.new_connections.available(now) == 0) {
    return refuse(id, RefusalReason::RateLimit, now, b.new_connections.time_to_next(now));
  }
  return ClientAdmitted{};
}

bool BulkheadAdmission::release_client(BulkheadId id) {
  Bulkhead& b = bulkheads_.at(id);
  if (b.clients == 0) return false;
  --b.clients;
  return true;
}

// ---- slot rules --------------------------------------------------------------------------------

std::uint32_t BulkheadAdmission::shared_slots() const {
  return policy_.capacity - std::min(reserved_total_, policy_.capacity);
}

std::uint32_t BulkheadAdmission::borrowed_slots() const {
  std::uint32_t borrowed = 0;
  for (const Bulkhead& b : bulkheads_) {
    if (b.in_use > b.policy.reserved) borrowed += b.in_use - b.policy.reserved;
  }
  return borrowed;
}

// The slots the bulkhead could hold if every other class returned what it borrowed.
std::uint32_t BulkheadAdmission::usable_slots(const Bulkhead& b) const {
  return std::max<std::uint32_t>(1, std::min(b.policy.max, b.policy.reserved + shared_slots()));
}

bool BulkheadAdmission::bulkhead_may_take(const Bulkhead& b) const {
  if (in_use_ >= policy_.capacity || b.in_use >= b.policy.max) return false;
  // Its own reserved slots first; beyond them only while shared capacity is spare.
  return b.in_use < b.policy.reserved || borrowed_slots() < shared_slots();
}

bool BulkheadAdmission::group_has_room(GroupId group) const {
  if (group == kNoGroup) return true;
  const Group& g = groups_.at(group);
  return g.in_use < g.limit;
}

// The waiter next in service order (oldest first, or newest first under adaptive LIFO) whose
// group has room; waiters blocked only by their group are skipped.
std::optional<std::size_t> BulkheadAdmission::pick_waiter(const Bulkhead& b) const {
  const std::size_t n = b.waiters.size();
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = b.delay.lifo() ? n - 1 - k : k;
    if (group_has_room(b.waiters[i].group)) return i;
  }
  return std::nullopt;
}

LeaseId BulkheadAdmission::grant(BulkheadId id, GroupId group, TimePoint now) {
  Bulkhead& b = bulkheads_[id];
  ++b.in_use;
  ++in_use_;
  if (group != kNoGroup) ++groups_[group].in_use;
  ++b.counters.admitted;
  const LeaseId lease = next_id_++;
  leases_.insert(lease, LeaseRecord{.bulkhead = id, .group = group, .granted_at = now});
  return lease;
}

// Hands free slots out one at a time, each to the highest-priority bulkhead that may use it, so
// a lower class never takes a slot a higher class was waiting for.
void BulkheadAdmission::dispatch(TimePoint now, std::vector<HandOff>& out) {
  if (breaker_.tripped()) return;
  while (in_use_ < policy_.capacity) {
    bool granted = false;
    for (BulkheadId id : by_priority_) {
      Bulkhead& b = bulkheads_[id];
      if (b.waiters.empty() || !bulkhead_may_take(b)) continue;
      const std::optional<std::size_t> index = pick_waiter(b);
      if (!index) continue;
      const Waiter w = b.waiters[*index];
      remove_waiter(b, *index);
      const LeaseId lease = grant(id, w.group, now);
      ++b.counters.handed_off;
      out.push_back(HandOff{.ticket = w.ticket, .lease = lease, .bulkhead = id, .group = w.group});
      granted = true;
      break;
    }
    if (!granted) return;
  }
}

void BulkheadAdmission::remove_waiter(Bulkhead& b, std::size_t index) {
  tickets_.erase(b.waiters[index].ticket);
  b.waiters.erase(b.waiters.begin() + static_cast<std::ptrdiff_t>(index));
}

// ---- acquire, release, cancel, expire ----------------------------------------------------------

AcquireResult BulkheadAdmission::try_acquire(BulkheadId id, GroupId group, TimePoint now) {
  Bulkhead& b = bulkheads_.at(id);
  if (group != kNoGroup) (void)groups_.at(group);
  observe_queues(now);
  std::optional<AcquireResult> result;
  const bool grantable = bulkhead_may_take(b) && group_has_room(group);
  switch (breaker_.state(now)) {
    case BreakerState::Open:
      result = refuse(id, RefusalReason::ServerDown, now, breaker_.retry_after(now));
      break;
    case BreakerState::HalfOpen:
      // One probe at a time; nobody queues behind a server that may still be down.
      if (breaker_.probe_in_flight(now) || !grantable) {
        result = refuse(id, RefusalReason::ServerDown, now, breaker_.retry_after(now));
      }
      break;
    case BreakerState::Closed:
      if (!grantable) result = queue_or_refuse(id, group, now);
      break;
  }
  if (!result) {  // grantable: the slot is ours if the rate limit allows
    if (!b.new_transactions.try_take(now)) {
      result = refuse(id, RefusalReason::RateLimit, now, b.new_transactions.time_to_next(now));
    } else {
      const LeaseId lease = grant(id, group, now);
      bool probe = false;
      if (breaker_.tripped()) {  // half-open with no probe in flight: this is the probe
        probe_id_ = breaker_.start_probe(now).value_or(0);
        probe_ = lease;
        probe = true;
      }
      result = Granted{.lease = lease, .probe = probe};
    }
  }
  settle_ceilings();
  observe_queues(now);
  return *result;
}

std::optional<LeaseId> BulkheadAdmission::try_grant(BulkheadId id, GroupId group, TimePoint now) {
  Bulkhead& b = bulkheads_.at(id);
  if (group != kNoGroup) (void)groups_.at(group);
  // Exactly try_acquire()'s Granted case with a closed breaker (no probe), checked before any
  // change is made.
  if (breaker_.tripped() || !bulkhead_may_take(b) || !group_has_room(group)) return std::nullopt;
  if (!b.new_transactions.try_take(now)) return std::nullopt;  // a failed take changes nothing
  observe_queues(now);
  const LeaseId lease = grant(id, group, now);
  settle_ceilings();
  observe_queues(now);
  return lease;
}

std::optional<AcquireResult> BulkheadAdmission::queue_or_refuse(BulkheadId id, GroupId group,
                                                                TimePoint now) {
  Bulkhead& b = bulkheads_[id];
  const BulkheadPolicy& p = b.policy;
  if (b.waiters.size() >= p.queue_depth) {
    return refuse(id, RefusalReason::QueueFull, now, drain_estimate(b));
  }
  if (!b.waiters.empty() && now - b.waiters.front().since >= p.max_wait) {
    return refuse(id, RefusalReason::QueueAge, now, drain_estimate(b));
  }
  // Under LIFO a newcomer is served before everyone already waiting: nobody is ahead of it.
  if (b.mean_hold_ns && !b.delay.lifo()) {
    const double predicted_ns =
        static_cast<double>(b.waiters.size()) * *b.mean_hold_ns / usable_slots(b);
    if (predicted_ns > static_cast<double>(nanoseconds(p.max_wait).count())) {
      return refuse(id, RefusalReason::PredictedWait, now, drain_estimate(b));
    }
  }
  if (!b.new_transactions.try_take(now)) {
    return refuse(id, RefusalReason::RateLimit, now, b.new_transactions.time_to_next(now));
  }
  const TicketId ticket = next_id_++;
  const TimePoint deadline = now + p.max_wait;
  b.waiters.push_back(Waiter{.ticket = ticket, .group = group, .since = now, .deadline = deadline});
  tickets_.insert(ticket, id);
  ++b.counters.queued;
  return Queued{.ticket = ticket, .deadline = deadline};
}

std::vector<HandOff> BulkheadAdmission::release(LeaseId lease, TimePoint now,
                                                LeaseOutcome outcome) {
  const LeaseRecord* found = leases_.find(lease);
  if (found == nullptr) return {};  // double release is harmless
  observe_queues(now);
  const LeaseRecord rec = *found;
  leases_.erase(lease);
  Bulkhead& b = bulkheads_[rec.bulkhead];
  --b.in_use;
  --in_use_;
  if (rec.group != kNoGroup) --groups_[rec.group].in_use;

  if (outcome == LeaseOutcome::Completed || outcome == LeaseOutcome::TimedOut) {
    const auto held = static_cast<double>(nanoseconds(now - rec.granted_at).count());
    const double w = policy_.hold_time_weight;
    b.mean_hold_ns = b.mean_hold_ns ? *b.mean_hold_ns + w * (held - *b.mean_hold_ns) : held;
  }
  if (outcome == LeaseOutcome::TimedOut) ++b.counters.timeouts;
  if (probe_ == lease) {
    probe_.reset();
    // A probe that ran on an already open connection proves the server as well as a connect.
    // Any other end leaves no verdict: the next probe is due at once (if this one is still the
    // breaker's probe in flight).
    if (outcome == LeaseOutcome::Completed && breaker_.state(now) == BreakerState::HalfOpen) {
      breaker_.record_success();
    } else {
      breaker_.end_probe(probe_id_, now);
    }
  }

  std::vector<HandOff> out;
  dispatch(now, out);
  settle_ceilings();
  observe_queues(now);
  return out;
}

std::optional<LeaseRefusal> BulkheadAdmission::refuse_lease(LeaseId lease, RefusalReason reason,
                                                            TimePoint now) {
  const LeaseRecord* found = leases_.find(lease);
  if (found == nullptr) return std::nullopt;
  const BulkheadId id = found->bulkhead;
  // Counted with the queue as it is before the slot is handed on.
  Refused refused = refuse(id, reason, now, drain_estimate(bulkheads_[id]));
  return LeaseRefusal{.refusal = refused, .handed_off = release(lease, now, LeaseOutcome::Ignored)};
}

bool BulkheadAdmission::cancel(TicketId ticket, TimePoint now) {
  const BulkheadId* queue = tickets_.find(ticket);
  if (queue == nullptr) return false;
  observe_queues(now);
  Bulkhead& b = bulkheads_[*queue];
  auto w = std::find_if(b.waiters.begin(), b.waiters.end(),
                        [&](const Waiter& x) { return x.ticket == ticket; });
  remove_waiter(b, static_cast<std::size_t>(w - b.waiters.begin()));
  ++b.counters.cancelled;
  // Leaving frees no slot, so nobody else becomes grantable.
  settle_ceilings();
  observe_queues(now);
  return true;
}

std::optional<Rejection> BulkheadAdmission::expire_ticket(TicketId ticket, TimePoint now) {
  const BulkheadId* queue = tickets_.find(ticket);
  if (queue == nullptr) return std::nullopt;
  const BulkheadId id = *queue;
  observe_queues(now);
  Bulkhead& b = bulkheads_[id];
  auto w = std::find_if(b.waiters.begin(), b.waiters.end(),
                        [&](const Waiter& x) { return x.ticket == ticket; });
  Rejection out{.ticket = ticket,
                .refusal = refuse(id, RefusalReason::MaxWait, now, drain_estimate(b))};
  ++b.counters.expired;
  remove_waiter(b, static_cast<std::size_t>(w - b.waiters.begin()));
  settle_ceilings();
  observe_queues(now);
  return out;
}

std::vector<Rejection> BulkheadAdmission::expire(TimePoint now) {
  observe_queues(now);
  std::vector<Rejection> out;
  for (BulkheadId id : by_priority_) {
    Bulkhead& b = bulkheads_[id];
    for (std::size_t i = 0; i < b.waiters.size();) {
      if (b.waiters[i].deadline > now) {
        ++i;
        continue;
      }
      out.push_back(
          Rejection{.ticket = b.waiters[i].ticket,
                    .refusal = refuse(id, RefusalReason::MaxWait, now, drain_estimate(b))});
      ++b.counters.expired;
      remove_waiter(b, i);
    }
  }
  settle_ceilings();
  observe_queues(now);
  return out;
}

std::optional<TimePoint> BulkheadAdmission::next_deadline() const {
  std::optional<TimePoint> best;
  for (const Bulkhead& b : bulkheads_) {
    for (const Waiter& w : b.waiters) {
      if (!best || w.deadline < *best) best = w.deadline;
    }
  }
  return best;
}

// ---- refusals ----------------------------------------------------------------------------------

Refused BulkheadAdmission::refuse(BulkheadId id, RefusalReason reason, TimePoint now,
                                  nanoseconds retry_base) {
  Bulkhead& b = bulkheads_[id];
  ++b.counters.refused[index_of(reason)];
  const nanoseconds oldest = b.waiters.empty() ? nanoseconds{0} : now - b.waiters.front().since;
  return Refused{.reason = reason,
                 .retry_after = jittered(retry_base),
                 .waiters = static_cast<std::uint32_t>(b.waiters.size()),
                 .oldest_age = duration_cast<milliseconds>(oldest),
                 .bulkhead = id};
}

// How long until a newcomer would likely get a slot: everyone waiting plus itself, served at
// `usable_slots` per mean hold time. Before any measurement, max_wait (a full queue's lifetime).
nanoseconds BulkheadAdmission::drain_estimate(const Bulkhead& b) const {
  if (!b.mean_hold_ns) return b.policy.max_wait;
  const double ns = static_cast<double>(b.waiters.size() + 1) * *b.mean_hold_ns / usable_slots(b);
  return nanoseconds(static_cast<std::int64_t>(ns));
}

// base x (1 +- 0.2), uniformly in whole permille, floored to milliseconds, then clamped. Integer
// arithmetic on the mt19937_64 output, whose sequence the standard fixes: the same seed gives the
// same hints on every platform.
milliseconds BulkheadAdmission::jittered(nanoseconds base) {
  const auto span = static_cast<std::uint64_t>(2 * kJitterPermille + 1);
  const std::int64_t permille = 1000 - kJitterPermille + static_cast<std::int64_t>(rng_() % span);
  const auto base_us = std::chrono::duration_cast<std::chrono::microseconds>(base).count();
  const milliseconds hint{base_us * permille / 1'000'000};
  return std::clamp(hint, policy_.retry_after_min, policy_.retry_after_max);
}

std::vector<Rejection> BulkheadAdmission::refuse_all_waiters(RefusalReason reason, TimePoint now) {
  std::vector<Rejection> out;
  for (BulkheadId id : by_priority_) {
    Bulkhead& b = bulkheads_[id];
    while (!b.waiters.empty()) {
      out.push_back(Rejection{.ticket = b.waiters.front().ticket,
                              .refusal = refuse(id, reason, now, breaker_.retry_after(now))});
      remove_waiter(b, 0);
    }
  }
  return out;
}

// ---- server health -----------------------------------------------------------------------------

std::vector<Rejection> BulkheadAdmission::record_connect_failure(TimePoint now) {
  if (!breaker_.record_failure(now)) return {};
  observe_queues(now);
  probe_.reset();  // a probe lease still running is an ordinary lease now
  std::vector<Rejection> out = refuse_all_waiters(RefusalReason::ServerDown, now);
  settle_ceilings();
  observe_queues(now);
  return out;
}

void BulkheadAdmission::record_connect_success(TimePoint now) {
  observe_queues(now);
  if (breaker_.record_success()) probe_.reset();
}

std::optional<ProbeId> BulkheadAdmission::start_probe(TimePoint now) {
  std::optional<ProbeId> probe = breaker_.start_probe(now);
  if (probe) probe_.reset();  // an earlier probe lease ran out of time: an ordinary lease now
  return probe;
}

// ---- bookkeeping -------------------------------------------------------------------------------

void BulkheadAdmission::observe_queues(TimePoint now) {
  for (Bulkhead& b : bulkheads_) {
    std::optional<nanoseconds> oldest;
    if (!b.waiters.empty()) oldest = now - b.waiters.front().since;
    b.delay.observe(now, oldest);
  }
}

// Ceilings fall to the limits as work drains after a live shrink; they never rise here.
void BulkheadAdmission::settle_ceilings() {
  // Usually every ceiling is at its limit already, and then nothing here would change.
  if (!ceilings_raised_) return;
  for (Bulkhead& b : bulkheads_) {
    b.in_use_ceiling = std::min(b.in_use_ceiling, std::max(b.policy.max, b.in_use));
    b.waiters_ceiling =
        std::min(b.waiters_ceiling, std::max<std::size_t>(b.policy.queue_depth, b.waiters.size()));
  }
  for (Group& g : groups_)
    g.in_use_ceiling = std::min(g.in_use_ceiling, std::max(g.limit, g.in_use));
  capacity_ceiling_ = std::min(capacity_ceiling_, std::max(policy_.capacity, in_use_));
  borrowed_ceiling_ = std::min(borrowed_ceiling_, std::max(shared_slots(), borrowed_slots()));
  bool raised = capacity_ceiling_ > policy_.capacity || borrowed_ceiling_ > shared_slots();
  for (const Bulkhead& b : bulkheads_) {
    raised = raised || b.in_use_ceiling > b.policy.max || b.waiters_ceiling > b.policy.queue_depth;
  }
  for (const Group& g : groups_) raised = raised || g.in_use_ceiling > g.limit;
  ceilings_raised_ = raised;
}

BulkheadStats BulkheadAdmission::stats(BulkheadId id, TimePoint now) const {
  const Bulkhead& b = bulkheads_.at(id);
  BulkheadStats s = b.counters;
  s.name = b.policy.name;
  s.retired = b.retired;
  s.priority = b.policy.priority;
  s.reserved = b.policy.reserved;
  s.max = b.policy.max;
  s.queue_depth = b.policy.queue_depth;
  s.max_wait = b.policy.max_wait;
  s.statement_timeout = b.policy.statement_timeout;
  s.in_use = b.in_use;
  s.borrowed = b.in_use > b.policy.reserved ? b.in_use - b.policy.reserved : 0;
  s.waiters = static_cast<std::uint32_t>(b.waiters.size());
  s.clients = b.clients;
  if (!b.waiters.empty()) s.oldest_wait = now - b.waiters.front().since;
  if (b.mean_hold_ns) {
    s.mean_hold = std::chrono::duration<double, std::milli>(*b.mean_hold_ns / 1e6);
  }
  s.lifo = b.delay.lifo();
  return s;
}

ServerStats BulkheadAdmission::server_stats(TimePoint now) const {
  std::uint32_t waiters = 0;
  for (const Bulkhead& b : bulkheads_) waiters += static_cast<std::uint32_t>(b.waiters.size());
  return ServerStats{.capacity = policy_.capacity,
                     .in_use = in_use_,
                     .shared = shared_slots(),
                     .borrowed = borrowed_slots(),
                     .waiters = waiters,
                     .breaker = breaker_.state(now),
                     .consecutive_connect_failures = breaker_.consecutive_failures(),
                     .probe = probe_};
}

}  // namespace sluice::pools
