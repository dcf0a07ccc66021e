// LookupPool: the few connections that run lookups on one server, the lookups in progress and the
// lookups waiting for a connection (issue 12, item 6: auth_query).
//
// A *lookup* asks one question, named by an opaque `key`; it needs a connection of one *group*
// (also opaque: the caller's connection parameters, since a connection made for one group cannot
// serve another). The pool decides:
//  - coalescing (single-flight): a lookup whose key is already being looked up joins that
//    *flight* and shares its answer; only the first one of a key runs anything;
//  - the connection bound: at most `max_connections` connections exist at once, of any groups.
//    A flight takes an idle connection of its group (the most recently used), else opens a new one
//    while there is room, else closes the least recently used idle connection of another group
//    and opens one in its place; when every connection is busy, it waits in a FIFO queue until
//    its deadline. It never opens a connection beyond the bound;
//  - hand-off: a connection given back goes straight to the head of the queue (closed first and
//    replaced by a new one when the head needs another group); a waiter past its deadline is
//    never granted (expire() and finish() report it as expired);
//  - idleness: reap() closes connections idle for `idle_timeout`, and idle ones beyond a lowered
//    `max_connections`.
//
// Pure and single-threaded: time is a parameter (steady_clock time points), no I/O, no locks; the
// owner in src/ serialises the calls, keeps the connection objects keyed by ConnId and maps
// flights to waiting coroutines. Ids start at 1 and are never reused. A FlightId or ConnId this
// object never issued (or already ended) is a caller bug: std::out_of_range.
#pragma once

#include "pools/types.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sluice::pools {

using FlightId = std::uint64_t;
using ConnId = std::uint64_t;

struct LookupPoolSettings {
  std::uint32_t max_connections = 2;              // connections at once, of all groups together
  std::chrono::milliseconds idle_timeout{60000};  // an idle connection is closed after this
};

// A flight that may run now, on connection `conn`: an idle one of its group, or (`fresh`) a
// new one the caller opens under that id. Connections in `close` (idle ones of another group,
// making room) must be closed first.
struct LookupGrant {
  FlightId flight = 0;
  ConnId conn = 0;
  bool fresh = false;
  std::vector<ConnId> close;
};

struct LookupStart {
  enum class Kind {
    Joined,   // `flight` of the same key is in progress: wait for its answer
    Granted,  // `grant` says how to run the new `flight`
    Queued,   // every connection is busy: the new `flight` waits (grant or expiry)
  };
  Kind kind = Kind::Queued;
  FlightId flight = 0;
  LookupGrant grant;  // Granted
};

// What finish() or set_settings() did: connections to close (the finished flight's own, or idle
// ones of another group making room; the grants' own `close` lists are empty), queued flights
// that now run, queued flights found past their deadline (removed; their waiters learn they
// expired).
struct LookupFinish {
  std::vector<ConnId> close;
  std::vector<LookupGrant> granted;
  std::vector<FlightId> expired;
};

struct LookupCounts {
  std::uint32_t idle = 0;
  std::uint32_t busy = 0;
  std::uint32_t waiting = 0;  // queued flights
  std::uint32_t flights = 0;  // running and queued
  std::uint32_t connections() const { return idle + busy; }
};

class LookupPool {
 public:
  explicit LookupPool(LookupPoolSettings settings = {}) : settings_(settings) {}

  // A lookup of `key` needing a connection of `group`, at `now`; a queued flight waits until
  // `deadline` at most.
  LookupStart start(const std::string& key, const std::string& group, TimePoint now,
                    TimePoint deadline);
  // The flight of `key` in progress (running or queued), if any.
  std::optional<FlightId> flight_of(const std::string& key) const;
  // A running flight is over; its connection goes back idle if `reusable` (and the pool is not
  // over its bound), else is closed. Queued flights, oldest first, get connections while there
  // are any to be had.
  LookupFinish finish(FlightId flight, TimePoint now, bool reusable);
  // Queued flights whose deadline is at or before `now`: removed and returned.
  std::vector<FlightId> expire(TimePoint now);
  // Idle connections past idle_timeout, or beyond max_connections: removed and returned.
  std::vector<ConnId> reap(TimePoint now);
  // New settings (a reload); a lower bound is reached as connections are given back or reaped.
  // Room made by a higher bound goes to the queue at once.
  LookupFinish set_settings(LookupPoolSettings settings, TimePoint now);

  bool running(FlightId flight) const;  // has a connection (false: queued, or unknown)
  LookupCounts counts() const;
  // nullopt when consistent, else what is wrong (tests call it after every step).
  std::optional<std::string> check_invariants() const;

 private:
  struct Conn {
    std::string group;
    bool busy = false;
    TimePoint last_used{};
  };
  struct Flight {
    std::string key;
    std::string group;
    TimePoint deadline{};
    std::optional<ConnId> conn;  // nullopt while queued
  };

  // A connection for `flight` (running it) if one can be had now.
  std::optional<LookupGrant> try_grant(FlightId id, Flight& flight, TimePoint now);
  // Grants connections to queued flights, oldest first, while possible; expired waiters are
  // removed on the way.
  void serve_queue(TimePoint now, LookupFinish& out);
  std::optional<ConnId> idle_of(const std::string& group, bool same) const;
  void end_flight(FlightId id);

  LookupPoolSettings settings_;
  std::unordered_map<ConnId, Conn> conns_;
  std::unordered_map<FlightId, Flight> flights_;
  std::unordered_map<std::string, FlightId> by_key_;
  std::deque<FlightId> queue_;  // queued flights, oldest first
  std::uint64_t next_id_ = 1;
};

}  // namespace sluice::pools
