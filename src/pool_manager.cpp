#include "src/pool_manager.hpp"

#include "src/bulkhead_classifier.hpp"
#include "src/log.hpp"
#include "src/server_state.hpp"
#include "src/task_failure.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <sys/socket.h>
#include <tuple>

namespace sluice {

using pools::Clock;

struct PoolManager::Waiter {
  enum class Outcome { Waiting, Granted, Refused, Cancelled, ClientGone, Closed };
  explicit Waiter(const asio::any_io_executor& ex) : executor(ex), timer(ex) {}
  asio::any_io_executor executor;
  asio::steady_timer timer;            // touched only on `executor`
  Outcome outcome = Outcome::Waiting;  // guarded by mu_
  pools::LeaseId lease = 0;            // guarded by mu_
  pools::Refused refusal;              // guarded by mu_ (Outcome::Refused)
  ServerState* server = nullptr;
  pools::TicketId ticket = 0;
  bool watch_done = false;  // touched only on `executor`: the wait is over, leave the socket be
};

config::Bulkhead implicit_default_bulkhead(const config::Config& cfg,
                                           const config::Server& server) {
  config::Bulkhead d;
  d.name = pools::kDefaultBulkhead;
  d.server = server.name;
  for (const config::Bulkhead& b : cfg.bulkheads) {
    if (b.server == server.name) d.priority = std::max(d.priority, b.priority + 1);
  }
  d.max = cfg.backend_capacity(server);
  d.queue_depth = cfg.max_client_conn;
  d.max_wait = cfg.query_wait_timeout.count() > 0 ? cfg.query_wait_timeout : config::kMaxDuration;
  return d;
}

namespace {

// The admission policy of one server from the config: its [[bulkheads]], and a `default`
// bulkhead that keeps PgBouncer's behaviour (a queue as deep as max_client_conn, waits of up to
// query_wait_timeout) unless the config defines `default` itself.
pools::BulkheadPolicy bulkhead_policy_of(const config::Bulkhead& b, std::uint32_t capacity) {
  pools::BulkheadPolicy bp;
  bp.name = b.name;
  bp.priority = b.priority;
  bp.reserved = b.reserved;
  bp.max = std::min(b.max.value_or(capacity), capacity);
  bp.queue_depth = b.queue_depth;
  bp.max_wait = b.max_wait;
  bp.statement_timeout = b.statement_timeout;
  bp.idle_transaction_timeout = b.idle_transaction_timeout;
  bp.max_clients = b.max_clients;
  if (b.new_connections_per_second > 0) {
    bp.new_connections = pools::RateLimit{
        static_cast<double>(b.new_connections_per_second),
        b.new_connections_burst > 0 ? b.new_connections_burst : b.new_connections_per_second};
  }
  if (b.new_transactions_per_second > 0) {
    bp.new_transactions = pools::RateLimit{
        static_cast<double>(b.new_transactions_per_second),
        b.new_transactions_burst > 0 ? b.new_transactions_burst : b.new_transactions_per_second};
  }
  bp.adaptive_lifo = b.adaptive_lifo;
  bp.lifo_target = b.lifo_target;
  return bp;
}

pools::Policy policy_for(const config::Config& cfg, const config::Server& server) {
  pools::Policy p;
  p.capacity = cfg.backend_capacity(server);
  p.breaker.failure_threshold = 3;
  p.breaker.open_delay = std::max(server.connect_retry_delay, std::chrono::milliseconds(10));
  p.breaker.max_open_delay = std::max(p.breaker.open_delay, std::chrono::milliseconds(30000));
  bool has_default = false;
  for (const config::Bulkhead& b : cfg.bulkheads) {
    if (b.server != server.name) continue;
    has_default = has_default || b.name == pools::kDefaultBulkhead;
    p.bulkheads.push_back(bulkhead_policy_of(b, p.capacity));
  }
  if (!has_default) {
    p.bulkheads.push_back(bulkhead_policy_of(implicit_default_bulkhead(cfg, server), p.capacity));
  }
  return p;
}

std::string ms_text(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

}  // namespace

// The turns of one event loop (bench/PROFILE.md C4). A handler posted during a turn runs after the
// loop's next poll of its sockets (epoll_wait) and before any completion that poll reported:
// Asio's scheduler queue holds the reactor task ahead of it and appends the poll's completions
// behind it. So while `turn` is unchanged since a backend was checked in on this loop, the loop
// has taken in nothing from outside since then, and the client request it is serving now was
// sent before that check-in: whatever happened to the backend after it was checked in happened
// after the request was sent, as if during the request. Such a checkout skips the MSG_PEEK probe
// of the idle backend; every other one (a later turn, another thread, a new or warmed-up backend)
// probes it. Touched only by the loop's own thread.
struct LoopTurns : asio::execution_context::service {
  using key_type = LoopTurns;
  static asio::execution_context::id id;
  explicit LoopTurns(asio::execution_context& ctx) : asio::execution_context::service(ctx) {}
  void shutdown() override {}

