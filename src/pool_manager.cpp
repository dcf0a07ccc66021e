#include "src/pool_manager.hpp"

#include "src/log.hpp"

namespace sluice {

using pools::Clock;

struct PoolManager::Waiter {
  enum class Outcome { Waiting, Granted, Expired, Refused };
  explicit Waiter(const asio::any_io_executor& ex) : executor(ex), timer(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer timer;            // touched only on `executor`
  Outcome outcome = Outcome::Waiting;  // guarded by mu_
  pools::LeaseId lease = 0;            // guarded by mu_
};

struct ServerState {
  ServerState(const config::Server& c, std::uint32_t max_waiters)
      : cfg(c), admission(c.max_connections, max_waiters), book(c.max_connections) {
    book.set_max_connecting(c.max_connect_attempts);
  }
  config::Server cfg;
  pools::Admission admission;
  pools::BackendBook book;
  std::unordered_map<pools::BackendId, std::shared_ptr<Backend>> idle;
  std::unordered_map<pools::TicketId, std::shared_ptr<PoolManager::Waiter>> waiters;
  Clock::time_point down_until{};  // connect attempts fail fast until then
  std::string down_reason;
};

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    reset();
    m_ = std::exchange(o.m_, nullptr);
    s_ = o.s_;
    id_ = o.id_;
  }
  return *this;
}

void Lease::reset() {
  if (m_ != nullptr) std::exchange(m_, nullptr)->release(s_, id_);
}

PoolManager::PoolManager(const config::Config& cfg) {
  for (const auto& [name, server] : cfg.servers) {
    // The wait queue is bounded by the client limit: every client waits at most once.
    servers_.emplace(name, std::make_unique<ServerState>(server, cfg.max_client_conn));
  }
}

PoolManager::~PoolManager() = default;

Pool& PoolManager::pool_for(const config::Database& db, const std::string& user) {
  std::lock_guard lock(mu_);
  std::string key = db.name + '\0' + user;
  auto it = pools_.find(key);
  if (it != pools_.end()) return *it->second;
  auto pool = std::make_unique<Pool>();
  pool->database = db.name;
  pool->user = user;
  pool->db = db;
  pool->server = servers_.at(db.server).get();
  pool->book_id =
      pool->server->book.add_pool(pools::PoolSettings{.lifetime = db.server_lifetime,
                                                      .idle_timeout = db.server_idle_timeout,
                                                      .min_size = db.min_pool_size});
  pool->group = pool->server->admission.add_group(db.pool_size);
  Pool& ref = *pool;
  pools_.emplace(std::move(key), std::move(pool));
  return ref;
}

void PoolManager::learn_credentials(Pool& pool, const BackendCredentials& creds) {
  std::lock_guard lock(mu_);
  pool.creds = creds;
}

BackendCredentials PoolManager::credentials(const Pool& pool) {
  std::lock_guard lock(mu_);
  return pool.creds;
}

awaitable<std::variant<Lease, PoolManager::AcquireFailure>> PoolManager::acquire(
    Pool& pool, std::chrono::milliseconds wait) {
  auto ex = co_await asio::this_coro::executor;
  ServerState& s = *pool.server;
  std::shared_ptr<Waiter> w;
  pools::TicketId ticket = 0;
  {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    // A wait of 0 means no limit (query_wait_timeout = "0").
    auto deadline = wait.count() > 0 ? now + wait : Clock::time_point::max();
    pools::Decision d = s.admission.try_acquire(pool.group, now, deadline);
    switch (d.kind) {
      case pools::Decision::Kind::Granted:
        co_return Lease(this, &s, d.lease);
      case pools::Decision::Kind::Refused:
        co_return d.reason == pools::RefuseReason::QueueFull ? AcquireFailure::QueueFull
                                                             : AcquireFailure::Closed;
      case pools::Decision::Kind::Queued:
        break;
    }
    ticket = d.ticket;
    w = std::make_shared<Waiter>(ex);
    w->timer.expires_at(deadline);
    s.waiters.emplace(ticket, w);
  }
  error_code ec;
  co_await w->timer.async_wait(ec_token(ec));
  std::lock_guard lock(mu_);
  if (w->outcome == Waiter::Outcome::Waiting) {
    // Our deadline passed: expire every waiter that is due, ourselves included.
    std::vector<pools::TicketId> expired;
    s.admission.expire(Clock::now(), expired);
    for (pools::TicketId t : expired) {
      auto it = s.waiters.find(t);
      if (it == s.waiters.end()) continue;
      it->second->outcome = Waiter::Outcome::Expired;
      if (t != ticket) asio::post(it->second->executor, [o = it->second] { o->timer.cancel(); });
      s.waiters.erase(it);
    }
    if (w->outcome == Waiter::Outcome::Waiting) {  // not due yet by the pool's clock
      s.admission.cancel(ticket);
      s.waiters.erase(ticket);
      w->outcome = Waiter::Outcome::Expired;
    }
  }
  switch (w->outcome) {
    case Waiter::Outcome::Granted:
      co_return Lease(this, &s, w->lease);
    case Waiter::Outcome::Refused:
      co_return AcquireFailure::Closed;
    default:
      co_return AcquireFailure::TimedOut;
  }
}

