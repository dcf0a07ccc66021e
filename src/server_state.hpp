// ServerState: the PoolManager's state of one PostgreSQL server, shared by the files that make up
// the PoolManager (src/pool_manager.cpp, src/backend_checkout.cpp, src/pool_reaper.cpp) and by
// nobody else.
//
// Everything here is guarded by PoolManager::mu_ except `cfg.name`, `cfg.host` and `cfg.port`
// (fixed for the process's life) and `series` (set once before any connect).
#pragma once

#include "config/config.hpp"
#include "pools/backend_book.hpp"
#include "pools/bulkhead_admission.hpp"
#include "src/backend.hpp"
#include "src/metrics.hpp"
#include "src/pool_manager.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {

// A session holding a slot that found no idle backend and no room to open one (BackendBook's
// Busy): it sleeps on `timer` until its max_wait deadline, unless an event that may make room
// (a backend checked in, idle or removed, a connect ended, a limit raised, shutdown) wakes it
// first: under PoolManager::mu_, `woken` is set and a cancel of the timer posted to `executor`.
// One per wait (a stale cancel then hits no later wait).
struct BackendWait {
  explicit BackendWait(const asio::any_io_executor& ex) : executor(ex), timer(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer timer;  // touched only on `executor`
  bool woken = false;        // guarded by PoolManager::mu_
};

struct ServerState {
  // `capacity`: the server's backend slots (config::Config::backend_capacity).
  ServerState(const config::Server& c, std::uint32_t capacity, pools::BulkheadAdmission a)
      : cfg(c), admission(std::move(a)), book(capacity) {
    book.set_max_connecting(c.max_connect_attempts);
  }
  // Removes and returns the idle backend `id` (null if it is not there).
  std::shared_ptr<Backend> take_idle(pools::BackendId id) {
    for (auto it = idle.end(); it != idle.begin();) {  // the most recently used is last
      --it;
      if ((*it)->id == id) {
        std::shared_ptr<Backend> b = std::move(*it);
        idle.erase(it);
        return b;
      }
    }
    return nullptr;
  }

  // Called with PoolManager::mu_ held whenever the book may have room again: every session in
  // `backend_waits` picks again (they are few: each holds one of the server's slots).
  void wake_backend_waits() {
    if (backend_waits.empty()) return;  // the common case: one test
    for (std::shared_ptr<BackendWait>& w : backend_waits) {
      w->woken = true;
      asio::post(w->executor, [w] { w->timer.cancel(); });
    }
    backend_waits.clear();
  }

  config::Server cfg;
  pools::BulkheadAdmission admission;
  pools::BackendBook book;
  // Idle backends in check-in order; a vector, so that a check-in allocates nothing (C7).
  std::vector<std::shared_ptr<Backend>> idle;
  std::unordered_map<pools::TicketId, std::shared_ptr<PoolManager::Waiter>> waiters;
  std::vector<std::shared_ptr<BackendWait>> backend_waits;  // slot holders waiting for a backend
  std::string down_reason;  // the last connect failure, for server_down refusals
  std::uint64_t connect_attempts = 0;
  std::uint64_t connect_failures = 0;
  ServerSeries* series = nullptr;  // metrics (connect durations)
};

// The tag of `ex`'s event loop, for BackendBook's preference for backends of the caller's loop.
std::uint64_t loop_tag(const asio::any_io_executor& ex);
// The ErrorResponse fields for a refusal (docs/ADMISSION.md, "Refusal is an API").
AdmissionRefusal describe_refusal(const ServerState& s, const pools::Refused& r);

}  // namespace sluice
