#include "pools/admission.hpp"

#include <algorithm>

namespace sluice::pools {

const char* to_string(RefuseReason r) {
  switch (r) {
    case RefuseReason::QueueFull:
      return "queue_full";
    case RefuseReason::Closed:
      return "closed";
  }
  return "unknown";
}

Admission::Admission(std::uint32_t capacity, std::uint32_t max_waiters)
    : capacity_(capacity), max_waiters_(max_waiters) {}

GroupId Admission::add_group(std::uint32_t limit) {
  groups_.push_back(Group{.limit = limit});
  return static_cast<GroupId>(groups_.size() - 1);
}

void Admission::set_group_limit(GroupId group, std::uint32_t limit, TimePoint /*now*/,
                                std::vector<Grant>& granted) {
  groups_.at(group).limit = limit;
  drain_queue(granted);
}

void Admission::set_capacity(std::uint32_t capacity, TimePoint /*now*/,
                             std::vector<Grant>& granted) {
  capacity_ = capacity;
  drain_queue(granted);
}

LeaseId Admission::grant(GroupId group) {
  Group& g = groups_[group];
  ++g.in_use;
  ++g.granted_total;
  ++in_use_;
  LeaseId id = next_id_++;
  leases_.emplace(id, group);
  return id;
}

Decision Admission::try_acquire(GroupId group, TimePoint now, TimePoint deadline) {
  Group& g = groups_.at(group);
  if (closed_) {
    ++g.refused_total;
    return Decision{.kind = Decision::Kind::Refused, .reason = RefuseReason::Closed};
  }
  // Queue order is respected: a newcomer may not overtake a waiter of its own group.
  if (g.waiting == 0 && may_grant(g)) {
    return Decision{.kind = Decision::Kind::Granted, .lease = grant(group)};
  }
  if (queue_.size() >= max_waiters_) {
    ++g.refused_total;
    return Decision{.kind = Decision::Kind::Refused, .reason = RefuseReason::QueueFull};
  }
  TicketId t = next_id_++;
  queue_.push_back(Waiter{.ticket = t, .group = group, .since = now, .deadline = deadline});
  ++g.waiting;
  return Decision{.kind = Decision::Kind::Queued, .ticket = t};
}

void Admission::drain_queue(std::vector<Grant>& granted) {
  // Hand freed slots to waiters in arrival order, skipping waiters whose group is at its limit.
  for (auto it = queue_.begin(); it != queue_.end() && in_use_ < capacity_;) {
    Group& g = groups_[it->group];
    if (g.in_use < g.limit) {
      --g.waiting;
      granted.push_back(Grant{.ticket = it->ticket, .lease = grant(it->group), .group = it->group});
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

void Admission::release(LeaseId lease, TimePoint /*now*/, std::vector<Grant>& granted) {
  auto it = leases_.find(lease);
  if (it == leases_.end()) return;  // double release is harmless
  --groups_[it->second].in_use;
  --in_use_;
  leases_.erase(it);
  if (!closed_) drain_queue(granted);
}

bool Admission::cancel(TicketId ticket) {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const Waiter& w) { return w.ticket == ticket; });
  if (it == queue_.end()) return false;
  --groups_[it->group].waiting;
  queue_.erase(it);
  return true;
}

void Admission::expire(TimePoint now, std::vector<TicketId>& expired) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->deadline <= now) {
      Group& g = groups_[it->group];
      --g.waiting;
      ++g.expired_total;
      expired.push_back(it->ticket);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<TimePoint> Admission::next_deadline() const {
  std::optional<TimePoint> best;
  for (const Waiter& w : queue_) {
    if (!best || w.deadline < *best) best = w.deadline;
  }
  return best;
}

void Admission::close(std::vector<TicketId>& refused) {
  closed_ = true;
  for (const Waiter& w : queue_) {
    --groups_[w.group].waiting;
    ++groups_[w.group].refused_total;
    refused.push_back(w.ticket);
  }
  queue_.clear();
}

GroupStats Admission::group_stats(GroupId group) const {
  const Group& g = groups_.at(group);
  GroupStats s{.limit = g.limit,
               .in_use = g.in_use,
               .waiting = g.waiting,
               .granted_total = g.granted_total,
               .expired_total = g.expired_total,
               .refused_total = g.refused_total};
  for (const Waiter& w : queue_) {
    if (w.group == group) {
      s.oldest_wait_since = w.since;
      break;
    }
  }
  return s;
}

std::optional<std::string> Admission::check_invariants() const {
  std::vector<std::uint32_t> in_use(groups_.size(), 0);
  std::vector<std::uint32_t> waiting(groups_.size(), 0);
  for (const auto& [lease, group] : leases_) ++in_use.at(group);
  for (const Waiter& w : queue_) ++waiting.at(w.group);
  std::uint32_t total = 0;
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    if (in_use[i] != groups_[i].in_use) return "group " + std::to_string(i) + " in_use mismatch";
    if (waiting[i] != groups_[i].waiting) return "group " + std::to_string(i) + " waiting mismatch";
    total += in_use[i];
  }
  if (total != in_use_) return "server in_use mismatch";
  if (leases_.size() != in_use_) return "lease count mismatch";
  if (queue_.size() > max_waiters_ && !closed_) return "queue over its bound";
  return std::nullopt;
}

}  // namespace sluice::pools
