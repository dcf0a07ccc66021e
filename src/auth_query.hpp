// AuthQuery: secrets of users who are not in auth_file, looked up on the PostgreSQL server
// ("Dynamic users", PgBouncer's auth_query).
//
// When `auth_user` is set, a client whose user is missing from auth_file is looked up by running
// `auth_query` (one text parameter, the user name) as `auth_user` on the server of the client's
// database, in `auth_dbname` (default: that database's dbname). The query's second column of its
// first row is the secret as PostgreSQL stores it: a SCRAM verifier, an md5 secret or (rarely) a
// plain password. The client then authenticates against it exactly as against an auth-file entry.
//
// A lookup happens before the client has proved anything, so what one client can make the server
// do is bounded (issue 12, item 6; the decisions are AuthLookups', src/auth_lookups.hpp): the
// cache (auth_query_cache) answers repeated questions; concurrent logins of one name share one
// query; a client address starts at most auth_query_peer_rate lookups a second (past that the
// user is answered as unknown); and the queries to one server run on at most
// auth_query_pool_size connections of auth_user, kept open between lookups (closed after
// kIdleTimeout idle) and set aside from the server's max_connections
// (config::Config::backend_capacity), so Sluice never holds more than max_connections
// connections to a server. A lookup that finds them all busy, or joins one in progress, waits at
// most its `max_wait`; it never opens another connection. The talking to the server is
// src/auth_query_conn.hpp's. Failures (connect, authentication of auth_user, SQL error, timeout)
// are logged as `auth_query_failed`, never cached, and answered like an unknown user.
//
// Thread-safety: every member may be called from any thread; one mutex guards the decisions, the
// idle connections and the waiters. A waiting coroutine is woken by a post to its own event loop;
// a connection is used by one coroutine at a time, possibly on another loop than the last.
#pragma once

#include "config/config.hpp"
#include "pools/lookup_pool.hpp"
#include "pools/token_bucket.hpp"
#include "src/asio_prelude.hpp"
#include "src/auth_lookups.hpp"
#include "src/auth_query_cache.hpp"
#include "src/auth_query_conn.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

class AuthStore;
struct UserSecret;

class AuthQuery {
 public:
  using Clock = std::chrono::steady_clock;
  // An idle connection of auth_user is closed after this long (maintain()).
  static constexpr std::chrono::seconds kIdleTimeout{60};

  // The secret of `user` according to cfg.auth_query run as cfg.auth_user on `server`, database
  // `dbname`: from the cache when found less than cfg.auth_query_cache ago, else from the server.
  // nullopt when the user has no (usable) row, when the lookup failed (logged, not cached), when
  // `peer` (the client's address; nullopt: a Unix-socket client) is past its rate, or when no
  // answer came within `max_wait` (nullopt: the server's connect_timeout) of waiting for a
  // connection or for a lookup of the same name in progress. auth_user's password is its
  // plain-text entry in `store`, if it has one; otherwise none is sent (trust, or libpq's own
  // sources such as PGPASSWORD and ~/.pgpass). Call from a coroutine on any event loop; the
  // references must stay valid until it completes.
  awaitable<FoundSecret> lookup(const config::Config& cfg, const config::Server& server,
                                const std::string& dbname, const std::string& user,
                                const AuthStore& store,
                                std::optional<asio::ip::address> peer = std::nullopt,
                                std::optional<Clock::duration> max_wait = std::nullopt);
  // Closes connections idle for kIdleTimeout (Runtime calls it about once a second).
  void maintain(Clock::time_point now);
  // The connections and lookups of `server` now (tests, diagnostics).
  pools::LookupCounts counts(const std::string& server);
  // Forgets every cached result, and (when no lookup is in progress) every connection (tests).
  void clear();

 private:
  struct Waiter;
  using Wakes = std::vector<std::shared_ptr<Waiter>>;
  struct Flight {
    std::shared_ptr<Waiter> leader;  // while queued for a connection
    std::vector<std::shared_ptr<Waiter>> joiners;
  };
  using FlightKey = std::pair<std::string, pools::FlightId>;  // (server, flight)
  using ConnKey = std::pair<std::string, pools::ConnId>;      // (server, connection)

  // Waits for a connection (true) or the deadline (false).
  awaitable<bool> wait_for_grant(const std::string& server, Waiter& w);
  // Waits for the answer of the flight joined (nullopt: it failed, or the deadline came first).
  awaitable<std::optional<FoundSecret>> wait_for_answer(const FlightKey& flight, Waiter& w);
  // Runs the flight granted `grant`; nullopt when the lookup failed.
  awaitable<std::optional<FoundSecret>> run_flight(const AuthLookups::Question& q,
                                                   const AuthLookups::Settings& settings,
                                                   const pools::LookupGrant& grant,
                                                   const AuthConnTarget& target,
                                                   const std::string& query,
                                                   const std::string& user);
  // With mu_ held: acts on what the pool decided (connections to close go to `closing`; waiters
  // to wake, their state set, to `wakes`).
  void settle(const std::string& server, pools::LookupFinish& done, Wakes& wakes,
              std::vector<PgConn>& closing);
  static void wake(const Wakes& wakes);

  std::mutex mu_;  // guards everything below, and each Waiter's state
  AuthLookups lookups_;
  std::map<FlightKey, Flight> flights_;
  std::map<ConnKey, PgConn> idle_;
  // auth_query_refused lines are samples (a line a second, bursts of 5) under a flood; the next
  // line says how many were left out.
  pools::TokenBucket refusal_log_{pools::RateLimit{.per_second = 1, .burst = 5}};
  std::uint64_t unlogged_refusals_ = 0;
};

// The process-wide AuthQuery, created on first use.
AuthQuery& auth_query_service();

// For ClientSession: the UserSecret of `user`, a client of `database` (the name clients use) at
// `peer`, found by auth_query on that database's server; nullptr when auth_user is empty, the
// database is not configured, or nothing usable was found. Waits at most client_login_timeout
// (or, when that is "0", the server's connect_timeout) for a connection. A plain-text secret gets
// a SCRAM verifier derived with cfg.scram_iterations, as auth-file entries do.
awaitable<std::shared_ptr<const UserSecret>> lookup_user_secret(
    const config::Config& cfg, const AuthStore& store, const std::string& database,
    const std::string& user, const std::optional<asio::ip::address>& peer);

}  // namespace sluice