  std::uint64_t turn = 1;
  bool marker_posted = false;  // a handler that ends the current turn is queued
};

asio::execution_context::id LoopTurns::id;

std::uint64_t loop_tag(const asio::any_io_executor& ex) {
  return reinterpret_cast<std::uint64_t>(&asio::query(ex, asio::execution::context));
}

namespace {

// At check-in, by the backend's owner: the current turn of its loop, if this is that loop's thread.
void stamp_checkin(Backend& b) {
  b.checkin_turn = 0;
  if (b.loop == nullptr || !b.loop->get_executor().running_in_this_thread()) return;
  LoopTurns& t = *b.loop_turns;
  if (!t.marker_posted) {
    t.marker_posted = true;
    asio::post(*b.loop, [&t] {
      ++t.turn;
      t.marker_posted = false;
    });
  }
  b.checkin_turn = t.turn;
}

// At checkout: checked in during the current turn of its loop, which is this thread's.
bool checked_in_this_turn(const Backend& b) {
  return b.checkin_turn != 0 && b.loop->get_executor().running_in_this_thread() &&
         b.checkin_turn == b.loop_turns->turn;
}

}  // namespace

AdmissionRefusal describe_refusal(const ServerState& s, const pools::Refused& r) {
  AdmissionRefusal out;
  out.reason = r.reason;
  out.retry_after = r.retry_after;
  const std::string& name = s.admission.bulkhead_policy(r.bulkhead).name;
  out.hint = "retry after " + std::to_string(r.retry_after.count()) + " ms";
  if (r.reason == pools::RefusalReason::ServerDown) {
    out.sqlstate = "08006";
    out.message = "sluice: server \"" + s.cfg.name + "\" is unavailable: circuit breaker open";
    out.detail = s.down_reason.empty() ? "connection attempts to the server keep failing"
                                       : "last connection attempt: " + s.down_reason;
    return out;
  }
  out.sqlstate = "53300";
  out.message = "sluice: bulkhead \"" + name + "\" is saturated: " + pools::to_string(r.reason);
  out.detail = "queue depth " + std::to_string(r.waiters) + ", oldest waiter " +
               ms_text(r.oldest_age) + " ms";
  return out;
}

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    reset();
    m_ = std::exchange(o.m_, nullptr);
    s_ = o.s_;
    id_ = o.id_;
  }
  return *this;
}

void Lease::reset(pools::LeaseOutcome outcome) {
  if (m_ != nullptr) std::exchange(m_, nullptr)->release(s_, id_, outcome);
}

PoolManager::PoolManager(const config::Config& cfg) {
  std::uint64_t seed = static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  for (const auto& [name, server] : cfg.servers) {
    auto admission = pools::BulkheadAdmission::create(policy_for(cfg, server), ++seed);
    if (!admission) {
      std::string why;
      for (const auto& e : admission.error()) why += (why.empty() ? "" : "; ") + e;
      throw std::invalid_argument("server \"" + name + "\": " + why);
    }
    servers_.emplace(name, std::make_unique<ServerState>(server, cfg.backend_capacity(server),
                                                         std::move(*admission)));
  }
}

PoolManager::~PoolManager() = default;

void PoolManager::set_metrics(Metrics& metrics) {
  std::lock_guard lock(mu_);
  for (auto& [name, s] : servers_) s->series = metrics.server_series(name);
}

