#include "src/auth_query.hpp"

#include "src/auth_store.hpp"
#include "src/log.hpp"

#include <algorithm>
#include <utility>

namespace sluice {

namespace {

std::string joined(std::initializer_list<const std::string*> parts, std::uint16_t port) {
  std::string key;
  for (const std::string* part : parts) {
    key += *part;
    key += '\0';
  }
  return key + std::to_string(port);
}

// The connection a lookup needs: a connection made for one group cannot serve another.
std::string group_of(const config::Config& cfg, const config::Server& server,
                     const std::string& dbname) {
  return joined({&server.host, &dbname, &cfg.auth_user}, server.port);
}

// The question a lookup asks (the cache's and the flight's key).
std::string question_of(const config::Config& cfg, const config::Server& server,
                        const std::string& dbname, const std::string& user) {
  return joined({&server.host, &dbname, &cfg.auth_user, &cfg.auth_query, &user}, server.port);
}

AuthLookups::Settings settings_of(const config::Config& cfg) {
  AuthLookups::Settings s;
  s.cache_ttl = std::chrono::duration_cast<AuthLookups::Clock::duration>(cfg.auth_query_cache);
  if (cfg.auth_query_peer_rate > 0) {
    s.peer_rate = pools::RateLimit{.per_second = static_cast<double>(cfg.auth_query_peer_rate),
                                   .burst = 2 * cfg.auth_query_peer_rate};
  }
  s.pool = pools::LookupPoolSettings{.max_connections = cfg.auth_query_pool_size,
                                     .idle_timeout = AuthQuery::kIdleTimeout};
  return s;
}

std::string peer_text(const std::optional<asio::ip::address>& peer) {
  return peer ? peer->to_string() : "local";
}

}  // namespace

// A lookup waiting for a connection (the leader of a queued flight) or for the answer of a flight
// it joined. Whoever ends the wait sets `state` under mu_, then posts a cancel of `timer` to
// `executor`; the waiter trusts `state`, never the timer's error code: a timer that fired with
// the state still Waiting means the deadline came first (STYLE.md §2, the queued waiter).
struct AuthQuery::Waiter {
  enum class State { Waiting, Granted, Answered, Expired };
  explicit Waiter(const asio::any_io_executor& ex) : executor(ex), timer(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer timer;           // touched only on `executor`
  State state = State::Waiting;       // guarded by mu_
  std::optional<FoundSecret> answer;  // Answered (nullopt: the lookup failed); guarded by mu_
  pools::LookupGrant grant;           // Granted; guarded by mu_
};

void AuthQuery::wake(const Wakes& wakes) {
  for (const auto& w : wakes) asio::post(w->executor, [w] { w->timer.cancel(); });
}

void AuthQuery::settle(const std::string& server, pools::LookupFinish& done, Wakes& wakes,
                       std::vector<PgConn>& closing) {
  for (const pools::ConnId id : done.close) {
    const auto it = idle_.find({server, id});
    if (it == idle_.end()) continue;  // the finished flight's own connection: its runner closes it
    closing.push_back(std::move(it->second));
    idle_.erase(it);
  }
  for (pools::LookupGrant& grant : done.granted) {
    Flight& flight = flights_.at({server, grant.flight});
    flight.leader->state = Waiter::State::Granted;
    flight.leader->grant = std::move(grant);
    wakes.push_back(std::move(flight.leader));
  }
  for (const pools::FlightId id : done.expired) {
    auto node = flights_.extract({server, id});
    if (node.empty()) continue;
    Flight& flight = node.mapped();
    if (flight.leader) {
      flight.leader->state = Waiter::State::Expired;
      wakes.push_back(std::move(flight.leader));
    }
    for (auto& joiner : flight.joiners) {
      joiner->state = Waiter::State::Answered;  // with no answer: failed
      wakes.push_back(std::move(joiner));
    }
  }
}

awaitable<bool> AuthQuery::wait_for_grant(const std::string& server, Waiter& w) {
  error_code ec;
  co_await w.timer.async_wait(ec_token(ec));
  Wakes wakes;
  std::vector<PgConn> closing;
  bool granted = false;
  {
    std::lock_guard lock(mu_);
    if (w.state == Waiter::State::Waiting) {
      // The deadline: the timer fires at or after it, so this flight is among the expired.
      pools::LookupFinish done;
      done.expired = lookups_.expire(server, std::max(Clock::now(), w.timer.expiry()));
      settle(server, done, wakes, closing);
    }
    granted = w.state == Waiter::State::Granted;
  }
  wake(wakes);
  co_return granted;
}

awaitable<std::optional<FoundSecret>> AuthQuery::wait_for_answer(const FlightKey& key, Waiter& w) {
  error_code ec;
  co_await w.timer.async_wait(ec_token(ec));
  std::lock_guard lock(mu_);
  if (w.state == Waiter::State::Answered) co_return std::move(w.answer);
  // The deadline came first: stop waiting for the flight (it goes on for its other clients).
  w.state = Waiter::State::Expired;
  const auto it = flights_.find(key);
  if (it != flights_.end()) {
    std::erase_if(it->second.joiners, [&w](const auto& j) { return j.get() == &w; });
  }
  co_return std::nullopt;
}

awaitable<std::optional<FoundSecret>> AuthQuery::run_flight(const AuthLookups::Question& q,
                                                            const AuthLookups::Settings& settings,
                                                            const pools::LookupGrant& grant,
                                                            const AuthConnTarget& target,
                                                            const std::string& query,
                                                            const std::string& user) {
  PgConn conn;
  std::vector<PgConn> closing;
  {
    std::lock_guard lock(mu_);
    for (const pools::ConnId id : grant.close) {
      if (auto node = idle_.extract({q.server, id})) closing.push_back(std::move(node.mapped()));
    }
    // A fresh grant, or (never expected) an idle id with no connection kept: connect anew.
    if (auto node = idle_.extract({q.server, grant.conn})) conn = std::move(node.mapped());
  }
  closing.clear();  // PQfinish outside the lock
  QueryOutcome outcome = co_await run_auth_query(conn, target, query, user);
  std::optional<FoundSecret> answer;
  if (outcome.kind == QueryOutcome::Kind::Found) answer = FoundSecret(std::move(outcome.secret));
  if (outcome.kind == QueryOutcome::Kind::NotFound) answer = FoundSecret();
  const bool keep = reusable(conn);
  Wakes wakes;
  {
    std::lock_guard lock(mu_);
    pools::LookupFinish done =
        lookups_.finish(q, grant.flight, answer, keep, settings, Clock::now());
    if (auto node = flights_.extract({q.server, grant.flight})) {
      for (auto& joiner : node.mapped().joiners) {
        joiner->state = Waiter::State::Answered;
        joiner->answer = answer;
        wakes.push_back(std::move(joiner));
      }
    }
    const bool closed =
        std::find(done.close.begin(), done.close.end(), grant.conn) != done.close.end();
    if (keep && !closed) idle_.emplace(ConnKey{q.server, grant.conn}, std::move(conn));
    settle(q.server, done, wakes, closing);
  }
  wake(wakes);
  closing.clear();
  conn.reset();
  if (outcome.kind == QueryOutcome::Kind::Failed) {
    // Never the secret, the query text or auth_user's password: only where and why.
    log::main().warn(
        "auth_query_failed reason={} server={} db={} auth_user={} user={} error=\"{}\"",
        outcome.reason, target.server->name, target.dbname, target.user, log::value(user),
        log::escaped(outcome.error));
  }
  co_return answer;
}

awaitable<FoundSecret> AuthQuery::lookup(const config::Config& cfg, const config::Server& server,
                                         const std::string& dbname, const std::string& user,
                                         const AuthStore& store,
                                         std::optional<asio::ip::address> peer,
                                         std::optional<Clock::duration> max_wait) {
  const auto now = Clock::now();
  const auto deadline = now + max_wait.value_or(server.connect_timeout);
  const AuthLookups::Question q{.server = server.name,
                                .group = group_of(cfg, server, dbname),
                                .key = question_of(cfg, server, dbname, user)};
  const AuthLookups::Settings settings = settings_of(cfg);
  auto waiter = std::make_shared<Waiter>(co_await asio::this_coro::executor);
  waiter->timer.expires_at(deadline);
  AuthLookups::Decision d;
  Wakes wakes;
  std::vector<PgConn> closing;
  std::optional<std::uint64_t> log_refusal;  // with how many refusals went unlogged before it
  {
    std::lock_guard lock(mu_);
    d = lookups_.begin(q, peer, settings, now, deadline);
    settle(server.name, d.served, wakes, closing);
    using Kind = AuthLookups::Decision::Kind;
    if (d.kind == Kind::RateLimited) {
      if (refusal_log_.try_take(now)) {
        log_refusal = std::exchange(unlogged_refusals_, 0);
      } else {
        ++unlogged_refusals_;
      }
    }
    if (d.kind == Kind::Joined) flights_.at({server.name, d.flight}).joiners.push_back(waiter);
    if (d.kind == Kind::Granted) flights_.emplace(FlightKey{server.name, d.flight}, Flight{});
    if (d.kind == Kind::Queued) {
      flights_.emplace(FlightKey{server.name, d.flight}, Flight{.leader = waiter});
    }
  }
  wake(wakes);
  closing.clear();

  const auto log_wait_failed = [&](std::string_view what) {
    log::main().warn(
        "auth_query_failed reason=timeout server={} db={} auth_user={} user={} error=\"{}\"",
        server.name, dbname, cfg.auth_user, log::value(user), what);
  };
  std::optional<FoundSecret> answer;
  switch (d.kind) {
    case AuthLookups::Decision::Kind::Cached:
      log::main().debug("auth_query_cached server={} db={} user={} found={}", server.name, dbname,
                        log::value(user), d.cached.has_value());
      co_return std::move(d.cached);
    case AuthLookups::Decision::Kind::RateLimited:
      // Answered as an unknown user: the client learns nothing it would not learn otherwise.
      if (log_refusal) {
        log::main().info(
            "auth_query_refused reason=peer_rate peer={} server={} db={} user={} suppressed={}",
            peer_text(peer), server.name, dbname, log::value(user), *log_refusal);
      }
      co_return std::nullopt;
    case AuthLookups::Decision::Kind::Joined:
      answer = co_await wait_for_answer({server.name, d.flight}, *waiter);
      log::main().debug("auth_query_joined server={} db={} user={} answered={}", server.name,
                        dbname, log::value(user), answer.has_value());
      co_return answer ? std::move(*answer) : std::nullopt;
    case AuthLookups::Decision::Kind::Queued:
      if (!co_await wait_for_grant(server.name, *waiter)) {
        log_wait_failed("no connection of auth_user became free in time");
        co_return std::nullopt;
      }
      {
        std::lock_guard lock(mu_);
        d.grant = std::move(waiter->grant);
      }
      break;
    case AuthLookups::Decision::Kind::Granted:
      break;
  }
  // libpq cannot log in with an md5 secret or a SCRAM verifier, only with a password.
  const UserSecret* own = store.find(cfg.auth_user);
  const AuthConnTarget target{
      .server = &server,
      .dbname = dbname,
      .user = cfg.auth_user,
      .password = own != nullptr && own->kind == UserSecret::Kind::Plain ? own->text : ""};
  answer = co_await run_flight(q, settings, d.grant, target, cfg.auth_query, user);
  if (answer) {
    log::main().debug("auth_query_done server={} db={} user={} found={}", server.name, dbname,
                      log::value(user), answer->has_value());
  }
  co_return answer ? std::move(*answer) : std::nullopt;
}

void AuthQuery::maintain(Clock::time_point now) {
  std::vector<PgConn> closing;
  {
    std::lock_guard lock(mu_);
    for (const auto& key : lookups_.reap(now)) {
      if (auto node = idle_.extract(key)) closing.push_back(std::move(node.mapped()));
    }
  }
}

pools::LookupCounts AuthQuery::counts(const std::string& server) {
  std::lock_guard lock(mu_);
  return lookups_.counts(server);
}

void AuthQuery::clear() {
  std::vector<PgConn> closing;
  std::lock_guard lock(mu_);
  lookups_.clear_cache();
  if (!flights_.empty()) return;
  lookups_ = AuthLookups();
  for (auto& [key, conn] : idle_) closing.push_back(std::move(conn));
  idle_.clear();
}

AuthQuery& auth_query_service() {
  static AuthQuery service;
  return service;
}

awaitable<std::shared_ptr<const UserSecret>> lookup_user_secret(
    const config::Config& cfg, const AuthStore& store, const std::string& database,
    const std::string& user, const std::optional<asio::ip::address>& peer) {
  if (cfg.auth_user.empty()) co_return nullptr;
  const config::Database* db = cfg.find_database(database);
  if (db == nullptr) co_return nullptr;
  const auto server = cfg.servers.find(db->server);
  if (server == cfg.servers.end()) co_return nullptr;
  const std::string& dbname = cfg.auth_dbname.empty() ? db->dbname : cfg.auth_dbname;
  // The login's own budget; without one, the server's connect budget.
  const std::chrono::milliseconds max_wait = cfg.client_login_timeout.count() > 0
                                                 ? cfg.client_login_timeout
                                                 : server->second.connect_timeout;
  FoundSecret secret = co_await auth_query_service().lookup(cfg, server->second, dbname, user,
                                                            store, peer, max_wait);
  if (!secret) co_return nullptr;
  auto parsed = make_user_secret(user, *secret, cfg.scram_iterations);
  if (!parsed) co_return nullptr;
  co_return std::make_shared<const UserSecret>(std::move(*parsed));
}

}  // namespace sluice
