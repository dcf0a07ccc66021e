// AuthLookups: every decision about an auth_query lookup, without I/O (issue 12, item 6).
//
// A login of a user missing from auth_file asks one question (server, connection parameters,
// user name). In this order:
//  1. the cache (auth_query_cache) answers it if it can; that costs nothing;
//  2. a lookup of the same question already in progress is joined (single-flight): 50 clients
//     logging in at once as one new user cause one query. Free as well;
//  3. the client's address (an IPv4 address, an IPv6 /64, or all Unix-socket clients together)
//     pays one token of its auth_query_peer_rate bucket, or the question is refused
//     (RateLimited: the caller answers as for an unknown user);
//  4. the server's LookupPool (pools/lookup_pool.hpp) gives the new flight one of its at most
//     auth_query_pool_size connections, or queues it until the caller's deadline.
// finish() stores the answer in the cache (a failed lookup is not cached) and tells the pool.
//
// Holds the cache, the per-peer limiter (a CancelRateLimiter: the same per-peer token buckets
// as for CancelRequests, with this rate) and one LookupPool per server name. Not thread-safe:
// AuthQuery calls it under its mutex. Time is a parameter (steady_clock).
#pragma once

#include "pools/lookup_pool.hpp"
#include "pools/token_bucket.hpp"
#include "src/asio_prelude.hpp"
#include "src/auth_query_cache.hpp"
#include "src/cancel_rate_limiter.hpp"

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice {

class AuthLookups {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  // From the config, on every call (so that a reload applies to the next lookup).
  struct Settings {
    Clock::duration cache_ttl{};     // 0: nothing is cached
    pools::RateLimit peer_rate;      // per client address; per_second 0: no limit
    pools::LookupPoolSettings pool;  // per server
  };
  // One question: `key` names it (the cache's and the flight's key), `group` the connection it
  // needs, `server` the pool it is asked of.
  struct Question {
    std::string server;
    std::string group;
    std::string key;
  };
  struct Decision {
    enum class Kind { Cached, Joined, RateLimited, Granted, Queued };
    Kind kind = Kind::RateLimited;
    FoundSecret cached;          // Cached
    pools::FlightId flight = 0;  // Joined, Granted, Queued
    pools::LookupGrant grant;    // Granted
    // What new settings did to the server's pool (a higher auth_query_pool_size grants queued
    // flights at once); the caller acts on it as on finish()'s result.
    pools::LookupFinish served;
  };

  // Decides about `q`, asked by a client at `peer` (nullopt: a Unix-socket client) at `now`; a
  // queued flight waits until `deadline` at most.
  Decision begin(const Question& q, const std::optional<asio::ip::address>& peer,
                 const Settings& settings, TimePoint now, TimePoint deadline);
  // The running flight of `q` is over: `answer` is what it found (nullopt: the lookup failed,
  // nothing is cached); `reusable` says whether its connection may serve another lookup.
  pools::LookupFinish finish(const Question& q, pools::FlightId flight,
                             const std::optional<FoundSecret>& answer, bool reusable,
                             const Settings& settings, TimePoint now);
  // Queued flights of `server` whose deadline is at or before `now` (removed).
  std::vector<pools::FlightId> expire(const std::string& server, TimePoint now);
  // Idle connections to close, as (server, connection) pairs.
  std::vector<std::pair<std::string, pools::ConnId>> reap(TimePoint now);

  pools::LookupCounts counts(const std::string& server) const;
  void clear_cache() { cache_.clear(); }

 private:
  pools::LookupPool& pool_of(const std::string& server, const Settings& settings, TimePoint now,
                             pools::LookupFinish& served);
  bool peer_may_ask(const std::optional<asio::ip::address>& peer, const pools::RateLimit& rate,
                    TimePoint now);

  AuthQueryCache cache_;
  // Rebuilt (empty) when the configured rate changes.
  std::unique_ptr<CancelRateLimiter> peers_;
  pools::RateLimit peer_rate_;
  struct ServerPool {
    pools::LookupPool pool;
    pools::LookupPoolSettings settings;
  };
  std::unordered_map<std::string, ServerPool> pools_;
};

}  // namespace sluice