Pool& PoolManager::pool_for(const config::Database& db, const std::string& user) {
  std::lock_guard lock(mu_);
  std::string key = db.name + '\0' + user;
  auto it = pools_.find(key);
  if (it != pools_.end()) {
    ++it->second->holders;
    return *it->second;
  }
  auto pool = std::make_unique<Pool>();
  pool->holders = 1;
  pool->last_used = Clock::now();
  pool->database = db.name;
  pool->user = user;
  pool->creds.user = user;  // until a login teaches it a secret (trust: maybe never)
  pool->db = db;
  pool->server = servers_.at(db.server).get();
  pool->book_id =
      pool->server->book.add_pool(pools::PoolSettings{.lifetime = db.server_lifetime,
                                                      .idle_timeout = db.server_idle_timeout,
                                                      .min_size = db.min_pool_size});
  pool->group = pool->server->admission.add_group(db.pool_size);
  pool->paused = all_paused_ || paused_.contains(db.name);
  Pool& ref = *pool;
  pools_.emplace(std::move(key), std::move(pool));
  return ref;
}

void PoolManager::learn_credentials(Pool& pool, const BackendCredentials& creds) {
  std::lock_guard lock(mu_);
  pool.creds = creds;
}

std::optional<std::map<std::string, std::string>> PoolManager::server_defaults(const Pool& pool) {
  std::lock_guard lock(mu_);
  return pool.server_defaults;
}

BackendCredentials PoolManager::credentials(const Pool& pool) {
  std::lock_guard lock(mu_);
  return pool.creds;
}

std::variant<ClientClass, AdmissionRefusal> PoolManager::classify_client(const config::Config& cfg,
                                                                         const config::Database& db,
                                                                         const ClientInfo& who) {
  std::lock_guard lock(mu_);
  ServerState& s = *servers_.at(db.server);
  const config::Bulkhead* b = match_bulkhead(cfg, db.server, who);
  pools::BulkheadId id = s.admission.default_bulkhead();
  if (b != nullptr) id = s.admission.find_bulkhead(b->name).value_or(id);
  auto checked = s.admission.check_client(id, Clock::now());
  if (auto* refused = std::get_if<pools::Refused>(&checked)) return describe_refusal(s, *refused);
  const pools::BulkheadPolicy& p = s.admission.bulkhead_policy(id);
  return ClientClass{.server = &s,
                     .bulkhead = id,
                     .server_name = s.cfg.name,
                     .name = p.name,
                     .statement_timeout = p.statement_timeout,
                     .idle_transaction_timeout = p.idle_transaction_timeout};
}

std::optional<AdmissionRefusal> PoolManager::admit_client(const ClientClass& cls) {
  std::lock_guard lock(mu_);
  auto admitted = cls.server->admission.acquire_client(cls.bulkhead, Clock::now());
  if (auto* refused = std::get_if<pools::Refused>(&admitted)) {
    return describe_refusal(*cls.server, *refused);
  }
  return std::nullopt;
}

void PoolManager::release_client(const ClientClass& cls) {
  std::lock_guard lock(mu_);
  cls.server->admission.release_client(cls.bulkhead);
}

