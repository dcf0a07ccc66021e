// BackendBook: the bookkeeping of one server's physical backend connections.
//
// Each backend belongs to one pool (a database and user pair: a connection cannot change either)
// and is in exactly one state: Connecting, Idle or Active. The book decides which idle backend a
// slot holder gets (most recently used first, so the hot ones stay warm and the cold ones age out),
// when a new connection is needed, which idle backend of another pool to close to make room under
// the server's max_connections, and which idle backends are past their idle timeout or lifetime.
//
// Pure and single-threaded (time is passed in; no I/O). The owner in src/ serialises calls and
// keeps the connection objects keyed by BackendId.
#pragma once

#include "pools/id_map.hpp"
#include "pools/types.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::pools {

using BackendId = std::uint64_t;
using PoolId = std::uint32_t;
using Duration = std::chrono::milliseconds;

enum class BackendState { Connecting, Idle, Active };

struct PoolSettings {
  Duration lifetime{0};      // 0 = unlimited
  Duration idle_timeout{0};  // 0 = never close for idleness
  std::uint32_t min_size = 0;
};

struct PoolCounts {
  std::uint32_t connecting = 0;
  std::uint32_t idle = 0;
  std::uint32_t active = 0;
  std::uint32_t total() const { return connecting + idle + active; }
};

struct Pick {
  enum class Kind {
    Idle,     // `id` is an idle backend of the pool, now Active
    Connect,  // `id` is a new Connecting entry: open a connection for it
    Evict,    // as Connect, and `victim` (an idle backend of another pool) must be closed first
    Busy,     // no room right now (connections being opened fill the server); try again shortly
  };
  Kind kind = Kind::Busy;
  BackendId id = 0;
  BackendId victim = 0;
};

class BackendBook {
 public:
  explicit BackendBook(std::uint32_t max_connections) : max_(max_connections) {}

  // A new pool; the id of a removed pool is reused first, so the book holds at most as many
  // pools as were ever live at once.
  PoolId add_pool(PoolSettings settings);
  // Forgets a pool without backends in any state (an idle (database, user) pool src/ reaps:
  // pools/pool_reaper.hpp). False, and nothing changes, while it has one or once it is removed.
  bool remove_pool(PoolId pool);
  void set_pool_settings(PoolId pool, PoolSettings settings);
  void set_max_connections(std::uint32_t max) { max_ = max; }
  // Connections being opened at once at most (0 = no limit); beyond it pick() answers Busy.
  void set_max_connecting(std::uint32_t max) { max_connecting_ = max; }

  // `home` is an opaque tag of the caller's event loop: an idle backend opened by the same loop is
  // preferred (its I/O then never crosses threads), else the most recently used one. New
  // entries get the caller's home.
  Pick pick(PoolId pool, TimePoint now, std::uint64_t home = 0);
  // pick()'s Idle case alone: an idle backend of the pool (now Active) chosen as pick() would,
  // or nullopt and nothing changes.
  std::optional<BackendId> take_idle(PoolId pool, TimePoint now, std::uint64_t home = 0);
  // Opens a connection that will go idle (min_pool_size warm-up); nullopt when there is no room.
  std::optional<BackendId> reserve_warm(PoolId pool, TimePoint now);
  // Opens a connection that will go idle whatever the pool's minimum (a circuit breaker's
  // background probe), within max_connections and the connections being opened at once;
  // nullopt when there is no room.
  std::optional<BackendId> reserve_connect(PoolId pool, TimePoint now);
  // Connecting -> Active (`idle` false) or Idle (`idle` true, warm-up).
  void connected(BackendId id, TimePoint now, bool idle);
  // Active -> Idle if `reusable` and not past its lifetime: returns true. Otherwise the entry is
  // removed and false tells the caller to close the connection.
  bool release(BackendId id, TimePoint now, bool reusable);
  // Forgets a backend in any state (failed connect, closed, broken).
  void remove(BackendId id);
  // Idle backends past idle_timeout or lifetime are removed and appended to `to_close`.
  void reap(TimePoint now, std::vector<BackendId>& to_close);
  // How many warm-up connections pool `pool` needs to reach its min_size.
  std::uint32_t warm_deficit(PoolId pool) const;

  PoolCounts counts(PoolId pool) const;
  PoolCounts totals() const;
  std::optional<BackendState> state(BackendId id) const;
  std::size_t pool_count() const { return pools_.size() - free_pools_.size(); }  // live ones
  std::optional<std::string> check_invariants() const;

 private:
  struct Entry {
    PoolId pool = 0;
    std::uint64_t home = 0;  // event loop that opened it
    BackendState state = BackendState::Connecting;
    TimePoint created{};
    TimePoint last_used{};
  };
  struct Pool {
    PoolSettings settings;
    PoolCounts counts;
    std::vector<BackendId> idle;  // most recently used last
    bool live = true;             // false: removed, its id waiting in free_pools_
  };

  void set_state(BackendId id, Entry& e, BackendState to);
  static void erase_idle(Pool& p, BackendId id);
  Entry& entry(BackendId id);  // throws std::out_of_range for an unknown id (a caller bug)
  const Entry& entry(BackendId id) const;
  BackendId add_entry(PoolId pool, TimePoint now, std::uint64_t home = 0);
  bool past_lifetime(const Entry& e, const Pool& p, TimePoint now) const;
  std::optional<BackendId> oldest_idle_elsewhere(PoolId pool) const;

  std::uint32_t max_;
  std::uint32_t max_connecting_ = 0;
  std::vector<Pool> pools_;         // by PoolId; never shrinks
  std::vector<PoolId> free_pools_;  // removed pools' ids, reused by add_pool()
  IdMap<Entry> entries_;            // flat: no allocation per connection
  std::uint64_t next_id_ = 1;
};

}  // namespace sluice::pools
