#include "pools/backend_book.hpp"

#include <algorithm>

namespace sluice::pools {

PoolId BackendBook::add_pool(PoolSettings settings) {
  pools_.push_back(Pool{.settings = settings});
  return static_cast<PoolId>(pools_.size() - 1);
}

void BackendBook::set_pool_settings(PoolId pool, PoolSettings settings) {
  pools_.at(pool).settings = settings;
}

BackendId BackendBook::add_entry(PoolId pool, TimePoint now, std::uint64_t home) {
  BackendId id = next_id_++;
  entries_.emplace(id, Entry{.pool = pool, .home = home, .created = now, .last_used = now});
  ++pools_[pool].counts.connecting;
  return id;
}

// The single place where a backend changes state: keeps counts and the idle list in step.
void BackendBook::set_state(BackendId id, Entry& e, BackendState to) {
  Pool& p = pools_[e.pool];
  auto counter = [&](BackendState s) -> std::uint32_t& {
    switch (s) {
      case BackendState::Connecting:
        return p.counts.connecting;
      case BackendState::Idle:
        return p.counts.idle;
      case BackendState::Active:
        break;
    }
    return p.counts.active;
  };
  --counter(e.state);
  if (e.state == BackendState::Idle) std::erase(p.idle, id);
  e.state = to;
  ++counter(to);
  if (to == BackendState::Idle) p.idle.push_back(id);
}

std::optional<BackendId> BackendBook::oldest_idle_elsewhere(PoolId pool) const {
  std::optional<BackendId> best;
  TimePoint best_used{};
  for (PoolId i = 0; i < pools_.size(); ++i) {
    if (i == pool || pools_[i].idle.empty()) continue;
    BackendId candidate = pools_[i].idle.front();  // least recently used of that pool
    const Entry& e = entries_.at(candidate);
    if (!best || e.last_used < best_used) {
      best = candidate;
      best_used = e.last_used;
    }
  }
  return best;
}

Pick BackendBook::pick(PoolId pool, TimePoint now, std::uint64_t home) {
  Pool& p = pools_.at(pool);
  // Most recently used first, the caller's own loop's first of all. One past its lifetime is
  // skipped, not handed out; reap() closes it.
  for (bool any_home : {false, true}) {
    for (auto it = p.idle.rbegin(); it != p.idle.rend(); ++it) {
      BackendId id = *it;
      Entry& e = entries_.at(id);
      if ((!any_home && e.home != home) || past_lifetime(e, p, now)) continue;
      set_state(id, e, BackendState::Active);  // invalidates `it`; we return below
      e.last_used = now;
      return Pick{.kind = Pick::Kind::Idle, .id = id};
    }
  }
  const PoolCounts all = totals();
  if (max_connecting_ > 0 && all.connecting >= max_connecting_)
    return Pick{.kind = Pick::Kind::Busy};
  if (all.total() < max_) {
    return Pick{.kind = Pick::Kind::Connect, .id = add_entry(pool, now, home)};
  }
  if (auto victim = oldest_idle_elsewhere(pool)) {
    remove(*victim);
    return Pick{.kind = Pick::Kind::Evict, .id = add_entry(pool, now, home), .victim = *victim};
  }
  return Pick{.kind = Pick::Kind::Busy};
}

std::optional<BackendId> BackendBook::reserve_warm(PoolId pool, TimePoint now) {
  if (totals().total() >= max_ || warm_deficit(pool) == 0) return std::nullopt;
  return add_entry(pool, now);
}

void BackendBook::connected(BackendId id, TimePoint now, bool idle) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.state != BackendState::Connecting) return;
  it->second.last_used = now;
  set_state(id, it->second, idle ? BackendState::Idle : BackendState::Active);
}

bool BackendBook::past_lifetime(const Entry& e, const Pool& p, TimePoint now) const {
  return p.settings.lifetime.count() > 0 && now - e.created >= p.settings.lifetime;
}

bool BackendBook::release(BackendId id, TimePoint now, bool reusable) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  Entry& e = it->second;
  if (!reusable || e.state != BackendState::Active || past_lifetime(e, pools_[e.pool], now)) {
    remove(id);
    return false;
  }
  e.last_used = now;
  set_state(id, e, BackendState::Idle);
  return true;
}

void BackendBook::remove(BackendId id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  Pool& p = pools_[e.pool];
  switch (e.state) {
    case BackendState::Connecting:
      --p.counts.connecting;
      break;
    case BackendState::Idle:
      --p.counts.idle;
      std::erase(p.idle, id);
      break;
    case BackendState::Active:
      --p.counts.active;
      break;
  }
  entries_.erase(it);
}

void BackendBook::reap(TimePoint now, std::vector<BackendId>& to_close) {
  std::vector<BackendId> doomed;
  for (const Pool& p : pools_) {
    // Lifetime always applies; idle timeout never takes a pool below its warm minimum, counting
    // what this pass already closes (least recently used first).
    std::uint32_t remaining = p.counts.total();
    for (BackendId id : p.idle) {
      if (past_lifetime(entries_.at(id), p, now)) {
        doomed.push_back(id);
        --remaining;
      }
    }
    for (BackendId id : p.idle) {
      const Entry& e = entries_.at(id);
      bool idle_too_long =
          p.settings.idle_timeout.count() > 0 && now - e.last_used >= p.settings.idle_timeout;
      if (idle_too_long && !past_lifetime(e, p, now) && remaining > p.settings.min_size) {
        doomed.push_back(id);
        --remaining;
      }
    }
  }
  for (BackendId id : doomed) {
    remove(id);
    to_close.push_back(id);
  }
}

std::uint32_t BackendBook::warm_deficit(PoolId pool) const {
  const Pool& p = pools_.at(pool);
  std::uint32_t have = p.counts.total();
  return have >= p.settings.min_size ? 0 : p.settings.min_size - have;
}

PoolCounts BackendBook::counts(PoolId pool) const { return pools_.at(pool).counts; }

PoolCounts BackendBook::totals() const {
  PoolCounts t;
  for (const Pool& p : pools_) {
    t.connecting += p.counts.connecting;
    t.idle += p.counts.idle;
    t.active += p.counts.active;
  }
  return t;
}

std::optional<BackendState> BackendBook::state(BackendId id) const {
  auto it = entries_.find(id);
  if (it == entries_.end()) return std::nullopt;
  return it->second.state;
}

std::optional<std::string> BackendBook::check_invariants() const {
  std::vector<PoolCounts> seen(pools_.size());
  for (const auto& [id, e] : entries_) {
    PoolCounts& c = seen.at(e.pool);
    if (e.state == BackendState::Connecting) ++c.connecting;
    if (e.state == BackendState::Idle) {
      ++c.idle;
      const auto& idle = pools_[e.pool].idle;
      if (std::count(idle.begin(), idle.end(), id) != 1) return "idle backend missing from list";
    }
    if (e.state == BackendState::Active) ++c.active;
  }
  for (std::size_t i = 0; i < pools_.size(); ++i) {
    const PoolCounts& c = pools_[i].counts;
    if (c.connecting != seen[i].connecting || c.idle != seen[i].idle ||
        c.active != seen[i].active || pools_[i].idle.size() != c.idle) {
      return "pool " + std::to_string(i) + " counts mismatch";
    }
  }
  return std::nullopt;
}

}  // namespace sluice::pools
