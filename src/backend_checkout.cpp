// PoolManager::checkout: a backend for a client that holds a slot, within its bulkhead's max_wait.
//
// The client's wait for a slot (acquire()) and for a backend share one budget: max_wait from when
// it began waiting for the slot. Three cases:
//  - an idle backend of the pool: taken at once;
//  - room to open a connection: when connect_timeout ends before the budget does, the connect
//    runs in the client's coroutine (the common case: max_wait defaults to query_wait_timeout,
//    2 min); otherwise in a coroutine of its own (connect_apart), which the client waits for
//    until its deadline. A connect that outlives its client is not wasted: its backend goes idle
//    in the pool, as if checked in; a failure is accounted as any failed connect;
//  - no room (connections being opened fill the server or max_connect_attempts): the client
//    sleeps in ServerState::backend_waits until an event that may make room wakes it, then picks
//    again. No polling (STYLE.md §11: every wait has a named budget).
// Past the deadline the slot is given back unused and the client refused with 53300 (max_wait),
// counted in its bulkhead's refusals by the admission core (BulkheadAdmission::refuse_lease).
#include "src/log.hpp"
#include "src/pool_manager.hpp"
#include "src/server_state.hpp"
#include "src/task_failure.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sluice {

using pools::Clock;

// The client side of a connect run apart from it. Both coroutines run on the client's executor;
// `state` and the results are guarded by mu_. Whoever ends the wait first decides: the connect
// (Done, the client's timer cancelled) or the client's deadline (Abandoned: the backend goes idle).
struct PoolManager::PendingConnect {
  enum class State { Waiting, Done, Abandoned };
  explicit PendingConnect(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;  // the client's deadline; touched only on the client's executor
  State state = State::Waiting;
  std::shared_ptr<Backend> backend;   // Done: the connected backend
  std::optional<BackendError> error;  // Done: why the connect failed
};

namespace {

std::string ms_of(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

bool server_trouble(const BackendError& err) {
  return !err.from_server || err.sqlstate.starts_with("57") || err.sqlstate.starts_with("53");
}

}  // namespace

awaitable<PoolManager::CheckoutResult> PoolManager::checkout(Pool& pool, const ClientClass& cls,
                                                             Lease& lease, pools::TimePoint since,
                                                             const Params& startup,
                                                             std::uint32_t max_message_size) {
  auto ex = co_await asio::this_coro::executor;
  ServerState& s = *pool.server;
  // The caller's event loop, so that it gets back a backend whose socket that loop serves.
  const std::uint64_t home = loop_tag(ex);
  for (;;) {
    std::shared_ptr<Backend> victim;
    std::shared_ptr<Backend> backend;
    std::shared_ptr<BackendWait> room_wait;
    pools::Pick pick;
    BackendCredentials creds;
    config::Server server_cfg;
    pools::TimePoint deadline;
    {
      std::lock_guard lock(mu_);
      const auto now = Clock::now();
      deadline = since + s.admission.bulkhead_policy(cls.bulkhead).max_wait;
      pick = s.book.pick(pool.book_id, now, home);
      if (pick.kind == pools::Pick::Kind::Idle) {
        backend = s.take_idle(pick.id);
        if (!backend) {  // never without its object; forget it if so
          s.book.remove(pick.id);
          continue;
        }
      } else if (pick.kind == pools::Pick::Kind::Busy) {
        if (closed_) {
          co_return BackendError{.sqlstate = "57P01",
                                 .message = "sluice: the pooler is shutting down"};
        }
        if (now >= deadline) co_return refuse_checkout(s, cls, lease, now - since, false);
        room_wait = std::make_shared<BackendWait>(ex);
        s.backend_waits.push_back(room_wait);
      } else {
        if (pick.kind == pools::Pick::Kind::Evict) victim = s.take_idle(pick.victim);
        ++s.connect_attempts;
        creds = pool.creds;
        server_cfg = s.cfg;
      }
    }
    if (victim) victim->close();
    if (backend) {
      if (still_usable(s, backend)) co_return backend;
      continue;  // it was dropped: pick again
    }
    if (room_wait) {
      // Connections being opened fill the server: wait for one to end (or anything else that
      // makes room), at most until the deadline.
      room_wait->timer.expires_at(deadline);
      error_code ec;
      co_await room_wait->timer.async_wait(ec_token(ec));
      std::lock_guard lock(mu_);
      if (room_wait->woken) continue;  // pick again
      std::erase(s.backend_waits, room_wait);
      co_return refuse_checkout(s, cls, lease, Clock::now() - since, false);
    }

    auto b = new_backend(ex, s, pick.id);
    const auto connect_timeout = server_cfg.connect_timeout;
    if (connect_timeout.count() > 0 && Clock::now() + connect_timeout <= deadline) {
      // The connect ends (connect_timeout) before the client's budget: no need to run it apart.
      auto err = co_await connect_backend(*b, server_cfg, pool.db.dbname, creds, startup,
                                          max_message_size);
      std::lock_guard lock(mu_);
      if (!end_connect(pool, *b, err, creds, startup, false)) co_return *err;
      co_return b;
    }
    auto pending = std::make_shared<PendingConnect>(ex);
    pending->timer.expires_at(deadline);
    asio::co_spawn(ex,
                   connect_apart(pool, b, pending, std::move(server_cfg), std::move(creds), startup,
                                 max_message_size),
                   on_task_exit(Task::BackendConnect));
    error_code ec;
    co_await pending->timer.async_wait(ec_token(ec));
    std::lock_guard lock(mu_);
    if (pending->state == PendingConnect::State::Waiting) {  // the deadline came first
      pending->state = PendingConnect::State::Abandoned;
      co_return refuse_checkout(s, cls, lease, Clock::now() - since, true);
    }
    if (pending->error) co_return *pending->error;
    co_return std::move(pending->backend);
  }
}

awaitable<void> PoolManager::connect_apart(Pool& pool, std::shared_ptr<Backend> b,
                                           std::shared_ptr<PendingConnect> pending,
                                           config::Server server_cfg, BackendCredentials creds,
                                           Params startup, std::uint32_t max_message_size) {
  // `pool` stays valid: a pool with a backend connecting is never reaped.
  auto err =
      co_await connect_backend(*b, server_cfg, pool.db.dbname, creds, startup, max_message_size);
  ServerState& s = *pool.server;
  bool close = false;
  {
    std::lock_guard lock(mu_);
    const bool waited_for = pending->state == PendingConnect::State::Waiting;
    const bool ok = end_connect(pool, *b, err, creds, startup, !waited_for);
    if (waited_for) {
      pending->state = PendingConnect::State::Done;
      if (ok) pending->backend = b;
      pending->error = err;
      pending->timer.cancel();  // on this executor: the client's
    } else if (ok && !closed_) {
      // Its client gave up: the backend is the pool's, as if checked in.
      s.idle.push_back(b);
      log::pool().debug("backend_kept reason=client_gave_up server={} pid={}", s.cfg.name, b->pid);
    } else {
      if (ok) s.book.remove(b->id);
      close = true;
    }
  }
  if (close) b->close();
}

bool PoolManager::end_connect(Pool& pool, Backend& b, const std::optional<BackendError>& err,
                              const BackendCredentials& creds, const Params& startup, bool idle) {
  ServerState& s = *pool.server;
  if (s.series != nullptr) s.series->observe_connect(Clock::now() - b.created);
  // The connect's end makes room (max_connect_attempts) or frees its place (failure).
  s.wake_backend_waits();
  if (err) {
    s.book.remove(b.id);
    if (server_trouble(*err)) {
      s.down_reason = err->message + (err->detail.empty() ? "" : ": " + err->detail);
      connect_failed(s);
    }
    log::pool().warn("backend_connect_failed server={} db={} user={} sqlstate={} reason=\"{}\"",
                     s.cfg.name, pool.db.dbname, log::value(creds.user), err->sqlstate,
                     log::escaped(err->message));
    return false;
  }
  s.book.connected(b.id, Clock::now(), idle);
  s.admission.record_connect_success(Clock::now());
  if (startup.empty()) pool.server_defaults = b.defaults;
  log::pool().debug("backend_connected server={} db={} user={} pid={}", s.cfg.name, pool.db.dbname,
                    log::value(creds.user), b.pid);
  return true;
}

AdmissionRefusal PoolManager::refuse_checkout(ServerState& s, const ClientClass& cls, Lease& lease,
                                              std::chrono::nanoseconds waited, bool connecting) {
  const auto now = Clock::now();
  std::optional<pools::LeaseRefusal> refused;
  if (lease.m_ == this) {
    lease.m_ = nullptr;  // given back here, unused
    refused = s.admission.refuse_lease(lease.id_, pools::RefusalReason::MaxWait, now);
  }
  if (!refused) {  // no lease of ours (cannot happen): refuse all the same
    refused = pools::LeaseRefusal{.refusal = {.reason = pools::RefusalReason::MaxWait,
                                              .retry_after = std::chrono::milliseconds(100),
                                              .bulkhead = cls.bulkhead}};
  }
  wake(s, refused->handed_off);
  AdmissionRefusal out = describe_refusal(s, refused->refusal);
  // The queue figures as in every bulkhead refusal, then what the wait was for.
  out.detail += "; waited " + ms_of(waited) + " ms of max_wait " +
                ms_of(s.admission.bulkhead_policy(cls.bulkhead).max_wait) +
                " ms for a backend connection: " +
                (connecting ? "its connect to the server is still running"
                            : "connections being opened fill the server");
  // The session logs the refusal (transaction_refused), sampled like the others.
  log::pool().debug("checkout_refused server={} bulkhead={} waited_ms={} connecting={}", s.cfg.name,
                    cls.name, ms_of(waited), connecting);
  return out;
}

}  // namespace sluice
