#include "src/auth_lookups.hpp"

namespace sluice {

namespace {

bool same(const pools::RateLimit& a, const pools::RateLimit& b) {
  return a.per_second == b.per_second && a.burst == b.burst;
}

bool same(const pools::LookupPoolSettings& a, const pools::LookupPoolSettings& b) {
  return a.max_connections == b.max_connections && a.idle_timeout == b.idle_timeout;
}

}  // namespace

pools::LookupPool& AuthLookups::pool_of(const std::string& server, const Settings& settings,
                                        TimePoint now, pools::LookupFinish& served) {
  auto it = pools_.find(server);
  if (it == pools_.end()) {
    it = pools_.emplace(server, ServerPool{pools::LookupPool(settings.pool), settings.pool}).first;
  } else if (!same(it->second.settings, settings.pool)) {
    it->second.settings = settings.pool;
    served = it->second.pool.set_settings(settings.pool, now);
  }
  return it->second.pool;
}

bool AuthLookups::peer_may_ask(const std::optional<asio::ip::address>& peer,
                               const pools::RateLimit& rate, TimePoint now) {
  if (!rate.enabled()) return true;
  if (!peers_ || !same(peer_rate_, rate)) {
    peers_ = std::make_unique<CancelRateLimiter>(rate);
    peer_rate_ = rate;
  }
  return peers_->try_take(peer, now);
}

AuthLookups::Decision AuthLookups::begin(const Question& q,
                                         const std::optional<asio::ip::address>& peer,
                                         const Settings& settings, TimePoint now,
                                         TimePoint deadline) {
  Decision d;
  pools::LookupPool& pool = pool_of(q.server, settings, now, d.served);
  if (auto cached = cache_.find(q.key, now, settings.cache_ttl)) {
    d.kind = Decision::Kind::Cached;
    d.cached = std::move(*cached);
    return d;
  }
  if (auto flight = pool.flight_of(q.key)) {
    d.kind = Decision::Kind::Joined;
    d.flight = *flight;
    return d;
  }
  if (!peer_may_ask(peer, settings.peer_rate, now)) {
    d.kind = Decision::Kind::RateLimited;
    return d;
  }
  pools::LookupStart start = pool.start(q.key, q.group, now, deadline);
  d.flight = start.flight;
  if (start.kind == pools::LookupStart::Kind::Granted) {
    d.kind = Decision::Kind::Granted;
    d.grant = std::move(start.grant);
  } else {
    d.kind = Decision::Kind::Queued;  // (Joined cannot happen: flight_of() said no flight)
  }
  return d;
}

pools::LookupFinish AuthLookups::finish(const Question& q, pools::FlightId flight,
                                        const std::optional<FoundSecret>& answer, bool reusable,
                                        const Settings& settings, TimePoint now) {
  if (answer) cache_.put(q.key, *answer, now, settings.cache_ttl);
  pools::LookupFinish served;
  pools::LookupPool& pool = pool_of(q.server, settings, now, served);
  pools::LookupFinish out = pool.finish(flight, now, reusable);
  // New settings met on the way (rare: a reload between begin() and finish()) add to the result.
  out.close.insert(out.close.end(), served.close.begin(), served.close.end());
  out.granted.insert(out.granted.end(), served.granted.begin(), served.granted.end());
  out.expired.insert(out.expired.end(), served.expired.begin(), served.expired.end());
  return out;
}

std::vector<pools::FlightId> AuthLookups::expire(const std::string& server, TimePoint now) {
  const auto it = pools_.find(server);
  if (it == pools_.end()) return {};
  return it->second.pool.expire(now);
}

std::vector<std::pair<std::string, pools::ConnId>> AuthLookups::reap(TimePoint now) {
  std::vector<std::pair<std::string, pools::ConnId>> closed;
  for (auto& [server, entry] : pools_) {
    for (const pools::ConnId id : entry.pool.reap(now)) closed.emplace_back(server, id);
  }
  return closed;
}

pools::LookupCounts AuthLookups::counts(const std::string& server) const {
  const auto it = pools_.find(server);
  return it == pools_.end() ? pools::LookupCounts{} : it->second.pool.counts();
}

}  // namespace sluice
