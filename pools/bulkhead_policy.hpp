// Policy: the numbers that govern one server's admission (capacity, bulkheads, breaker).
//
// src/ maps config::Config onto a Policy per server; BulkheadAdmission validates and normalises
// it (normalize_policy) at construction and on every live change. Durations are milliseconds,
// rates are events per second. Plain data; any thread may build one.
#pragma once

#include "base/result.hpp"
#include "pools/circuit_breaker.hpp"
#include "pools/token_bucket.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace sluice::pools {

inline constexpr const char* kDefaultBulkhead = "default";
inline constexpr std::uint32_t kDefaultQueueDepth = 128;
inline constexpr std::chrono::milliseconds kDefaultMaxWait{5000};

// One priority class of work on a server.
struct BulkheadPolicy {
  std::string name;
  std::uint32_t priority = 0;  // lower is served first when a slot frees
  std::uint32_t reserved = 0;  // slots no other bulkhead may take
  std::uint32_t max = 0;       // slots held at most: reserved plus borrowed spare capacity
  std::uint32_t queue_depth = kDefaultQueueDepth;         // waiters at most; 0 = never queue
  std::chrono::milliseconds max_wait = kDefaultMaxWait;   // a waiter older than this is refused
  std::chrono::milliseconds statement_timeout{0};         // carried for src/; 0 = none
  std::chrono::milliseconds idle_transaction_timeout{0};  // carried for src/; 0 = none
  std::uint32_t max_clients = 0;                          // client connections; 0 = unlimited
  RateLimit new_connections;                              // off by default
  RateLimit new_transactions;                             // off by default
  bool adaptive_lifo = true;
  std::chrono::milliseconds lifo_target{0};  // standing queue delay that means congestion;
                                             // 0 = max_wait / 5
};

struct Policy {
  std::uint32_t capacity = 0;  // the server's max_connections: slots in total
  std::vector<BulkheadPolicy> bulkheads;
  BreakerPolicy breaker;
  std::chrono::milliseconds lifo_interval{100};  // how long congestion must last (CoDel interval)
  double hold_time_weight = 0.2;                 // EWMA weight of the newest lease duration
  std::chrono::milliseconds retry_after_min{10};
  std::chrono::milliseconds retry_after_max{60000};
};

// Each error names the field as a dotted path ("bulkheads.batch.max: ...").
using PolicyErrors = std::vector<std::string>;

// Checks `policy` and fills in what is implied: the "default" bulkhead when absent (reserved 0,
// max = capacity, priority after every configured one, default queue bounds) and each
// lifo_target left at 0 (max_wait / 5). Every error found is returned, not just the first.
Result<Policy, PolicyErrors> normalize_policy(Policy policy);

}  // namespace sluice::pools
