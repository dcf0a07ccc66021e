// PoolManager, part 2: holding pools and reaping the idle ones (pools/pool_reaper.hpp decides).
//
// A Pool is referenced by the sessions that hold it (pool_for() .. leave_pool()) and, while one
// of its backends connects, by the connecting coroutine; both keep it off the reaper's list, so
// removing it under mu_ can leave no dangling reference. Its BackendBook pool and admission group
// are removed with it (their ids are reused by the next pool) and its traffic is added to
// reaped_traffic_, so the process totals (/metrics counters) never go backwards.
#include "pools/pool_reaper.hpp"

#include "src/log.hpp"
#include "src/pool_manager.hpp"
#include "src/server_state.hpp"

#include <memory>
#include <vector>

namespace sluice {

using pools::Clock;

namespace {

void add_traffic(TrafficCounters& to, const Pool::Traffic& from) {
  const auto load = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  to.transactions += load(from.transactions);
  to.queries += load(from.queries);
  to.bytes_in += load(from.bytes_in);
  to.bytes_out += load(from.bytes_out);
  to.transaction_ns += load(from.transaction_ns);
  to.query_ns += load(from.query_ns);
  to.wait_ns += load(from.wait_ns);
}

}  // namespace

void PoolManager::leave_pool(Pool& pool) {
  std::lock_guard lock(mu_);
  if (pool.holders > 0) --pool.holders;
  pool.last_used = Clock::now();
}

std::size_t PoolManager::reap_idle_pools(pools::Duration idle_timeout) {
  std::vector<std::unique_ptr<Pool>> reaped;  // destroyed after the lock is released
  {
    std::lock_guard lock(mu_);
    if (closed_ || idle_timeout.count() <= 0) return 0;
    const auto now = Clock::now();
    for (auto it = pools_.begin(); it != pools_.end();) {
      Pool& p = *it->second;
      ServerState& s = *p.server;
      const pools::PoolUse use{.clients = p.holders,
                               .backends = s.book.counts(p.book_id),
                               .configured = !p.db.user.empty(),
                               .last_used = p.last_used};
      // The admission group goes first: it refuses while a slot of it is held or waited for.
      if (!pools::reap_pool_now(use, now, idle_timeout) || !s.admission.remove_group(p.group)) {
        ++it;
        continue;
      }
      s.book.remove_pool(p.book_id);  // it has no backend: reap_pool_now() checked
      add_traffic(reaped_traffic_, p.traffic);
      reaped.push_back(std::move(it->second));
      it = pools_.erase(it);
    }
  }
  if (!reaped.empty()) {
    log::pool().debug("pools_reaped count={} idle_timeout_ms={}", reaped.size(),
                      idle_timeout.count());
  }
  return reaped.size();
}

}  // namespace sluice
