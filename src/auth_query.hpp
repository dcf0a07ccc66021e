// AuthQuery: secrets of users who are not in auth_file, looked up on the PostgreSQL server
// ("Dynamic users", PgBouncer's auth_query).
//
// When `auth_user` is set, a client whose user is missing from auth_file is looked up by running
// `auth_query` (one text parameter, the user name) as `auth_user` on the server of the client's
// database, in `auth_dbname` (default: that database's dbname). The query's second column of its
// first row is the secret as PostgreSQL stores it: a SCRAM verifier, an md5 secret or (rarely) a
// plain password. The client then authenticates against it exactly as against an auth-file entry.
//
// The query runs through libpq's asynchronous API on the caller's event loop: every wait for
// libpq's socket is an Asio wait, bounded by the server's connect_timeout, so a slow or dead
// server never blocks the loop. One connection per lookup (logins of unknown users are rare next
// to queries, and results are cached). Failures (connect, authentication of auth_user, SQL error,
// timeout) are logged as `auth_query_failed`, never cached, and answered like an unknown user.
//
// AuthQueryCache is the pure part (time is a parameter); AuthQuery, the process-wide service
// (auth_query_service()), guards one cache with a mutex and may be called from any thread.
#pragma once

#include "config/config.hpp"
#include "src/asio_prelude.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice {

class AuthStore;
struct UserSecret;

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

class AuthQuery {
 public:
  // The secret of `user` according to cfg.auth_query run as cfg.auth_user on `server`, database
  // `dbname`: from the cache when found less than cfg.auth_query_cache ago, else from the server.
  // nullopt when the user has no (usable) row, or when the lookup failed (logged, not cached).
  // auth_user's password is its plain-text entry in `store`, if it has one; otherwise none is
  // sent (trust, or libpq's own sources such as PGPASSWORD and ~/.pgpass). Call from a coroutine
  // on any event loop; the references must stay valid until it completes.
  awaitable<FoundSecret> lookup(const config::Config& cfg, const config::Server& server,
                                const std::string& dbname, const std::string& user,
                                const AuthStore& store);
  // Forgets every cached result (tests; an operator's reload does not need it: entries expire).
  void clear();

 private:
  std::mutex mu_;
  AuthQueryCache cache_;  // guarded by mu_
};

// What the log may say of an SQL error that auth_query got: "SQLSTATE message". A data exception
// (SQLSTATE class 22) quotes the offending value, which may be the very secret the query read
// (e.g. a cast of passwd that fails), so its quoted part becomes "********"; other errors quote
// identifiers (a missing function or relation), which an operator needs, and are kept.
std::string auth_query_error_text(std::string_view sqlstate, std::string_view message);

// The process-wide AuthQuery, created on first use.
AuthQuery& auth_query_service();

// For ClientSession: the UserSecret of `user`, a client of `database` (the name clients use),
// found by auth_query on that database's server; nullptr when auth_user is empty, the database
// is not configured, or nothing usable was found. A plain-text secret gets a SCRAM verifier
// derived with cfg.scram_iterations, as auth-file entries do.
awaitable<std::shared_ptr<const UserSecret>> lookup_user_secret(const config::Config& cfg,
                                                                const AuthStore& store,
                                                                const std::string& database,
                                                                const std::string& user);

}  // namespace sluice
