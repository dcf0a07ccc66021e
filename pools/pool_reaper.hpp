// The idle-pool reaper's decision: when a (database, user) pool is forgotten.
//
// Pools are made on demand, one per backend user a client logs in as. Under auth_type = "trust"
// (and with auth_query, for every role the server knows) a client chooses that name, so a client
// cycling through names would otherwise leave a pool behind for each one, forever. A pool that
// nobody holds and that has been unused for `pool_idle_timeout` is therefore removed (its
// BackendBook pool and admission group too, whose ids are reused), and made again, empty, by its
// next client. What is lost is what an empty pool remembers: its traffic counters (their totals
// are kept by the owner), the server's ParameterStatus values and learned SCRAM keys.
//
// Pure: time is a parameter. src/ (PoolManager, once a second, under its lock) fills PoolUse.
#pragma once

#include "pools/backend_book.hpp"
#include "pools/types.hpp"

#include <cstdint>

namespace sluice::pools {

// What holds a pool, read by its owner.
struct PoolUse {
  // Client sessions holding the pool: logged in, queued for a slot (a waiter is such a client)
  // or running a transaction.
  std::uint32_t clients = 0;
  // Its backend connections in every state: connecting (a min_pool_size warm-up too), idle,
  // active. An idle backend keeps its pool until server_idle_timeout closes it.
  PoolCounts backends;
  // Implied by the config rather than by a client: the one pool of a database with a fixed
  // `user`. Never reaped.
  bool configured = false;
  // When its last client left (when it was made, while no client has left it yet).
  TimePoint last_used{};
};

// True when the pool should be removed at `now`: not configured, no client, no backend, and
// unused for at least `idle_timeout` (exactly at it counts). An `idle_timeout` of 0 never reaps.
bool reap_pool_now(const PoolUse& use, TimePoint now, Duration idle_timeout);

}  // namespace sluice::pools
