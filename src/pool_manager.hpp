// PoolManager: the one owner of all pool state, shared by every thread.
//
// It wraps the pure cores of pools/ (one BulkheadAdmission and one BackendBook per server) with a
// mutex, maps admission tickets to waiting sessions, and keeps the idle Backend objects. Critical
// sections are a few counter and queue operations; connecting, resetting and closing happen
// outside the lock. A grant to a waiter on another thread is a post to that waiter's executor
// (STYLE.md §2, shape (a)).
//
// Thread-safety: every public member may be called from any thread. Each io_context is assumed
// to be run by one thread (Runtime's model: sessions are pinned to their loop).
//
// The common transaction (bench/PROFILE.md C6, C7) takes mu_ twice: try_acquire_now() for a slot
// and an idle backend together, checkin() with the lease for both returns; acquire() and
// checkout() are the general (awaiting) path.
#pragma once

#include "config/config.hpp"
#include "pools/backend_book.hpp"
#include "pools/bulkhead_admission.hpp"
#include "src/asio_prelude.hpp"
#include "src/backend.hpp"
#include "src/known_statements.hpp"
#include "src/metrics.hpp"
#include "src/snapshot.hpp"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <variant>

namespace sluice {

class PoolManager;
struct ServerState;

// The `default` bulkhead a server has when the config does not define one: PgBouncer's single
// queue (reserved 0, max = backend slots, queue_depth = max_client_conn, max_wait =
// query_wait_timeout, served after every configured bulkhead).
config::Bulkhead implicit_default_bulkhead(const config::Config& cfg, const config::Server& server);

// One pool: the backends of one (database, user) pair. Created on first use by pool_for(), which
// the client session holds until it calls leave_pool(); removed by reap_idle_pools() once nobody
// has held it for pool_idle_timeout and it has no backend (pools/pool_reaper.hpp), so that the
// user names clients claim (auth_type = "trust") do not accumulate. A reference is valid while
// held, or while one of its backends is connecting.
struct Pool {
  std::string database;  // client-facing name
  std::string user;      // client user
  config::Database db;   // settings snapshot
  ServerState* server = nullptr;
  pools::PoolId book_id = 0;
  pools::GroupId group = 0;
  BackendCredentials creds;      // guarded by PoolManager::mu_
  bool paused = false;           // guarded by PoolManager::mu_
  std::uint32_t holders = 0;     // sessions holding it; guarded by PoolManager::mu_
  pools::TimePoint last_used{};  // when the last holder left; guarded by PoolManager::mu_
  // The ParameterStatus values a fresh backend of this pool reported (guarded by mu_): with them
  // a client logs in without taking a backend (in either pooling mode).
  std::optional<std::map<std::string, std::string>> server_defaults;
  // Definitions a backend of this pool has parsed (transaction pooling): a client's PQprepare of
  // one is answered without a backend. Thread-safe on its own.
  KnownStatements known_statements;
  // Traffic counters, added to by sessions without the lock.
  struct Traffic {
    std::atomic<std::uint64_t> transactions{0}, queries{0}, bytes_in{0}, bytes_out{0};
    std::atomic<std::uint64_t> transaction_ns{0}, query_ns{0}, wait_ns{0};
  } traffic;
};

// A client's bulkhead, decided once from its startup packet and address (before authentication).
struct ClientClass {
  ServerState* server = nullptr;
  pools::BulkheadId bulkhead = 0;
  std::string server_name;
  std::string name;  // the bulkhead's name
  std::chrono::milliseconds statement_timeout{0};
  std::chrono::milliseconds idle_transaction_timeout{0};
};

// What a client is told when admission refuses it: the SQLSTATE, message, DETAIL and HINT of the
// ErrorResponse (see docs/ADMISSION.md, "Refusal is an API").
struct AdmissionRefusal {
  std::string sqlstate;
  std::string message;
  std::string detail;
  std::string hint;
  pools::RefusalReason reason = pools::RefusalReason::QueueFull;
  std::chrono::milliseconds retry_after{0};
};

// Who a client is, for classification.
struct ClientInfo {
  std::string_view user;
  std::string_view database;
  std::string_view application_name;
  std::optional<asio::ip::address> address;  // none for Unix-socket clients
};

// The right to use one backend slot of a server; released when destroyed (as Completed) or by
// reset(outcome).
class Lease {
 public:
  Lease() = default;
  Lease(PoolManager* m, ServerState* s, pools::LeaseId id) : m_(m), s_(s), id_(id) {}
  Lease(Lease&& o) noexcept : m_(std::exchange(o.m_, nullptr)), s_(o.s_), id_(o.id_) {}
  Lease& operator=(Lease&& o) noexcept;
  ~Lease() { reset(); }
  void reset(pools::LeaseOutcome outcome = pools::LeaseOutcome::Completed);
  explicit operator bool() const { return m_ != nullptr; }

