// PoolManager, part 3: the circuit breakers' background prober (issue 13, item 2).
//
// A tripped breaker (pools/circuit_breaker.hpp) says when its next probe is due; a client that
// arrives then becomes the probe, but recovery must not wait for one. Runtime's prober loop calls
// probe_servers() at the times it returns; each due probe is a connect without a client, made as
// a warm-up is (PoolManager::warm_up, on thread 0's loop), with the credentials of one of the
// server's pools. Its verdict is the connect's: a success closes the breaker and leaves an idle
// backend for the next client; a failure with server trouble reopens it; anything else (a login
// error that says nothing about the server) ends the probe without a verdict, so the next is due
// at once. A probe that hangs is bounded by the breaker, not by the connect: once its delay has
// passed, the next probe is due whatever this one does.
#include "src/log.hpp"
#include "src/pool_manager.hpp"
#include "src/server_state.hpp"
#include "src/task_failure.hpp"

#include <algorithm>
#include <tuple>
#include <vector>

namespace sluice {

using pools::Clock;

namespace {

bool can_log_in(const BackendCredentials& creds) {
  return creds.password || creds.md5_secret || (creds.scram_client_key && creds.scram_server_key);
}

}  // namespace

Clock::time_point PoolManager::probe_servers(const asio::any_io_executor& ex,
                                             std::uint32_t max_message_size) {
  struct Start {
    Pool* pool;
    pools::BackendId backend;
    pools::ProbeId probe;
  };
  std::vector<Start> starts;
  const auto now = Clock::now();
  auto wake = now + std::chrono::seconds(1);
  {
    std::lock_guard lock(mu_);
    if (closed_) return wake;
    for (auto& entry : servers_) {
      ServerState* s = entry.second.get();
      const std::optional<Clock::time_point> due = s->admission.next_probe_at(now);
      if (!due) continue;  // closed
      if (*due <= now) {
        // Any pool of the server whose login we can make; the first one found.
        auto it = std::find_if(pools_.begin(), pools_.end(), [s](const auto& p) {
          return p.second->server == s && can_log_in(p.second->creds);
        });
        Pool* pool = it == pools_.end() ? nullptr : it->second.get();
        std::optional<pools::BackendId> id;
        if (pool != nullptr) id = s->book.reserve_connect(pool->book_id, now);
        if (id) {
          if (auto probe = s->admission.start_probe(now)) {
            ++s->connect_attempts;
            starts.push_back(Start{.pool = pool, .backend = *id, .probe = *probe});
          } else {
            s->book.remove(*id);
          }
        }
      }
      // A due probe that could not start is tried again within the breaker's delay.
      const std::optional<Clock::time_point> next = s->admission.next_probe_at(now);
      wake = std::min(wake, next && *next > now ? *next : now + s->admission.breaker_delay());
    }
  }
  for (const Start& st : starts) {
    log::pool().info("breaker_probe server={} db={}", st.pool->server->cfg.name,
                     st.pool->db.dbname);
    asio::co_spawn(ex, warm_up(*st.pool, st.backend, max_message_size, st.probe),
                   on_task_exit(Task::BreakerProbe));
  }
  return wake;
}

}  // namespace sluice
