// PoolManager: the one owner of all pool state, shared by every thread.
//
// It wraps the pure cores of pools/ (one Admission and one BackendBook per server) with a mutex,
// maps admission tickets to waiting sessions, and keeps the idle Backend objects. Critical
// sections are a few counter and queue operations; connecting, resetting and closing happen
// outside the lock. A grant to a waiter on another thread is a post to that waiter's executor
// (STYLE.md §2, shape (a)).
//
// Thread-safety: every public member may be called from any thread.
#pragma once

#include "config/config.hpp"
#include "pools/admission.hpp"
#include "pools/backend_book.hpp"
#include "src/asio_prelude.hpp"
#include "src/backend.hpp"

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>

namespace sluice {

class PoolManager;
struct ServerState;

// One pool: the backends of one (database, user) pair. Created on first use, never destroyed
// while the process runs (their number is bounded by configured databases x known users).
struct Pool {
  std::string database;  // client-facing name
  std::string user;      // client user
  config::Database db;   // settings snapshot
  ServerState* server = nullptr;
  pools::PoolId book_id = 0;
  pools::GroupId group = 0;
  BackendCredentials creds;  // guarded by PoolManager::mu_
};

// The right to use one backend slot of a server; released when destroyed.
class Lease {
 public:
  Lease() = default;
  Lease(PoolManager* m, ServerState* s, pools::LeaseId id) : m_(m), s_(s), id_(id) {}
  Lease(Lease&& o) noexcept : m_(std::exchange(o.m_, nullptr)), s_(o.s_), id_(o.id_) {}
  Lease& operator=(Lease&& o) noexcept;
  ~Lease() { reset(); }
  void reset();
  explicit operator bool() const { return m_ != nullptr; }

 private:
  PoolManager* m_ = nullptr;
  ServerState* s_ = nullptr;
  pools::LeaseId id_ = 0;
};

struct PoolStats {
  std::string database, user, server;
  pools::PoolCounts backends;
  pools::GroupStats slots;
};

class PoolManager {
 public:
  explicit PoolManager(const config::Config& cfg);
  ~PoolManager();

  // The pool for (db, user), created on first use.
  Pool& pool_for(const config::Database& db, const std::string& user);
  // Records credentials learned from a client's login (SCRAM keys); they let later connections,
  // warm-ups included, log in to the backend.
  void learn_credentials(Pool& pool, const BackendCredentials& creds);
  BackendCredentials credentials(const Pool& pool);

  enum class AcquireFailure { TimedOut, QueueFull, Closed };
  // Waits up to `wait` for a slot of the pool's server.
  awaitable<std::variant<Lease, AcquireFailure>> acquire(Pool& pool,
                                                         std::chrono::milliseconds wait);

  // With a slot held: an idle backend of the pool, or a new connection opened on the caller's
  // executor with `startup` parameters.
  awaitable<std::variant<std::shared_ptr<Backend>, BackendError>> checkout(
      Pool& pool, const Params& startup, std::uint32_t max_message_size);
  // Returns a backend: kept idle if `reusable` and young enough, otherwise closed.
  void checkin(Pool& pool, std::shared_ptr<Backend> backend, bool reusable);

  // Periodic upkeep (call about once a second from one thread): closes idle backends past their
  // idle timeout or lifetime and opens warm-up connections for min_pool_size.
  void maintain(const asio::any_io_executor& ex, std::uint32_t max_message_size);
  // Refuses every waiter and every later acquisition; closes idle backends.
  void close_all();

  std::vector<PoolStats> stats();

  struct Waiter;  // a session waiting for a slot (defined in the .cpp)

 private:
  friend class Lease;
  void release(ServerState* s, pools::LeaseId id);
  void wake(ServerState& s, const std::vector<pools::Grant>& granted);
  awaitable<void> warm_up(Pool& pool, pools::BackendId id, std::uint32_t max_message_size);

  std::mutex mu_;  // guards everything below and the mutable parts of Pool and ServerState
  std::unordered_map<std::string, std::unique_ptr<ServerState>> servers_;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools_;  // key: database + '\0' + user
  bool closed_ = false;
};

}  // namespace sluice
