// AuthQueryCache: what auth_query found recently, so that a user's next logins do not ask the
// server again (auth_query_cache). Pure: time is a parameter; not thread-safe (its owner,
// AuthLookups, is used under AuthQuery's mutex).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>

namespace sluice {

// What a lookup found: the secret, or nullopt when the query returned no row (or a NULL secret).
using FoundSecret = std::optional<std::string>;

// The results of auth_query for `auth_query_cache`: key -> what was found (a secret, or its
// absence) and when. Keys are opaque strings (AuthQuery joins server, database, auth_user, query
// and user name). Bounded: when `capacity` entries are held, a new one first evicts the expired
// ones, then the oldest. Not thread-safe (AuthQuery holds it under a mutex); time is a parameter.
class AuthQueryCache {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kDefaultCapacity = 10000;

  explicit AuthQueryCache(std::size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  // What was stored for `key` less than `ttl` before `now`, or nullopt (nothing, or expired; an
  // expired entry is removed). The ttl is given on each call, so that a reload that shortens
  // auth_query_cache (or sets it to 0) takes effect at once.
  std::optional<FoundSecret> find(const std::string& key, Clock::time_point now,
                                  Clock::duration ttl);
  // Stores what a lookup found at `now`; does nothing when `ttl` is zero (caching disabled).
  void put(const std::string& key, FoundSecret found, Clock::time_point now, Clock::duration ttl);
  void clear() { entries_.clear(); }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    FoundSecret found;
    Clock::time_point found_at;
  };
  void make_room(Clock::time_point now, Clock::duration ttl);

  std::unordered_map<std::string, Entry> entries_;
  std::size_t capacity_;
};

}  // namespace sluice