// Called with mu_ held.
void PoolManager::wake(ServerState& s, const std::vector<pools::Grant>& granted) {
  for (const pools::Grant& g : granted) {
    auto it = s.waiters.find(g.ticket);
    if (it == s.waiters.end()) {
      // A grant always has a waiter; if not, give the slot back rather than leak it.
      std::vector<pools::Grant> more;
      s.admission.release(g.lease, Clock::now(), more);
      wake(s, more);
      continue;
    }
    it->second->outcome = Waiter::Outcome::Granted;
    it->second->lease = g.lease;
    asio::post(it->second->executor, [w = it->second] { w->timer.cancel(); });
    s.waiters.erase(it);
  }
}

void PoolManager::release(ServerState* s, pools::LeaseId id) {
  std::lock_guard lock(mu_);
  std::vector<pools::Grant> granted;
  s->admission.release(id, Clock::now(), granted);
  wake(*s, granted);
}

awaitable<std::variant<std::shared_ptr<Backend>, BackendError>> PoolManager::checkout(
    Pool& pool, const Params& startup, std::uint32_t max_message_size) {
  auto ex = co_await asio::this_coro::executor;
  ServerState& s = *pool.server;
  // The caller's event loop, so that it gets back a backend whose socket that loop serves.
  const auto home = reinterpret_cast<std::uint64_t>(&asio::query(ex, asio::execution::context));
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<Backend> victim;
    std::shared_ptr<Backend> backend;
    pools::Pick pick;
    BackendCredentials creds;
    {
      std::lock_guard lock(mu_);
      auto now = Clock::now();
      pick = s.book.pick(pool.book_id, now, home);
      if (pick.kind == pools::Pick::Kind::Idle) {
        backend = std::move(s.idle.at(pick.id));
        s.idle.erase(pick.id);
      } else if (pick.kind != pools::Pick::Kind::Busy) {
        if (pick.kind == pools::Pick::Kind::Evict) {
          victim = std::move(s.idle.at(pick.victim));
          s.idle.erase(pick.victim);
        }
        if (now < s.down_until) {
          s.book.remove(pick.id);
          if (victim) victim->close();
          co_return BackendError{.sqlstate = "08006",
                                 .message = "sluice: server \"" + s.cfg.name + "\" is unavailable",
                                 .detail = s.down_reason};
        }
        creds = pool.creds;
      }
    }
    if (victim) victim->close();
    if (backend) {
      if (backend->idle_and_quiet()) co_return backend;
      // It died or spoke while idle (e.g. terminated by an administrator): drop it, pick again.
      log::pool().info("backend_dropped reason=unexpected_data_or_eof server={} pid={}", s.cfg.name,
                       backend->pid);
      {
        std::lock_guard lock(mu_);
        s.book.remove(pick.id);
      }
      backend->close();
      continue;
    }
    if (pick.kind == pools::Pick::Kind::Busy) {
      // Connections being opened fill the server; one of them becomes usable shortly.
      if (attempt > 1000) {
        co_return BackendError{.message = "sluice: no backend connection became available"};
      }
      asio::steady_timer t(ex, std::chrono::milliseconds(10));
      co_await t.async_wait(use_awaitable);
      continue;
    }
    auto b = std::make_shared<Backend>(ex);
    b->id = pick.id;
    b->server = s.cfg.name;
    b->created = Clock::now();
    auto err =
        co_await connect_backend(*b, s.cfg, pool.db.dbname, creds, startup, max_message_size);
    std::lock_guard lock(mu_);
    if (err) {
      s.book.remove(pick.id);
      bool server_trouble =
          !err->from_server || err->sqlstate.starts_with("57") || err->sqlstate.starts_with("53");
      if (server_trouble) {
        s.down_until = Clock::now() + s.cfg.connect_retry_delay;
        s.down_reason = err->message + (err->detail.empty() ? "" : ": " + err->detail);
      }
      log::pool().warn("backend_connect_failed server={} db={} user={} sqlstate={} reason=\"{}\"",
                       s.cfg.name, pool.db.dbname, creds.user, err->sqlstate, err->message);
      co_return *err;
    }
    s.book.connected(pick.id, Clock::now(), false);
    s.down_until = {};
    log::pool().debug("backend_connected server={} db={} user={} pid={}", s.cfg.name,
                      pool.db.dbname, creds.user, b->pid);
    co_return b;
  }
}

