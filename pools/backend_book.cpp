#include "pools/backend_book.hpp"

#include <algorithm>
#include <stdexcept>

namespace sluice::pools {

PoolId BackendBook::add_pool(PoolSettings settings) {
  if (!free_pools_.empty()) {
    const PoolId id = free_pools_.back();
    free_pools_.pop_back();
    pools_[id] = Pool{.settings = settings};
    return id;
  }
  pools_.push_back(Pool{.settings = settings});
  return static_cast<PoolId>(pools_.size() - 1);
}

bool BackendBook::remove_pool(PoolId pool) {
  Pool& p = pools_.at(pool);
  if (!p.live || p.counts.total() != 0) return false;
  p = Pool{.live = false};  // frees its idle list's storage too
  free_pools_.push_back(pool);
  return true;
}

void BackendBook::set_pool_settings(PoolId pool, PoolSettings settings) {
  pools_.at(pool).settings = settings;
}

BackendBook::Entry& BackendBook::entry(BackendId id) {
  Entry* e = entries_.find(id);
  if (e == nullptr) throw std::out_of_range("BackendBook: unknown backend id");
  return *e;
}

const BackendBook::Entry& BackendBook::entry(BackendId id) const {
  const Entry* e = entries_.find(id);
  if (e == nullptr) throw std::out_of_range("BackendBook: unknown backend id");
  return *e;
}

// An id is in the idle list once; the one leaving is usually the most recent (the back).
void BackendBook::erase_idle(Pool& p, BackendId id) {
  auto it = std::find(p.idle.rbegin(), p.idle.rend(), id);
  if (it != p.idle.rend()) p.idle.erase(std::next(it).base());
}

BackendId BackendBook::add_entry(PoolId pool, TimePoint now, std::uint64_t home) {
  BackendId id = next_id_++;
  entries_.insert(id, Entry{.pool = pool, .home = home, .created = now, .last_used = now});
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
  if (e.state == BackendState::Idle) erase_idle(p, id);
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
    const Entry& e = entry(candidate);
    if (!best || e.last_used < best_used) {
      best = candidate;
      best_used = e.last_used;
    }
  }
  return best;
}

std::optional<BackendId> BackendBook::take_idle(PoolId pool, TimePoint now, std::uint64_t home) {
  Pool& p = pools_.at(pool);
  // Most recently used first, the caller's own loop's first of all. One past its lifetime is
  // skipped, not handed out; reap() closes it.
  for (bool any_home : {false, true}) {
    for (auto it = p.idle.rbegin(); it != p.idle.rend(); ++it) {
      BackendId id = *it;
      Entry& e = entry(id);
      if ((!any_home && e.home != home) || past_lifetime(e, p, now)) continue;
      set_state(id, e, BackendState::Active);  // invalidates `it`; we return below
      e.last_used = now;
      return id;
    }
  }
  return std::nullopt;
}

Pick BackendBook::pick(PoolId pool, TimePoint now, std::uint64_t home) {
  if (auto id = take_idle(pool, now, home)) return Pick{.kind = Pick::Kind::Idle, .id = *id};
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

std::optional<BackendId> BackendBook::reserve_connect(PoolId pool, TimePoint now) {
  const PoolCounts all = totals();
  if (max_connecting_ > 0 && all.connecting >= max_connecting_) return std::nullopt;
  if (all.total() >= max_) return std::nullopt;
  return add_entry(pool, now);
}

void BackendBook::connected(BackendId id, TimePoint now, bool idle) {
  Entry* e = entries_.find(id);
  if (e == nullptr || e->state != BackendState::Connecting) return;
  e->last_used = now;
  set_state(id, *e, idle ? BackendState::Idle : BackendState::Active);
}

bool BackendBook::past_lifetime(const Entry& e, const Pool& p, TimePoint now) const {
  return p.settings.lifetime.count() > 0 && now - e.created >= p.settings.lifetime;
}

bool BackendBook::release(BackendId id, TimePoint now, bool reusable) {
  Entry* found = entries_.find(id);
  if (found == nullptr) return false;
  Entry& e = *found;
  if (!reusable || e.state != BackendState::Active || past_lifetime(e, pools_[e.pool], now)) {
    remove(id);
    return false;
  }
  e.last_used = now;
  set_state(id, e, BackendState::Idle);
  return true;
}

void BackendBook::remove(BackendId id) {
  Entry* found = entries_.find(id);
  if (found == nullptr) return;
  Entry& e = *found;
  Pool& p = pools_[e.pool];
  switch (e.state) {
    case BackendState::Connecting:
      --p.counts.connecting;
      break;
    case BackendState::Idle:
      --p.counts.idle;
      erase_idle(p, id);
      break;
    case BackendState::Active:
      --p.counts.active;
      break;
  }
  entries_.erase(id);
}

void BackendBook::reap(TimePoint now, std::vector<BackendId>& to_close) {
  std::vector<BackendId> doomed;
  for (const Pool& p : pools_) {
    // Lifetime always applies; idle timeout never takes a pool below its warm minimum, counting
    // what this pass already closes (least recently used first).
    std::uint32_t remaining = p.counts.total();
    for (BackendId id : p.idle) {
      if (past_lifetime(entry(id), p, now)) {
        doomed.push_back(id);
        --remaining;
      }
    }
    for (BackendId id : p.idle) {
      const Entry& e = entry(id);
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
  const Entry* e = entries_.find(id);
  if (e == nullptr) return std::nullopt;
  return e->state;
}

std::optional<std::string> BackendBook::check_invariants() const {
  std::vector<PoolCounts> seen(pools_.size());
  std::optional<std::string> error;
  entries_.for_each([&](BackendId id, const Entry& e) {
    if (error) return;
    if (e.pool >= seen.size()) {
      error = "backend of an unknown pool";
      return;
    }
    PoolCounts& c = seen[e.pool];
    if (e.state == BackendState::Connecting) ++c.connecting;
    if (e.state == BackendState::Idle) {
      ++c.idle;
      const auto& idle = pools_[e.pool].idle;
      if (std::count(idle.begin(), idle.end(), id) != 1) error = "idle backend missing from list";
    }
    if (e.state == BackendState::Active) ++c.active;
  });
  if (error) return error;
  const auto removed =
      std::count_if(pools_.begin(), pools_.end(), [](const Pool& p) { return !p.live; });
  if (static_cast<std::size_t>(removed) != free_pools_.size()) {
    return "removed pools differ from the free ids";
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