namespace {

// Whether the peer closed its side (EOF or error) rather than sent more bytes.
bool peer_closed(Socket& socket) {
  char byte;
  const ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

}  // namespace

awaitable<PoolManager::AcquireResult> PoolManager::acquire(Pool& pool, const ClientClass& cls,
                                                           Socket* watch, WaitHandle* handle) {
  auto ex = co_await asio::this_coro::executor;
  ServerState& s = *pool.server;
  const auto start = Clock::now();
  std::shared_ptr<Waiter> w;
  // One lock section decides (the common case: not paused, granted at once). While the database
  // is PAUSEd the decision waits for RESUME, polled: a pause is an operator's rare, short action.
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (closed_) co_return Closed{};
      if (!pool.paused) {
        pools::AcquireResult r = s.admission.try_acquire(cls.bulkhead, pool.group, Clock::now());
        if (auto* g = std::get_if<pools::Granted>(&r)) co_return Lease(this, &s, g->lease);
        if (auto* refused = std::get_if<pools::Refused>(&r)) {
          co_return describe_refusal(s, *refused);
        }
        const auto& q = std::get<pools::Queued>(r);
        w = std::make_shared<Waiter>(ex);
        w->server = &s;
        w->ticket = q.ticket;
        w->timer.expires_at(q.deadline);
        s.waiters.emplace(q.ticket, w);
        break;
      }
      if (Clock::now() - start >= s.admission.bulkhead_policy(cls.bulkhead).max_wait) {
        co_return AdmissionRefusal{
            .sqlstate = "53300",
            .message = "sluice: database \"" + pool.database + "\" is paused",
            .detail = "an administrator ran PAUSE; RESUME lets transactions through again",
            .hint = "retry after 1000 ms",
            .reason = pools::RefusalReason::MaxWait,
            .retry_after = std::chrono::milliseconds(1000)};
      }
    }
    asio::steady_timer t(ex, std::chrono::milliseconds(20));
    error_code ec;
    co_await t.async_wait(ec_token(ec));
  }
  if (handle != nullptr) *handle = w;
  if (watch != nullptr) {
    // A client that goes away while queued leaves the queue at once. Readable with data means
    // the client sent more (a pipeline): stop watching and wait on.
    watch->async_wait(Socket::wait_read, [this, w, watch](error_code ec) {
      if (ec || w->watch_done || !peer_closed(*watch)) return;
      std::lock_guard lock(mu_);
      if (w->outcome != Waiter::Outcome::Waiting) return;
      w->server->admission.cancel(w->ticket, Clock::now());
      w->server->waiters.erase(w->ticket);
      w->outcome = Waiter::Outcome::ClientGone;
      w->timer.cancel();
    });
  }
  error_code ec;
  co_await w->timer.async_wait(ec_token(ec));
  w->watch_done = true;
  if (watch != nullptr) {
    error_code ignored;
    watch->cancel(ignored);
  }
  if (handle != nullptr) handle->reset();
  std::unique_lock lock(mu_);
  if (w->outcome == Waiter::Outcome::Waiting) {
    // Our deadline passed: refuse every waiter that is due, ourselves included.
    reject(s, s.admission.expire(Clock::now()));
    if (w->outcome == Waiter::Outcome::Waiting) {  // not due yet by the pool's clock
      if (auto r = s.admission.expire_ticket(w->ticket, Clock::now())) reject(s, {*r});
    }
  }
  pool.traffic.wait_ns.fetch_add(
      static_cast<std::uint64_t>(std::chrono::nanoseconds(Clock::now() - start).count()),
      std::memory_order_relaxed);
  switch (w->outcome) {
    case Waiter::Outcome::Granted:
      co_return Lease(this, &s, w->lease);
    case Waiter::Outcome::Refused:
      co_return describe_refusal(s, w->refusal);
    case Waiter::Outcome::Cancelled:
      co_return Cancelled{};
    case Waiter::Outcome::ClientGone:
      co_return ClientGone{};
    default:
      co_return Closed{};
  }
}

void PoolManager::abandon(const WaitHandle& handle) {
  auto w = handle.lock();
  if (!w) return;
  std::lock_guard lock(mu_);
  if (w->outcome != Waiter::Outcome::Waiting) return;
  w->server->admission.cancel(w->ticket, Clock::now());
  w->server->waiters.erase(w->ticket);
  w->outcome = Waiter::Outcome::Cancelled;
  asio::post(w->executor, [w] { w->timer.cancel(); });
}

PoolManager::Immediate PoolManager::try_acquire_now(Pool& pool, const ClientClass& cls,
                                                    const asio::any_io_executor& ex) {
  const std::uint64_t home = loop_tag(ex);
  ServerState& s = *pool.server;
  Immediate out;
  std::shared_ptr<Backend> backend;
  {
    std::lock_guard lock(mu_);
    if (closed_ || pool.paused) return out;
    const auto now = Clock::now();
    const std::optional<pools::LeaseId> lease =
        s.admission.try_grant(cls.bulkhead, pool.group, now);
    if (!lease) return out;
    out.lease = Lease(this, &s, *lease);
    if (auto id = s.book.take_idle(pool.book_id, now, home)) {
      backend = s.take_idle(*id);
      if (!backend) s.book.remove(*id);  // never without its object; forget it if so
    }
  }
  if (backend && still_usable(s, backend)) out.backend = std::move(backend);
  return out;
}

