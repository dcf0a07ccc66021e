#include "src/auth_query.hpp"

#include "config/keys.hpp"
#include "src/auth_store.hpp"
#include "src/log.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <functional>
#include <vector>

namespace sluice {

// ---- the cache -------------------------------------------------------------------------------

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

// ---- one lookup through libpq ------------------------------------------------------------------

namespace {

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

struct Outcome {
  enum class Kind { Found, NotFound, Failed };
  Kind kind = Kind::NotFound;
  std::string secret;  // Found
  std::string reason;  // Failed: resolve, connect, timeout, query
  std::string error;   // Failed: what libpq or the server said (first line)
};

Outcome failed(std::string reason, std::string_view error) {
  // libpq's messages end in a newline and may have several lines; one is enough for a log.
  error = error.substr(0, error.find('\n'));
  return Outcome{
      .kind = Outcome::Kind::Failed, .reason = std::move(reason), .error = std::string(error)};
}

// Waits for libpq's socket to become readable or writable, all waits of one lookup bounded by
// one deadline. libpq owns the socket, and its number may change between PQconnectPoll calls
// (another address, an SSL retry), so each wait wraps it in a fresh descriptor and releases it
// again, never closing it. A fresh registration also reports readiness that arrived before the
// wait (Asio's epoll reactor is edge-triggered). Lives on one executor (the lookup's coroutine).
class SocketWaiter {
 public:
  enum class Want { Read, Write };

  SocketWaiter(const asio::any_io_executor& ex, std::chrono::milliseconds timeout)
      : ex_(ex), timer_(ex), state_(std::make_shared<State>()) {
    timer_.expires_after(timeout);
    timer_.async_wait([state = state_](error_code ec) {
      if (ec) return;
      state->expired = true;
      if (state->cancel) state->cancel();
    });
  }
  ~SocketWaiter() {
    state_->cancel = nullptr;
    timer_.cancel();
  }
  SocketWaiter(const SocketWaiter&) = delete;
  SocketWaiter& operator=(const SocketWaiter&) = delete;

  bool expired() const { return state_->expired; }

  // Runs `cancel` if the deadline passes while `op` is awaited.
  template <typename T>
  awaitable<T> bounded(awaitable<T> op, std::function<void()> cancel) {
    state_->cancel = std::move(cancel);
    struct Reset {
      State& s;
      ~Reset() { s.cancel = nullptr; }
    } reset{*state_};
    co_return co_await std::move(op);
  }

  // False on an invalid socket, an error or the deadline.
  awaitable<bool> wait(int fd, Want want) {
    if (fd < 0 || expired()) co_return false;
    error_code ec;
    asio::posix::stream_descriptor d(ex_);
    d.assign(fd, ec);
    if (ec) co_return false;
    struct Release {  // libpq closes the socket, never the descriptor
      asio::posix::stream_descriptor& d;
      ~Release() { d.release(); }
    } release{d};
    const auto what = want == Want::Read ? asio::posix::stream_descriptor::wait_read
                                         : asio::posix::stream_descriptor::wait_write;
    co_await bounded(d.async_wait(what, ec_token(ec)), [&d] {
      error_code ignored;
      d.cancel(ignored);
    });
    co_return !ec && !expired();
  }

