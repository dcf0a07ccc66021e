// BulkheadAdmission::check_invariants(): every count recomputed from the containers, the bounds
// (under the ceilings a live shrink leaves), and the hand-off rule. Kept apart from the decision
// code so that file stays about decisions.
#include "pools/bulkhead_admission.hpp"

#include <algorithm>
#include <unordered_set>

namespace sluice::pools {
namespace {

std::string where(const std::string& name) { return "bulkhead \"" + name + "\": "; }

}  // namespace

std::optional<std::string> BulkheadAdmission::check_invariants() const {
  if (auto e = check_counts()) return e;
  if (auto e = check_bounds()) return e;
  return check_hand_off_rule();
}

std::optional<std::string> BulkheadAdmission::check_counts() const {
  std::vector<std::uint32_t> in_use(bulkheads_.size(), 0);
  std::vector<std::uint32_t> group_in_use(groups_.size(), 0);
  std::optional<std::string> lease_error;
  leases_.for_each([&](LeaseId id, const LeaseRecord& lease) {
    if (lease_error) return;
    if (id == 0 || id >= next_id_) {
      lease_error = "lease id " + std::to_string(id) + " was never issued";
    } else if (lease.bulkhead >= bulkheads_.size()) {
      lease_error = "lease of an unknown bulkhead";
    } else if (lease.group != kNoGroup && lease.group >= groups_.size()) {
      lease_error = "lease of an unknown group";
    } else {
      ++in_use[lease.bulkhead];
      if (lease.group != kNoGroup) ++group_in_use[lease.group];
    }
  });
  if (lease_error) return lease_error;
  std::size_t total_in_use = 0;
  std::size_t total_waiters = 0;
  std::uint32_t reserved = 0;
  std::unordered_set<TicketId> seen;
  for (BulkheadId id = 0; id < bulkheads_.size(); ++id) {
    const Bulkhead& b = bulkheads_[id];
    const std::string at = where(b.policy.name);
    if (in_use[id] != b.in_use) return at + "in_use differs from its leases";
    total_in_use += in_use[id];
    reserved += b.policy.reserved;
    if (b.retired && b.policy.reserved != 0) return at + "retired but holds reserved slots";
    if (b.policy.reserved > b.policy.max || b.policy.max > policy_.capacity) {
      return at + "reserved <= max <= capacity does not hold";
    }
    if (b.retired == by_name_.contains(b.policy.name)) return at + "name index disagrees";
    for (std::size_t i = 0; i < b.waiters.size(); ++i) {
      const Waiter& w = b.waiters[i];
      const BulkheadId* t = tickets_.find(w.ticket);
      if (t == nullptr || *t != id) return at + "waiter missing from ticket index";
      if (!seen.insert(w.ticket).second) return at + "ticket queued twice";
      if (leases_.contains(w.ticket)) return at + "ticket id also used as a lease id";
      if (w.deadline <= w.since) return at + "waiter deadline not after its arrival";
      if (i > 0 && w.since < b.waiters[i - 1].since) return at + "queue not in arrival order";
      if (w.group != kNoGroup && (w.group >= groups_.size() || !groups_[w.group].live)) {
        return at + "waiter of unknown group";
      }
    }
    total_waiters += b.waiters.size();
  }
  if (total_in_use != in_use_ || leases_.size() != in_use_) return "server in_use mismatch";
  if (tickets_.size() != total_waiters) return "ticket index holds tickets nobody waits with";
  if (reserved != reserved_total_) return "reserved total mismatch";
  std::size_t removed_groups = 0;
  for (GroupId g = 0; g < groups_.size(); ++g) {
    if (group_in_use[g] != groups_[g].in_use) {
      return "group " + std::to_string(g) + " in_use differs from its leases";
    }
    removed_groups += groups_[g].live ? 0 : 1;
  }
  if (removed_groups != free_groups_.size()) return "removed groups differ from the free ids";
  if (by_priority_.size() != bulkheads_.size() ||
      !std::is_sorted(by_priority_.begin(), by_priority_.end(), [&](BulkheadId a, BulkheadId b) {
        return bulkheads_[a].policy.priority < bulkheads_[b].policy.priority;
      })) {
    return "priority order stale";
  }
  if (bulkheads_.at(default_id_).policy.name != kDefaultBulkhead) return "default bulkhead lost";
  if (probe_ && (!leases_.contains(*probe_) || !breaker_.tripped())) {
    return "probe lease without a half-open breaker";
  }
  return std::nullopt;
}

std::optional<std::string> BulkheadAdmission::check_bounds() const {
  for (BulkheadId id = 0; id < bulkheads_.size(); ++id) {
    const Bulkhead& b = bulkheads_[id];
    const std::string at = where(b.policy.name);
    if (b.in_use > b.in_use_ceiling) return at + "in_use above max";
    if (b.in_use_ceiling < b.policy.max) return at + "ceiling below max";
    if (b.waiters.size() > b.waiters_ceiling) return at + "queue above queue_depth";
    if (b.delay.lifo() && b.waiters.empty()) return at + "LIFO with an empty queue";
  }
  for (GroupId g = 0; g < groups_.size(); ++g) {
    if (groups_[g].in_use > groups_[g].in_use_ceiling) {
      return "group " + std::to_string(g) + " above its limit";
    }
  }
  if (in_use_ > capacity_ceiling_) return "server in_use above capacity";
  if (borrowed_slots() > borrowed_ceiling_) return "more slots borrowed than are shared";
  return std::nullopt;
}

std::optional<std::string> BulkheadAdmission::check_hand_off_rule() const {
  for (BulkheadId id = 0; id < bulkheads_.size(); ++id) {
    const Bulkhead& b = bulkheads_[id];
    if (b.waiters.empty()) continue;
    if (breaker_.tripped()) return where(b.policy.name) + "waiters behind a tripped breaker";
    if (bulkhead_may_take(b) && pick_waiter(b)) {
      return where(b.policy.name) + "a waiter could have a free slot";
    }
  }
  return std::nullopt;
}

}  // namespace sluice::pools