// Called with mu_ held.
void PoolManager::wake(ServerState& s, const std::vector<pools::HandOff>& granted) {
  for (const pools::HandOff& g : granted) {
    auto it = s.waiters.find(g.ticket);
    if (it == s.waiters.end()) {
      // A grant always has a waiter; if not, give the slot back rather than leak it.
      wake(s, s.admission.release(g.lease, Clock::now(), pools::LeaseOutcome::Ignored));
      continue;
    }
    it->second->outcome = Waiter::Outcome::Granted;
    it->second->lease = g.lease;
    asio::post(it->second->executor, [w = it->second] { w->timer.cancel(); });
    s.waiters.erase(it);
  }
}

// Called with mu_ held.
void PoolManager::reject(ServerState& s, const std::vector<pools::Rejection>& rejected) {
  for (const pools::Rejection& r : rejected) {
    auto it = s.waiters.find(r.ticket);
    if (it == s.waiters.end()) continue;
    it->second->outcome = Waiter::Outcome::Refused;
    it->second->refusal = r.refusal;
    asio::post(it->second->executor, [w = it->second] { w->timer.cancel(); });
    s.waiters.erase(it);
  }
}

void PoolManager::release(ServerState* s, pools::LeaseId id, pools::LeaseOutcome outcome) {
  std::lock_guard lock(mu_);
  wake(*s, s->admission.release(id, Clock::now(), outcome));
}

// Called with mu_ held: a connect to `s` failed with server trouble.
void PoolManager::connect_failed(ServerState& s) {
  ++s.connect_failures;
  reject(s, s.admission.record_connect_failure(Clock::now()));
}

std::shared_ptr<Backend> PoolManager::new_backend(const asio::any_io_executor& ex, ServerState& s,
                                                  pools::BackendId id) {
  auto b = std::make_shared<Backend>(ex);
  b->id = id;
  b->server = s.cfg.name;
  b->created = Clock::now();
  if (const auto* io = ex.target<asio::io_context::executor_type>()) {
    b->loop = &io->context();
    b->loop_turns = &asio::use_service<LoopTurns>(static_cast<asio::execution_context&>(*b->loop));
  }
  return b;
}

bool PoolManager::still_usable(ServerState& s, const std::shared_ptr<Backend>& backend) {
  Backend& b = *backend;
  if (b.socket.is_open() && b.buf.empty() && checked_in_this_turn(b)) return true;
  if (b.idle_and_quiet()) return true;
  // It died or spoke while idle (e.g. terminated by an administrator): drop it.
  log::pool().info("backend_dropped reason=unexpected_data_or_eof server={} pid={}", s.cfg.name,
                   b.pid);
  {
    std::lock_guard lock(mu_);
    s.book.remove(b.id);
    s.wake_backend_waits();
  }
  b.close();
  return false;
}

bool PoolManager::keep_idle(ServerState& s, Backend& backend, bool reusable) {
  const bool keep = !closed_ && reusable && backend.socket.is_open() &&
                    s.book.release(backend.id, Clock::now(), reusable);
  if (!keep) s.book.remove(backend.id);
  s.wake_backend_waits();  // idle or gone: either may be what a Busy checkout waits for
  return keep;
}

void PoolManager::checkin(Pool& pool, std::shared_ptr<Backend> backend, bool reusable) {
  if (!backend) return;
  stamp_checkin(*backend);  // still ours alone
  {
    std::lock_guard lock(mu_);
    ServerState& s = *pool.server;
    if (keep_idle(s, *backend, reusable)) {
      s.idle.push_back(std::move(backend));
      return;
    }
  }
  backend->close();
}