 private:
  struct State {
    bool expired = false;
    std::function<void()> cancel;  // cancels the operation in progress, if any
  };
  asio::any_io_executor ex_;
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// libpq prints NOTICEs to stderr by default; a lookup has nothing to say to our log.
void ignore_notice(void*, const char*) {}

// The connection keywords for auth_user on `server`. A host name is resolved by Asio (in the
// background) and handed to libpq as hostaddr, because libpq would resolve it blockingly. (As for
// backend connections, a getaddrinfo() already running is not interrupted by the deadline; the
// lookup then fails as soon as it returns.)
struct ConnParams {
  std::vector<std::pair<std::string, std::string>> items;
  void add(std::string key, std::string value) {
    items.emplace_back(std::move(key), std::move(value));
  }
};

awaitable<std::optional<Outcome>> add_address(ConnParams& params, const config::Server& server,
                                              SocketWaiter& waiter) {
  if (!server.host.empty() && server.host.front() == '/') {
    params.add("host", server.host);  // a Unix-socket directory
    co_return std::nullopt;
  }
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  error_code ec;
  auto results = co_await waiter.bounded(
      resolver.async_resolve(server.host, std::to_string(server.port),
                             asio::ip::resolver_base::numeric_service, ec_token(ec)),
      [&resolver] { resolver.cancel(); });
  if (waiter.expired()) co_return failed("timeout", "resolving " + server.host);
  if (ec || results.empty()) co_return failed("resolve", ec.message());
  std::string hosts;
  std::string addresses;
  for (const auto& r : results) {
    if (!hosts.empty()) {
      hosts += ',';
      addresses += ',';
    }
    hosts += server.host;  // for libpq's messages (and SSL's host name check)
    addresses += r.endpoint().address().to_string();
  }
  params.add("host", hosts);
  params.add("hostaddr", addresses);
  co_return std::nullopt;
}

awaitable<std::optional<Outcome>> connect(Conn& conn, const ConnParams& params,
                                          SocketWaiter& waiter) {
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : params.items) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn.reset(PQconnectStartParams(keys.data(), values.data(), 0));
  if (!conn) co_return failed("connect", "out of memory");
  PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
    co_return failed("connect", PQerrorMessage(conn.get()));
  }
  // As the libpq docs say: after PQconnectStart, act as if PQconnectPoll had said "writing".
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  for (;;) {
    if (poll == PGRES_POLLING_OK) co_return std::nullopt;
    if (poll == PGRES_POLLING_FAILED) co_return failed("connect", PQerrorMessage(conn.get()));
    const auto want =
        poll == PGRES_POLLING_READING ? SocketWaiter::Want::Read : SocketWaiter::Want::Write;
    if (!co_await waiter.wait(PQsocket(conn.get()), want)) {
      co_return failed(waiter.expired() ? "timeout" : "connect", "while connecting");
    }
    poll = PQconnectPoll(conn.get());
  }
}

// The first row's second column of the first result; the connection is drained to the end.
awaitable<Outcome> run_query(PGconn* conn, const std::string& query, const std::string& user,
                             SocketWaiter& waiter) {
  if (PQsetnonblocking(conn, 1) != 0) co_return failed("query", PQerrorMessage(conn));
  const char* param = user.c_str();
  if (PQsendQueryParams(conn, query.c_str(), 1, nullptr, &param, nullptr, nullptr, 0) == 0) {
    co_return failed("query", PQerrorMessage(conn));
  }
  // The query is small and the server reads it before it answers, so waiting for writability
  // alone cannot deadlock here.
  for (int flushed = PQflush(conn); flushed != 0; flushed = PQflush(conn)) {
    if (flushed < 0) co_return failed("query", PQerrorMessage(conn));
    if (!co_await waiter.wait(PQsocket(conn), SocketWaiter::Want::Write)) {
      co_return failed(waiter.expired() ? "timeout" : "query", "while sending the query");
    }
  }
  std::optional<Outcome> outcome;
  for (;;) {
    while (PQisBusy(conn) != 0) {
      if (!co_await waiter.wait(PQsocket(conn), SocketWaiter::Want::Read)) {
        co_return failed(waiter.expired() ? "timeout" : "query", "while waiting for the result");
      }
      if (PQconsumeInput(conn) == 0) co_return failed("query", PQerrorMessage(conn));
    }
    Result result(PQgetResult(conn));
    if (!result) break;
    if (outcome) continue;  // only the first result counts
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
      const char* sqlstate = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
      const char* message = PQresultErrorField(result.get(), PG_DIAG_MESSAGE_PRIMARY);
      outcome =
          failed("query", auth_query_error_text(sqlstate != nullptr ? sqlstate : "",
                                                message != nullptr ? message : "no result rows"));
    } else if (PQnfields(result.get()) < 2) {
      outcome = failed("query", "auth_query must return two columns (user name, secret)");
    } else if (PQntuples(result.get()) == 0 || PQgetisnull(result.get(), 0, 1) != 0) {
      outcome = Outcome{.kind = Outcome::Kind::NotFound};
    } else {
      outcome = Outcome{.kind = Outcome::Kind::Found, .secret = PQgetvalue(result.get(), 0, 1)};
    }
  }
  co_return outcome ? std::move(*outcome) : failed("query", "no result");
}

