// Admission: who may use one of a server's backend slots now, who waits, and who is refused.
//
// One Admission object per server (capacity domain). A *slot* is the right to use one backend
// connection of that server. Slots are granted to *groups* (a pool of one database and user, or
// later a priority bulkhead); each group has its own limit and the server has a total capacity.
// A request that cannot be granted at once waits in a FIFO queue with a deadline; a freed slot is
// handed straight to the first waiter that may use it (no thundering herd).
//
// Pure and single-threaded: no clock (every call takes `now`), no I/O, no locks. The owner in
// src/ serialises calls and maps tickets to waiting sessions. Ids are opaque and never reused.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice::pools {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using GroupId = std::uint32_t;
using LeaseId = std::uint64_t;
using TicketId = std::uint64_t;

enum class RefuseReason { QueueFull, Closed };
const char* to_string(RefuseReason r);

struct Decision {
  enum class Kind { Granted, Queued, Refused };
  Kind kind = Kind::Refused;
  LeaseId lease = 0;                           // Granted
  TicketId ticket = 0;                         // Queued
  RefuseReason reason = RefuseReason::Closed;  // Refused
};

// A waiter that has just been granted a slot: wake `ticket`'s owner, who now holds `lease`.
struct Grant {
  TicketId ticket = 0;
  LeaseId lease = 0;
  GroupId group = 0;
};

struct GroupStats {
  std::uint32_t limit = 0;
  std::uint32_t in_use = 0;
  std::uint32_t waiting = 0;
  std::uint64_t granted_total = 0;  // immediate grants plus hand-offs
  std::uint64_t expired_total = 0;
  std::uint64_t refused_total = 0;
  std::optional<TimePoint> oldest_wait_since;
};

class Admission {
 public:
  // `capacity`: slots of the server; `max_waiters`: queue bound across all groups.
  Admission(std::uint32_t capacity, std::uint32_t max_waiters);

  GroupId add_group(std::uint32_t limit);
  void set_group_limit(GroupId group, std::uint32_t limit, TimePoint now,
                       std::vector<Grant>& granted);
  void set_capacity(std::uint32_t capacity, TimePoint now, std::vector<Grant>& granted);

  // Grants a slot at once, queues until `deadline`, or refuses.
  Decision try_acquire(GroupId group, TimePoint now, TimePoint deadline);
  // Returns the slot; waiters it lets through are appended to `granted`.
  void release(LeaseId lease, TimePoint now, std::vector<Grant>& granted);
  // Removes a waiter (client gone). False if the ticket is not waiting (already granted/expired).
  bool cancel(TicketId ticket);
  // Removes every waiter whose deadline is <= now; appends their tickets to `expired`.
  void expire(TimePoint now, std::vector<TicketId>& expired);
  std::optional<TimePoint> next_deadline() const;
  // Stops admitting: every waiter is returned in `refused`, later requests are Refused(Closed).
  void close(std::vector<TicketId>& refused);

  GroupStats group_stats(GroupId group) const;
  std::uint32_t capacity() const { return capacity_; }
  std::uint32_t in_use() const { return in_use_; }
  std::size_t waiting() const { return queue_.size(); }
  // Recomputes every count from the containers; returns a description of the first mismatch.
  std::optional<std::string> check_invariants() const;

 private:
  struct Group {
    std::uint32_t limit = 0;
    std::uint32_t in_use = 0;
    std::uint32_t waiting = 0;
    std::uint64_t granted_total = 0;
    std::uint64_t expired_total = 0;
    std::uint64_t refused_total = 0;
  };
  struct Waiter {
    TicketId ticket = 0;
    GroupId group = 0;
    TimePoint since{};
    TimePoint deadline{};
  };

  bool may_grant(const Group& g) const { return in_use_ < capacity_ && g.in_use < g.limit; }
  LeaseId grant(GroupId group);
  void drain_queue(std::vector<Grant>& granted);

  std::uint32_t capacity_;
  std::uint32_t max_waiters_;
  std::uint32_t in_use_ = 0;
  bool closed_ = false;
  std::vector<Group> groups_;
  std::deque<Waiter> queue_;  // arrival order
  std::unordered_map<LeaseId, GroupId> leases_;
  std::uint64_t next_id_ = 1;
};

}  // namespace sluice::pools