void PoolManager::checkin(Pool& pool, std::shared_ptr<Backend> backend, bool reusable, Lease& lease,
                          pools::LeaseOutcome outcome) {
  if (lease.m_ != this) {
    checkin(pool, std::move(backend), reusable);
    lease.reset(outcome);
    return;
  }
  if (backend) stamp_checkin(*backend);
  {
    std::lock_guard lock(mu_);
    if (backend) {
      ServerState& s = *pool.server;
      if (keep_idle(s, *backend, reusable)) s.idle.push_back(std::move(backend));
    }
    // The backend first: a waiter the slot is handed to finds it idle.
    lease.m_ = nullptr;
    wake(*lease.s_, lease.s_->admission.release(lease.id_, Clock::now(), outcome));
  }
  if (backend) backend->close();
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
        if (auto b = s->take_idle(id)) to_close.push_back(std::move(b));
      }
      if (!reaped.empty()) s->wake_backend_waits();
    }
    for (auto& [key, pool] : pools_) {
      ServerState& s = *pool->server;
      bool can_login = pool->creds.password || pool->creds.md5_secret ||
                       (pool->creds.scram_client_key && pool->creds.scram_server_key);
      if (!can_login || s.admission.breaker_state(now) != pools::BreakerState::Closed) continue;
      while (auto id = s.book.reserve_warm(pool->book_id, now)) warm.emplace_back(pool.get(), *id);
    }
  }
  for (auto& b : to_close) {
    log::pool().debug("backend_closed reason=idle_or_lifetime server={} pid={}", b->server, b->pid);
    b->close();
  }
  for (auto& [pool, id] : warm) {
    asio::co_spawn(ex, warm_up(*pool, id, max_message_size), on_task_exit(Task::WarmUp));
  }
}

awaitable<void> PoolManager::warm_up(Pool& pool, pools::BackendId id,
                                     std::uint32_t max_message_size, pools::ProbeId probe) {
  auto ex = co_await asio::this_coro::executor;
  ServerState& s = *pool.server;
  auto b = new_backend(ex, s, id);
  BackendCredentials creds;
  config::Server server_cfg;
  {
    std::lock_guard lock(mu_);
    creds = pool.creds;
    server_cfg = s.cfg;
    ++s.connect_attempts;
  }
  auto err = co_await connect_backend(*b, server_cfg, pool.db.dbname, creds, {}, max_message_size);
  if (s.series != nullptr) s.series->observe_connect(Clock::now() - b->created);
  std::lock_guard lock(mu_);
  if (err) {
    log::pool().warn(
        "backend_connect_failed server={} db={} user={} sqlstate={} reason=\"{}\" purpose={}",
        s.cfg.name, pool.db.dbname, log::value(creds.user), err->sqlstate,
        log::escaped(err->message), probe != 0 ? "breaker_probe" : "warm_up");
  }
  if (err || closed_) {
    s.book.remove(id);
    if (err &&
        (!err->from_server || err->sqlstate.starts_with("57") || err->sqlstate.starts_with("53"))) {
      s.down_reason = err->message;
      connect_failed(s);
    } else if (probe != 0) {
      s.admission.end_probe(probe, Clock::now());  // no verdict: the next probe is due at once
    }
    s.wake_backend_waits();
    b->close();
    co_return;
  }
  s.book.connected(id, Clock::now(), true);
  s.admission.record_connect_success(Clock::now());
  pool.server_defaults = b->defaults;
  s.idle.push_back(std::move(b));
  s.wake_backend_waits();
}

void PoolManager::set_paused(const std::string& database, bool paused) {
  std::lock_guard lock(mu_);
  if (database.empty()) {
    all_paused_ = paused;
    if (!paused) paused_.clear();
  } else if (paused) {
    paused_.insert(database);
  } else {
    paused_.erase(database);
  }
  for (auto& [key, p] : pools_) {
    p->paused = all_paused_ || paused_.contains(p->database);
  }
}

bool PoolManager::pause_settled(const std::string& database) {
  std::lock_guard lock(mu_);
  bool busy = false;
  for (auto& [key, p] : pools_) {
    if (!database.empty() && p->database != database) continue;
    if (!p->paused) return true;
    const pools::PoolCounts counts = p->server->book.counts(p->book_id);
    busy = busy || counts.active > 0 || counts.connecting > 0;
  }
  return !busy;
}

void PoolManager::close_all() {
  std::vector<std::shared_ptr<Backend>> to_close;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    for (auto& [name, s] : servers_) {
      for (auto& [ticket, w] : s->waiters) {
        s->admission.cancel(ticket, Clock::now());
        w->outcome = Waiter::Outcome::Closed;
        asio::post(w->executor, [w = w] { w->timer.cancel(); });
      }
      s->waiters.clear();
      s->wake_backend_waits();  // they see closed_
      for (auto& b : s->idle) {
        s->book.remove(b->id);
        to_close.push_back(std::move(b));
      }
      s->idle.clear();
    }
  }
  for (auto& b : to_close) b->close();
}