awaitable<Outcome> query_server(const config::Config& cfg, const config::Server& server,
                                const std::string& dbname, const std::string& user,
                                const AuthStore& store) {
  SocketWaiter waiter(co_await asio::this_coro::executor, server.connect_timeout);
  ConnParams params;
  if (auto failure = co_await add_address(params, server, waiter)) co_return std::move(*failure);
  params.add("port", std::to_string(server.port));
  params.add("dbname", dbname);
  params.add("user", cfg.auth_user);
  // libpq cannot log in with an md5 secret or a SCRAM verifier, only with a password.
  const UserSecret* own = store.find(cfg.auth_user);
  if (own != nullptr && own->kind == UserSecret::Kind::Plain) params.add("password", own->text);
  params.add("application_name", "sluice_auth_query");
  // GSSAPI encryption is tried first by default and may consult Kerberos files; Sluice's own
  // backend connections do not use it either.
  params.add("gssencmode", "disable");
  Conn conn;
  if (auto failure = co_await connect(conn, params, waiter)) co_return std::move(*failure);
  co_return co_await run_query(conn.get(), cfg.auth_query, user, waiter);
}

std::string cache_key(const config::Config& cfg, const config::Server& server,
                      const std::string& dbname, const std::string& user) {
  std::string key;
  for (const std::string* part : {&server.host, &dbname, &cfg.auth_user, &cfg.auth_query, &user}) {
    key += *part;
    key += '\0';
  }
  return key + std::to_string(server.port);
}

}  // namespace

std::string auth_query_error_text(std::string_view sqlstate, std::string_view message) {
  std::string text = std::string(sqlstate) + " " + std::string(message);
  if (!sqlstate.starts_with("22")) return text;
  // From the first quote to the last (a value may contain quotes), or to the end if unclosed.
  const std::size_t open = text.find('"', sqlstate.size());
  if (open == std::string::npos) return text;
  const std::size_t close = text.rfind('"');
  text.replace(open, close > open ? close - open + 1 : std::string::npos,
               "\"" + std::string(config::kRedacted) + "\"");
  return text;
}

// ---- the service -------------------------------------------------------------------------------

awaitable<FoundSecret> AuthQuery::lookup(const config::Config& cfg, const config::Server& server,
                                         const std::string& dbname, const std::string& user,
                                         const AuthStore& store) {
  const std::string key = cache_key(cfg, server, dbname, user);
  const auto ttl =
      std::chrono::duration_cast<AuthQueryCache::Clock::duration>(cfg.auth_query_cache);
  {
    std::lock_guard lock(mu_);
    if (auto cached = cache_.find(key, AuthQueryCache::Clock::now(), ttl)) {
      log::main().debug("auth_query_cached server={} db={} user={} found={}", server.name, dbname,
                        log::value(user), cached->has_value());
      co_return std::move(*cached);
    }
  }
  Outcome outcome = co_await query_server(cfg, server, dbname, user, store);
  if (outcome.kind == Outcome::Kind::Failed) {
    // Never the secret, the query text or auth_user's password: only where and why.
    log::main().warn(
        "auth_query_failed reason={} server={} db={} auth_user={} user={} error=\"{}\"",
        outcome.reason, server.name, dbname, cfg.auth_user, log::value(user),
        log::escaped(outcome.error));
    co_return std::nullopt;
  }
  FoundSecret found;
  if (outcome.kind == Outcome::Kind::Found) found = std::move(outcome.secret);
  log::main().debug("auth_query_done server={} db={} user={} found={}", server.name, dbname,
                    log::value(user), found.has_value());
  {
    std::lock_guard lock(mu_);
    cache_.put(key, found, AuthQueryCache::Clock::now(), ttl);
  }
  co_return found;
}

void AuthQuery::clear() {
  std::lock_guard lock(mu_);
  cache_.clear();
}

AuthQuery& auth_query_service() {
  static AuthQuery service;
  return service;
}

awaitable<std::shared_ptr<const UserSecret>> lookup_user_secret(const config::Config& cfg,
                                                                const AuthStore& store,
                                                                const std::string& database,
                                                                const std::string& user) {
  if (cfg.auth_user.empty()) co_return nullptr;
  const config::Database* db = cfg.find_database(database);
  if (db == nullptr) co_return nullptr;
  const auto server = cfg.servers.find(db->server);
  if (server == cfg.servers.end()) co_return nullptr;
  const std::string& dbname = cfg.auth_dbname.empty() ? db->dbname : cfg.auth_dbname;
  FoundSecret secret =
      co_await auth_query_service().lookup(cfg, server->second, dbname, user, store);
  if (!secret) co_return nullptr;
  auto parsed = make_user_secret(user, *secret, cfg.scram_iterations);
  if (!parsed) co_return nullptr;
  co_return std::make_shared<const UserSecret>(std::move(*parsed));
}

}  // namespace sluice
