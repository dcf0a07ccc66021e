// Snapshot: one consistent reading of pool, bulkhead, client and process state.
//
// The admin console (SHOW ...), the Prometheus metrics (/metrics) and the dashboard's JSON
// (/status) all render the same Snapshot, so they always agree. Runtime::snapshot() builds one
// (taking the PoolManager lock once for pools, servers and bulkheads); it is plain data, safe to
// hand to any thread.
#pragma once

#include "config/config.hpp"
#include "pools/backend_book.hpp"
#include "pools/bulkhead_admission.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

// Cumulative traffic counters (since start). Times are nanoseconds.
struct TrafficCounters {
  std::uint64_t transactions = 0;  // transactions (tx mode: backend attachments; session: RFQs)
  std::uint64_t queries = 0;       // Query messages and Syncs answered by ReadyForQuery
  std::uint64_t bytes_in = 0;      // client -> Sluice
  std::uint64_t bytes_out = 0;     // Sluice -> client
  std::uint64_t transaction_ns = 0;
  std::uint64_t query_ns = 0;
  std::uint64_t wait_ns = 0;  // time spent queued for a slot
};

struct BulkheadSnapshot {
  std::string server;
  pools::BulkheadStats stats;  // stats.name is the bulkhead's name
};

struct ServerSnapshot {
  std::string name;
  std::string host;
  std::uint16_t port = 0;
  pools::ServerStats admission;  // capacity, slots in use, breaker
  pools::PoolCounts backends;    // backend connections by state, summed over its pools
  std::uint64_t connect_attempts = 0;
  std::uint64_t connect_failures = 0;
};

struct PoolSnapshot {
  std::string database;
  std::string user;
  std::string server;
  std::string pool_mode;  // "session" | "transaction"
  std::uint32_t pool_size = 0;
  pools::PoolCounts backends;
  std::uint32_t slots_in_use = 0;
  bool paused = false;
  TrafficCounters traffic;
};

enum class ClientState { Login, Idle, Waiting, Active };
inline constexpr std::size_t kClientStateCount = 4;
inline const char* to_string(ClientState s) {
  switch (s) {
    case ClientState::Login:
      return "login";
    case ClientState::Idle:
      return "idle";
    case ClientState::Waiting:
      return "waiting";
    case ClientState::Active:
      return "active";
  }
  return "?";
}

struct ClientSnapshot {
  std::uint32_t id = 0;  // the BackendKeyData pid Sluice issued; KILL_CLIENT takes it
  std::string peer;      // "127.0.0.1:53422"
  std::string user;
  std::string database;
  std::string application_name;
  std::string server;
  std::string bulkhead;
  ClientState state = ClientState::Login;
  std::chrono::system_clock::time_point connected_at{};
  std::optional<std::chrono::nanoseconds> waiting_for;  // queued for a slot this long
  std::uint32_t backend_pid = 0;                        // 0 when no backend is attached
};

struct ProcessSnapshot {
  std::array<std::uint32_t, kClientStateCount> clients_by_state{};  // by ClientState
  std::uint64_t clients_accepted = 0;
  std::uint64_t protocol_errors = 0;
  TrafficCounters traffic;  // summed over pools, those reaped since start included
};

struct Snapshot {
  std::chrono::system_clock::time_point taken{};
  std::chrono::steady_clock::time_point taken_steady{};
  std::shared_ptr<const config::Config> config;
  std::vector<ServerSnapshot> servers;      // by name
  std::vector<BulkheadSnapshot> bulkheads;  // by server, then priority order
  std::vector<PoolSnapshot> pools;          // by database, user
  std::vector<ClientSnapshot> clients;      // only when asked for (SHOW CLIENTS)
  ProcessSnapshot process;
};

}  // namespace sluice
