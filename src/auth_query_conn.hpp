// One libpq connection of auth_user to a server, and one auth_query run on it (src/auth_query.hpp
// decides when; this file only talks to the server).
//
// The query runs through libpq's asynchronous API on the caller's event loop: every wait for
// libpq's socket is an Asio wait, and all the waits of one run are bounded together by the
// server's connect_timeout, so a slow or dead server never blocks the loop. A connection is kept
// between runs by its owner (AuthQuery's pool of idle connections) and may be run on by another
// event loop next time, never by two at once.
#pragma once

#include "config/config.hpp"
#include "src/asio_prelude.hpp"

#include <memory>
#include <string>
#include <string_view>

struct pg_conn;  // libpq's PGconn

namespace sluice {

struct PgConnDeleter {
  void operator()(pg_conn* c) const;  // PQfinish
};
using PgConn = std::unique_ptr<pg_conn, PgConnDeleter>;

// Where and as whom a connection logs in.
struct AuthConnTarget {
  const config::Server* server = nullptr;
  std::string dbname;
  std::string user;      // auth_user
  std::string password;  // its plain-text password; empty: none is sent (trust, ~/.pgpass)
};

struct QueryOutcome {
  enum class Kind { Found, NotFound, Failed };
  Kind kind = Kind::NotFound;
  std::string secret;  // Found
  std::string reason;  // Failed: resolve, connect, timeout, query
  std::string error;   // Failed: what libpq or the server said (first line)
};

// Runs `query` with `user` as its one parameter on `conn`, connecting it to `target` first when
// it is empty: the second column of the first row is the secret. A connection that was kept idle
// and turns out broken (the server closed it meanwhile) is replaced once by a new one. Call from
// a coroutine; the references must stay valid until it completes.
awaitable<QueryOutcome> run_auth_query(PgConn& conn, const AuthConnTarget& target,
                                       const std::string& query, const std::string& user);

// Whether `conn` may run another lookup: connected, no query running, no transaction open.
bool reusable(const PgConn& conn);

// What the log may say of an SQL error that auth_query got: "SQLSTATE message". A data exception
// (SQLSTATE class 22) quotes the offending value, which may be the very secret the query read
// (e.g. a cast of passwd that fails), so its quoted part becomes "********"; other errors quote
// identifiers (a missing function or relation), which an operator needs, and are kept.
std::string auth_query_error_text(std::string_view sqlstate, std::string_view message);

}  // namespace sluice
