#include "src/auth_query_cache.hpp"

#include <algorithm>

namespace sluice {

std::optional<FoundSecret> AuthQueryCache::find(const std::string& key, Clock::time_point now,
                                                Clock::duration ttl) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  if (now - it->second.found_at >= ttl) {
    entries_.erase(it);
    return std::nullopt;
  }
  return it->second.found;
}

void AuthQueryCache::put(const std::string& key, FoundSecret found, Clock::time_point now,
                         Clock::duration ttl) {
  if (ttl <= Clock::duration::zero() || capacity_ == 0) return;
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    it->second = Entry{std::move(found), now};
    return;
  }
  if (entries_.size() >= capacity_) make_room(now, ttl);
  entries_.emplace(key, Entry{std::move(found), now});
}

// Linear, but only when the cache is full, and each put follows a round trip to the server.
void AuthQueryCache::make_room(Clock::time_point now, Clock::duration ttl) {
  std::erase_if(entries_, [&](const auto& e) { return now - e.second.found_at >= ttl; });
  if (entries_.size() < capacity_) return;
  auto oldest = std::min_element(
      entries_.begin(), entries_.end(),
      [](const auto& a, const auto& b) { return a.second.found_at < b.second.found_at; });
  entries_.erase(oldest);
}

}  // namespace sluice
