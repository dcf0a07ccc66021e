#include "pools/bulkhead_policy.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>

namespace sluice::pools {
namespace {

using std::chrono::milliseconds;

std::string field(const BulkheadPolicy& b, const char* name) {
  return "bulkheads." + (b.name.empty() ? std::string("?") : b.name) + "." + name;
}

void check_rate(const BulkheadPolicy& b, const char* name, const RateLimit& r,
                PolicyErrors& errors) {
  if (!std::isfinite(r.per_second) || r.per_second < 0 || r.per_second > 1e9) {
    errors.push_back(field(b, name) + ": rate must be between 0 (off) and 1e9 per second");
  } else if (r.enabled() && r.burst < 1) {
    errors.push_back(field(b, name) + ": burst must be at least 1 when the rate is set");
  }
}

void check_bulkhead(const BulkheadPolicy& b, std::uint32_t capacity, PolicyErrors& errors) {
  if (b.max < 1) errors.push_back(field(b, "max") + ": must be at least 1");
  if (b.max > capacity) {
    errors.push_back(field(b, "max") + ": " + std::to_string(b.max) +
                     " exceeds the server capacity " + std::to_string(capacity));
  }
  if (b.reserved > b.max) {
    errors.push_back(field(b, "reserved") + ": " + std::to_string(b.reserved) + " exceeds max " +
                     std::to_string(b.max));
  }
  if (b.max_wait <= milliseconds{0}) errors.push_back(field(b, "max_wait") + ": must be > 0");
  if (b.statement_timeout < milliseconds{0}) {
    errors.push_back(field(b, "statement_timeout") + ": must be >= 0");
  }
  if (b.idle_transaction_timeout < milliseconds{0}) {
    errors.push_back(field(b, "idle_transaction_timeout") + ": must be >= 0");
  }
  if (b.lifo_target < milliseconds{0}) {
    errors.push_back(field(b, "lifo_target") + ": must be >= 0");
  }
  check_rate(b, "new_connections", b.new_connections, errors);
  check_rate(b, "new_transactions", b.new_transactions, errors);
}

void check_server(const Policy& p, PolicyErrors& errors) {
  if (p.capacity < 1) errors.push_back("capacity: must be at least 1");
  const BreakerPolicy& br = p.breaker;
  if (br.failure_threshold < 1) errors.push_back("breaker.failure_threshold: must be at least 1");
  if (br.open_delay <= milliseconds{0}) errors.push_back("breaker.open_delay: must be > 0");
  if (br.max_open_delay < br.open_delay) {
    errors.push_back("breaker.max_open_delay: must be >= open_delay");
  }
  if (br.backoff < 1) errors.push_back("breaker.backoff: must be at least 1");
  if (p.lifo_interval <= milliseconds{0}) errors.push_back("lifo_interval: must be > 0");
  if (!(p.hold_time_weight > 0 && p.hold_time_weight <= 1)) {
    errors.push_back("hold_time_weight: must be in (0, 1]");
  }
  if (p.retry_after_min < milliseconds{0} || p.retry_after_max < p.retry_after_min) {
    errors.push_back("retry_after_min/retry_after_max: need 0 <= min <= max");
  }
}

}  // namespace

Result<Policy, PolicyErrors> normalize_policy(Policy policy) {
  PolicyErrors errors;
  check_server(policy, errors);

  std::set<std::string> names;
  std::uint64_t reserved_total = 0;
  std::uint32_t lowest_priority = 0;
  for (const BulkheadPolicy& b : policy.bulkheads) {
    if (b.name.empty()) errors.push_back("bulkheads: a bulkhead has no name");
    if (!names.insert(b.name).second) {
      errors.push_back("bulkheads." + b.name + ": defined twice");
    }
    check_bulkhead(b, policy.capacity, errors);
    reserved_total += b.reserved;
    lowest_priority = std::max(lowest_priority, b.priority);
  }
  if (reserved_total > policy.capacity) {
    errors.push_back("bulkheads: reserved slots add up to " + std::to_string(reserved_total) +
                     ", more than the server capacity " + std::to_string(policy.capacity));
  }
  if (!errors.empty()) return unexpected(std::move(errors));

  if (!names.contains(kDefaultBulkhead)) {
    // Unclassified clients: no guarantee, may borrow everything spare, served after every
    // configured class.
    policy.bulkheads.push_back(BulkheadPolicy{
        .name = kDefaultBulkhead,
        .priority = policy.bulkheads.empty()        ? 0
                    : lowest_priority == UINT32_MAX ? lowest_priority
                                                    : lowest_priority + 1,
        .reserved = 0,
        .max = policy.capacity,
    });
  }
  for (BulkheadPolicy& b : policy.bulkheads) {
    if (b.lifo_target == milliseconds{0}) b.lifo_target = b.max_wait / 5;
  }
  return policy;
}

}  // namespace sluice::pools
