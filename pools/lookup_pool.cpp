#include "pools/lookup_pool.hpp"

#include <algorithm>
#include <stdexcept>

namespace sluice::pools {

LookupStart LookupPool::start(const std::string& key, const std::string& group, TimePoint now,
                              TimePoint deadline) {
  if (auto joined = flight_of(key)) {
    return LookupStart{.kind = LookupStart::Kind::Joined, .flight = *joined};
  }
  const FlightId id = next_id_++;
  Flight& flight =
      flights_.emplace(id, Flight{.key = key, .group = group, .deadline = deadline}).first->second;
  by_key_.emplace(key, id);
  // Nobody is queued ahead when a connection can be had (the queue is served whenever one is
  // given back), so a grant here overtakes no one.
  if (queue_.empty()) {
    if (auto grant = try_grant(id, flight, now)) {
      return LookupStart{
          .kind = LookupStart::Kind::Granted, .flight = id, .grant = std::move(*grant)};
    }
  }
  queue_.push_back(id);
  return LookupStart{.kind = LookupStart::Kind::Queued, .flight = id};
}

std::optional<FlightId> LookupPool::flight_of(const std::string& key) const {
  const auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

// The most recently used idle connection of `group` (`same`), or the least recently used one of
// any other group (!`same`: the one to close to make room).
std::optional<ConnId> LookupPool::idle_of(const std::string& group, bool same) const {
  std::optional<ConnId> best;
  TimePoint best_used{};
  for (const auto& [id, conn] : conns_) {
    if (conn.busy || (conn.group == group) != same) continue;
    const bool better = !best || (same ? conn.last_used > best_used : conn.last_used < best_used) ||
                        (conn.last_used == best_used && id < *best);
    if (better) {
      best = id;
      best_used = conn.last_used;
    }
  }
  return best;
}

std::optional<LookupGrant> LookupPool::try_grant(FlightId id, Flight& flight, TimePoint now) {
  LookupGrant grant{.flight = id};
  if (auto idle = idle_of(flight.group, true)) {
    grant.conn = *idle;
  } else {
    // Over a lowered bound nothing new is opened; reap() and finish() shrink the pool.
    if (conns_.size() > settings_.max_connections) return std::nullopt;
    if (conns_.size() == settings_.max_connections) {
      const auto victim = idle_of(flight.group, false);
      if (!victim) return std::nullopt;
      conns_.erase(*victim);
      grant.close.push_back(*victim);
    }
    grant.conn = next_id_++;
    grant.fresh = true;
    conns_.emplace(grant.conn, Conn{.group = flight.group});
  }
  Conn& conn = conns_.at(grant.conn);
  conn.busy = true;
  conn.last_used = now;
  flight.conn = grant.conn;
  return grant;
}

void LookupPool::serve_queue(TimePoint now, LookupFinish& out) {
  while (!queue_.empty()) {
    const FlightId id = queue_.front();
    Flight& flight = flights_.at(id);
    if (flight.deadline <= now) {
      queue_.pop_front();
      end_flight(id);
      out.expired.push_back(id);
      continue;
    }
    auto grant = try_grant(id, flight, now);
    if (!grant) return;
    queue_.pop_front();
    // Closed by whoever acts on `out` (it may be the connection just given back).
    out.close.insert(out.close.end(), grant->close.begin(), grant->close.end());
    grant->close.clear();
    out.granted.push_back(std::move(*grant));
  }
}

LookupFinish LookupPool::finish(FlightId id, TimePoint now, bool reusable) {
  Flight& flight = flights_.at(id);
  if (!flight.conn) throw std::out_of_range("LookupPool::finish: flight is not running");
  const ConnId conn_id = *flight.conn;
  end_flight(id);
  LookupFinish out;
  Conn& conn = conns_.at(conn_id);
  if (reusable && conns_.size() <= settings_.max_connections) {
    conn.busy = false;
    conn.last_used = now;
  } else {
    conns_.erase(conn_id);
    out.close.push_back(conn_id);
  }
  serve_queue(now, out);
  return out;
}

std::vector<FlightId> LookupPool::expire(TimePoint now) {
  std::vector<FlightId> expired;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (flights_.at(*it).deadline <= now) {
      end_flight(*it);
      expired.push_back(*it);
      it = queue_.erase(it);
    } else {
      ++it;
    }
  }
  return expired;
}

std::vector<ConnId> LookupPool::reap(TimePoint now) {
  std::vector<std::pair<TimePoint, ConnId>> idle;
  for (const auto& [id, conn] : conns_) {
    if (!conn.busy) idle.emplace_back(conn.last_used, id);
  }
  std::sort(idle.begin(), idle.end());  // least recently used first
  std::vector<ConnId> closed;
  for (const auto& [last_used, id] : idle) {
    const bool too_many = conns_.size() > settings_.max_connections;
    if (too_many || now - last_used >= settings_.idle_timeout) {
      conns_.erase(id);
      closed.push_back(id);
    }
  }
  return closed;
}

LookupFinish LookupPool::set_settings(LookupPoolSettings settings, TimePoint now) {
  settings_ = settings;
  LookupFinish out;
  serve_queue(now, out);
  return out;
}

bool LookupPool::running(FlightId id) const {
  const auto it = flights_.find(id);
  return it != flights_.end() && it->second.conn.has_value();
}

void LookupPool::end_flight(FlightId id) {
  const auto it = flights_.find(id);
  if (it == flights_.end()) throw std::out_of_range("LookupPool: unknown flight");
  by_key_.erase(it->second.key);
  flights_.erase(it);
}

LookupCounts LookupPool::counts() const {
  LookupCounts c;
  for (const auto& [id, conn] : conns_) ++(conn.busy ? c.busy : c.idle);
  c.waiting = static_cast<std::uint32_t>(queue_.size());
  c.flights = static_cast<std::uint32_t>(flights_.size());
  return c;
}

std::optional<std::string> LookupPool::check_invariants() const {
  if (by_key_.size() != flights_.size()) return "by_key_ and flights_ differ in size";
  std::size_t running = 0;
  std::unordered_map<ConnId, int> users;
  for (const auto& [id, flight] : flights_) {
    const auto k = by_key_.find(flight.key);
    if (k == by_key_.end() || k->second != id) return "flight " + std::to_string(id) + " not keyed";
    if (!flight.conn) continue;
    ++running;
    const auto c = conns_.find(*flight.conn);
    if (c == conns_.end() || !c->second.busy) {
      return "flight " + std::to_string(id) + " runs on a connection that is not busy";
    }
    if (c->second.group != flight.group) return "flight " + std::to_string(id) + ": wrong group";
    if (++users[*flight.conn] > 1) return "two flights on one connection";
  }
  const LookupCounts c = counts();
  if (running != c.busy) return "busy connections without a flight";
  if (running + queue_.size() != flights_.size()) return "a flight neither running nor queued";
  for (const FlightId id : queue_) {
    const auto f = flights_.find(id);
    if (f == flights_.end() || f->second.conn) return "queued flight unknown or running";
  }
  return std::nullopt;
}

}  // namespace sluice::pools