 private:
  friend class PoolManager;
  PoolManager* m_ = nullptr;
  ServerState* s_ = nullptr;
  pools::LeaseId id_ = 0;
};

class PoolManager {
 public:
  explicit PoolManager(const config::Config& cfg);
  ~PoolManager();
  // Backend connect durations go to `metrics` (call once, before any connect).
  void set_metrics(Metrics& metrics);

  // The pool for (db, user), created on first use. The caller holds it (it is not reaped) until
  // it calls leave_pool() once.
  Pool& pool_for(const config::Database& db, const std::string& user);
  void leave_pool(Pool& pool);
  // Removes the pools reap_pool_now() picks with `idle_timeout` (pool_idle_timeout), their
  // traffic added to the totals snapshots report (src/pool_reaper.cpp). Returns how many.
  std::size_t reap_idle_pools(pools::Duration idle_timeout);
  // Records credentials learned from a client's login (SCRAM keys); they let later connections,
  // warm-ups included, log in to the backend.
  void learn_credentials(Pool& pool, const BackendCredentials& creds);
  BackendCredentials credentials(const Pool& pool);
  std::optional<std::map<std::string, std::string>> server_defaults(const Pool& pool);

  // Classifies a client into a bulkhead of `db`'s server, before authentication: refused early
  // when the bulkhead is at max_clients or out of new-connection tokens, but nothing is counted
  // or taken (a client that merely claims to belong there spends nothing of it).
  std::variant<ClientClass, AdmissionRefusal> classify_client(const config::Config& cfg,
                                                              const config::Database& db,
                                                              const ClientInfo& who);
  // Once the client has authenticated: counts it against the bulkhead's max_clients and takes a
  // new-connection token (a refusal when the budget went meanwhile). If admitted, the caller
  // calls release_client() when it leaves.
  std::optional<AdmissionRefusal> admit_client(const ClientClass& cls);
  void release_client(const ClientClass& cls);

  struct Waiter;  // a session waiting for a slot (defined in the .cpp)
  // Where a queued session can be reached to abandon its wait (client gone, CancelRequest).
  using WaitHandle = std::weak_ptr<Waiter>;

  struct Cancelled {};   // a CancelRequest arrived while queued
  struct ClientGone {};  // the watched client socket closed while queued
  struct Closed {};      // shutting down
  using AcquireResult = std::variant<Lease, AdmissionRefusal, Cancelled, ClientGone, Closed>;
  // A slot of the pool's server for the client's bulkhead: granted at once, after waiting in the
  // bulkhead's queue (at most its max_wait), or refused. While queued, `watch` (the client's
  // socket, if given, and not otherwise being read) is watched for EOF, and `handle` is set so
  // that abandon() can reach the wait.
  awaitable<AcquireResult> acquire(Pool& pool, const ClientClass& cls, Socket* watch,
                                   WaitHandle* handle);
  // Ends a wait with Cancelled (if it is still waiting).
  void abandon(const WaitHandle& handle);

  // What try_acquire_now() could do at once.
  struct Immediate {
    Lease lease;                       // empty: nothing was taken (co_await acquire())
    std::shared_ptr<Backend> backend;  // with the lease: ready to use; empty: co_await checkout()
  };
  // acquire() and checkout() without a coroutine for the common case, under one lock: a slot
  // that admission grants at once (not paused, breaker closed, room in the bulkhead, the pool and
  // the server, a token if rate-limited) and, if the pool has one, an idle backend, preferably
  // one opened by `ex`'s event loop. Anything else (queueing, refusal, a half-open breaker, PAUSE,
  // shutdown) leaves every state unchanged and returns an empty lease: call acquire() then. A
  // backend returned goes back through checkin(), as one from checkout() does.
  Immediate try_acquire_now(Pool& pool, const ClientClass& cls, const asio::any_io_executor& ex);

  // With `lease` held for `cls`: an idle backend of the pool, or a new connection opened on the
  // caller's executor with `startup` parameters (src/backend_checkout.cpp). The client waits at
  // most until `since` (when it began waiting for its slot) plus its bulkhead's max_wait: for a
  // connect still running, or for room to open one (woken by the events that make room, never by
  // polling). Past it the lease is given back unused and the refusal (53300, max_wait) counted;
  // a connect that outlives its client leaves its backend idle in the pool.
  using CheckoutResult = std::variant<std::shared_ptr<Backend>, BackendError, AdmissionRefusal>;
  awaitable<CheckoutResult> checkout(Pool& pool, const ClientClass& cls, Lease& lease,
                                     pools::TimePoint since, const Params& startup,
                                     std::uint32_t max_message_size);
  // Returns a backend (kept idle if `reusable` and young enough, otherwise closed) and then
  // lease.reset(outcome), under one lock (the end of a transaction). `backend` may be null (only
  // the lease is returned).
  void checkin(Pool& pool, std::shared_ptr<Backend> backend, bool reusable, Lease& lease,
               pools::LeaseOutcome outcome);

