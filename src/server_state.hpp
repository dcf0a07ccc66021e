// ServerState: the PoolManager's state of one PostgreSQL server, shared by the files that make up
// the PoolManager (src/pool_manager.cpp, src/pool_reaper.cpp) and by nobody else.
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

  config::Server cfg;
  pools::BulkheadAdmission admission;
  pools::BackendBook book;
  // Idle backends in check-in order; a vector, so that a check-in allocates nothing (C7).
  std::vector<std::shared_ptr<Backend>> idle;
  std::unordered_map<pools::TicketId, std::shared_ptr<PoolManager::Waiter>> waiters;
  std::string down_reason;  // the last connect failure, for server_down refusals
  std::uint64_t connect_attempts = 0;
  std::uint64_t connect_failures = 0;
  ServerSeries* series = nullptr;  // metrics (connect durations)
};

}  // namespace sluice