void PoolManager::checkin(Pool& pool, std::shared_ptr<Backend> backend, bool reusable) {
  if (!backend) return;
  {
    std::lock_guard lock(mu_);
    ServerState& s = *pool.server;
    bool keep = !closed_ && reusable && backend->socket.is_open() &&
                s.book.release(backend->id, Clock::now(), reusable);
    if (!keep) s.book.remove(backend->id);
    if (keep) {
      s.idle.emplace(backend->id, std::move(backend));
      return;
    }
  }
  backend->close();
}

void PoolManager::maintain(const asio::any_io_executor& ex, std::uint32_t max_message_size) {
  std::vector<std::shared_ptr<Backend>> to_close;
  std::vector<std::pair<Pool*, pools::BackendId>> warm;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    auto now = Clock::now();
    for (auto& [name, s] : servers_) {
      std::vector<pools::BackendId> reaped;
      s->book.reap(now, reaped);
      for (auto id : reaped) {
        auto it = s->idle.find(id);
        if (it != s->idle.end()) {
          to_close.push_back(std::move(it->second));
          s->idle.erase(it);
        }
      }
    }
    for (auto& [key, pool] : pools_) {
      ServerState& s = *pool->server;
      bool can_login = pool->creds.password || pool->creds.md5_secret ||
                       (pool->creds.scram_client_key && pool->creds.scram_server_key);
      if (!can_login || now < s.down_until) continue;
      while (auto id = s.book.reserve_warm(pool->book_id, now)) warm.emplace_back(pool.get(), *id);
    }
  }
  for (auto& b : to_close) {
    log::pool().debug("backend_closed reason=idle_or_lifetime server={} pid={}", b->server, b->pid);
    b->close();
  }
  for (auto& [pool, id] : warm) {
    asio::co_spawn(ex, warm_up(*pool, id, max_message_size), [](std::exception_ptr e) {
      if (e) log::pool().error("warm_up_failed reason=exception");
    });
  }
}

awaitable<void> PoolManager::warm_up(Pool& pool, pools::BackendId id,
                                     std::uint32_t max_message_size) {
  auto ex = co_await asio::this_coro::executor;
  ServerState& s = *pool.server;
  auto b = std::make_shared<Backend>(ex);
  b->id = id;
  b->server = s.cfg.name;
  b->created = Clock::now();
  auto creds = credentials(pool);
  auto err = co_await connect_backend(*b, s.cfg, pool.db.dbname, creds, {}, max_message_size);
  std::lock_guard lock(mu_);
  if (err || closed_) {
    s.book.remove(id);
    if (err) {
      s.down_until = Clock::now() + s.cfg.connect_retry_delay;
      s.down_reason = err->message;
    }
    b->close();
    co_return;
  }
  s.book.connected(id, Clock::now(), true);
  s.idle.emplace(id, std::move(b));
}

void PoolManager::close_all() {
  std::vector<std::shared_ptr<Backend>> to_close;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    for (auto& [name, s] : servers_) {
      std::vector<pools::TicketId> refused;
      s->admission.close(refused);
      for (auto t : refused) {
        auto it = s->waiters.find(t);
        if (it == s->waiters.end()) continue;
        it->second->outcome = Waiter::Outcome::Refused;
        asio::post(it->second->executor, [w = it->second] { w->timer.cancel(); });
        s->waiters.erase(it);
      }
      for (auto& [id, b] : s->idle) {
        s->book.remove(id);
        to_close.push_back(std::move(b));
      }
      s->idle.clear();
    }
  }
  for (auto& b : to_close) b->close();
}

std::vector<PoolStats> PoolManager::stats() {
  std::lock_guard lock(mu_);
  std::vector<PoolStats> out;
  for (auto& [key, p] : pools_) {
    out.push_back(PoolStats{.database = p->database,
                            .user = p->user,
                            .server = p->server->cfg.name,
                            .backends = p->server->book.counts(p->book_id),
                            .slots = p->server->admission.group_stats(p->group)});
  }
  return out;
}

}  // namespace sluice