  // Periodic upkeep (call about once a second from one thread): closes idle backends past their
  // idle timeout or lifetime and opens warm-up connections for min_pool_size.
  void maintain(const asio::any_io_executor& ex, std::uint32_t max_message_size);
  // The circuit breakers' background prober (call from one thread, again at the time it returns):
  // for every server whose breaker has a probe due, a connect on `ex` without a client, with the
  // credentials of one of its pools, so that recovery does not wait for client traffic. A success
  // closes the breaker and leaves an idle backend. Returns when a probe is next due, at most a
  // second away, and no later than a breaker's delay while a due probe could not start (no
  // credentials known yet, no room for a connection).
  std::chrono::steady_clock::time_point probe_servers(const asio::any_io_executor& ex,
                                                      std::uint32_t max_message_size);
  // PAUSE / RESUME (database "" = all): while paused, a database's new transactions wait (up to
  // their bulkhead's max_wait) instead of taking a backend; running ones finish.
  void set_paused(const std::string& database, bool paused);
  // True when no pool of `database` ("" = all) has a backend in use or being connected, or when
  // one of them is no longer paused (a RESUME came first).
  bool pause_settled(const std::string& database);

  // Refuses every waiter and every later acquisition; closes idle backends.
  void close_all();

  // Pools, servers and bulkheads, read under one lock (the rest of the snapshot is the caller's).
  void fill_snapshot(Snapshot& snap);
  // Applies a reloaded config: bulkhead policies, pool sizes, server limits. Sessions keep running.
  // Returns the errors of policies that could not be applied (their old policy stays).
  std::vector<std::string> apply_config(const config::Config& cfg);

 private:
  // Returns a backend alone (for a lease of no manager): kept idle or closed; takes mu_.
  void checkin(Pool& pool, std::shared_ptr<Backend> backend, bool reusable);
  friend class Lease;
  void release(ServerState* s, pools::LeaseId id, pools::LeaseOutcome outcome);
  void wake(ServerState& s, const std::vector<pools::HandOff>& granted);
  void reject(ServerState& s, const std::vector<pools::Rejection>& rejected);
  void connect_failed(ServerState& s);
  // Called with mu_ held: whether `backend` may go back to the idle list.
  bool keep_idle(ServerState& s, Backend& backend, bool reusable);
  // An idle backend just taken from the pool: usable without another look at its socket, or
  // (after one non-blocking peek) still idle and silent. A dead one is dropped here.
  bool still_usable(ServerState& s, const std::shared_ptr<Backend>& backend);
  std::shared_ptr<Backend> new_backend(const asio::any_io_executor& ex, ServerState& s,
                                       pools::BackendId id);
  struct PendingConnect;  // a connect its client waits for apart from it (backend_checkout.cpp)
  // Opens backend `id` for a client that may stop waiting for it (`pending`); left idle then.
  awaitable<void> connect_apart(Pool& pool, std::shared_ptr<Backend> b,
                                std::shared_ptr<PendingConnect> pending, config::Server server_cfg,
                                BackendCredentials creds, Params startup,
                                std::uint32_t max_message_size);
  // Called with mu_ held, once a client's connect has ended: the book, the breaker, the metrics
  // and the log. True if `b` connected; it is then Active (`idle` false) or Idle (`idle` true:
  // its client gave up).
  bool end_connect(Pool& pool, Backend& b, const std::optional<BackendError>& err,
                   const BackendCredentials& creds, const Params& startup, bool idle);
  // Called with mu_ held: gives `lease` back unused and describes the refusal of a client that
  // waited `waited` for a backend (max_wait counted by the admission core).
  AdmissionRefusal refuse_checkout(ServerState& s, const ClientClass& cls, Lease& lease,
                                   std::chrono::nanoseconds waited, bool connecting);
  // Opens backend `id` of `pool` to go idle (a warm-up, or the breaker's background `probe`).
  awaitable<void> warm_up(Pool& pool, pools::BackendId id, std::uint32_t max_message_size,
                          pools::ProbeId probe = 0);

  std::mutex mu_;  // guards everything below and the mutable parts of Pool and ServerState
  std::unordered_map<std::string, std::unique_ptr<ServerState>> servers_;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools_;  // key: database + '\0' + user
  TrafficCounters reaped_traffic_;  // of the pools reap_idle_pools() removed
  bool closed_ = false;
  bool all_paused_ = false;
  std::set<std::string> paused_;  // databases (each Pool's `paused` follows it)
};

}  // namespace sluice