void PoolManager::fill_snapshot(Snapshot& snap) {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  snap.process.traffic = reaped_traffic_;  // the caller adds the live pools' traffic
  for (auto& [name, s] : servers_) {
    ServerSnapshot out{.name = name,
                       .host = s->cfg.host,
                       .port = s->cfg.port,
                       .admission = s->admission.server_stats(now),
                       .connect_attempts = s->connect_attempts,
                       .connect_failures = s->connect_failures};
    std::vector<pools::BulkheadStats> bulkheads;
    for (pools::BulkheadId id = 0; id < s->admission.bulkhead_count(); ++id) {
      bulkheads.push_back(s->admission.stats(id, now));
    }
    std::stable_sort(bulkheads.begin(), bulkheads.end(), [](const auto& a, const auto& b) {
      return std::tie(a.retired, a.priority) < std::tie(b.retired, b.priority);
    });
    for (auto& b : bulkheads) snap.bulkheads.push_back(BulkheadSnapshot{name, std::move(b)});
    snap.servers.push_back(std::move(out));
  }
  for (auto& [key, p] : pools_) {
    const pools::PoolCounts counts = p->server->book.counts(p->book_id);
    for (ServerSnapshot& server : snap.servers) {
      if (server.name != p->server->cfg.name) continue;
      server.backends.connecting += counts.connecting;
      server.backends.idle += counts.idle;
      server.backends.active += counts.active;
    }
    PoolSnapshot ps{
        .database = p->database,
        .user = p->user,
        .server = p->server->cfg.name,
        .pool_mode = p->db.pool_mode == config::PoolMode::Transaction ? "transaction" : "session",
        .pool_size = p->db.pool_size,
        .backends = counts,
        .slots_in_use = counts.active,
        .paused = p->paused};
    const auto load = [](const std::atomic<std::uint64_t>& a) {
      return a.load(std::memory_order_relaxed);
    };
    ps.traffic = TrafficCounters{.transactions = load(p->traffic.transactions),
                                 .queries = load(p->traffic.queries),
                                 .bytes_in = load(p->traffic.bytes_in),
                                 .bytes_out = load(p->traffic.bytes_out),
                                 .transaction_ns = load(p->traffic.transaction_ns),
                                 .query_ns = load(p->traffic.query_ns),
                                 .wait_ns = load(p->traffic.wait_ns)};
    snap.pools.push_back(std::move(ps));
  }
  std::sort(snap.pools.begin(), snap.pools.end(), [](const auto& a, const auto& b) {
    return std::tie(a.database, a.user) < std::tie(b.database, b.user);
  });
}

std::vector<std::string> PoolManager::apply_config(const config::Config& cfg) {
  std::vector<std::string> errors;
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  for (auto& [name, s] : servers_) {
    auto it = cfg.servers.find(name);
    if (it == cfg.servers.end()) continue;  // a removed server keeps serving its sessions
    s->cfg.max_connect_attempts = it->second.max_connect_attempts;
    s->cfg.connect_timeout = it->second.connect_timeout;
    s->cfg.connect_retry_delay = it->second.connect_retry_delay;
    s->book.set_max_connecting(it->second.max_connect_attempts);
    s->cfg.max_connections = it->second.max_connections;
    s->book.set_max_connections(cfg.backend_capacity(it->second));
    s->wake_backend_waits();  // a raised limit may make room
    auto applied = s->admission.set_policy(policy_for(cfg, it->second), now);
    if (!applied) {
      for (const auto& e : applied.error()) errors.push_back("server \"" + name + "\": " + e);
      continue;
    }
    wake(*s, *applied);
  }
  for (auto& [key, p] : pools_) {
    const config::Database* db = cfg.find_database(p->database);
    if (db == nullptr || db->server != p->server->cfg.name) continue;
    // Sessions read the rest of the database's settings from the current config snapshot;
    // pool.db is read under mu_ only for what changes here.
    p->db.pool_size = db->pool_size;
    p->server->book.set_pool_settings(p->book_id,
                                      pools::PoolSettings{.lifetime = db->server_lifetime,
                                                          .idle_timeout = db->server_idle_timeout,
                                                          .min_size = db->min_pool_size});
    wake(*p->server, p->server->admission.set_group_limit(p->group, db->pool_size, now));
  }
  return errors;
}

}  // namespace sluice
