// PoolManager driven from several threads, one io_context per thread as Runtime runs them
// (STYLE.md §2 shape (a), §9): the global limits hold, a grant racing a deadline never leaks a
// slot, and close_all() refuses waiters on every thread. Meant to be run under TSan as well
// (tests/run.sh --tsan). No PostgreSQL: only acquire() is used, never checkout().
//
// A wait limit is a bulkhead's max_wait, so the config has one bulkhead per wait the test uses
// (all sharing the server's slots, no reservations); each acquisition runs in the bulkhead of its
// wait. The pool's pool_size (3) is the limit that binds, below the server's 4 slots.
//
// Catch2 is not thread-safe, so the coroutines only count into atomics; the test thread asserts.
#include "src/asio_prelude.hpp"  // before any other Asio use
#include "src/pool_manager.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sluice::AdmissionRefusal;
using sluice::awaitable;
using sluice::ClientClass;
using sluice::Lease;
using sluice::Pool;
using sluice::PoolManager;
using sluice::use_awaitable;
using Clock = std::chrono::steady_clock;
using Reason = sluice::pools::RefusalReason;
namespace asio = sluice::asio;

constexpr std::size_t kThreads = 4;
constexpr std::uint32_t kPoolSize = 3;  // min(pool_size 3, max_connections 4)

// Every wait the test uses: one bulkhead each.
std::vector<std::chrono::milliseconds> all_waits() {
  std::vector<std::chrono::milliseconds> waits{20ms};
  for (int ms = 25; ms <= 40; ++ms) waits.emplace_back(ms);
  for (auto w : {1000ms, 3000ms, 5000ms}) waits.push_back(w);
  return waits;
}

std::string bulkhead_name(std::chrono::milliseconds wait) {
  return "w" + std::to_string(wait.count());
}

sluice::config::Config make_config() {
  sluice::config::Config cfg;
  cfg.max_client_conn = 10000;
  sluice::config::Server server;
  server.name = "main";
  server.max_connections = 4;
  cfg.servers.emplace(server.name, server);
  sluice::config::Database db;
  db.name = "app";
  db.server = "main";
  db.dbname = "app";
  db.pool_size = kPoolSize;
  db.pool_mode = sluice::config::PoolMode::Session;
  cfg.databases.emplace(db.name, db);
  // Clients are classified by application_name "w<ms>" into the bulkhead of that wait.
  for (auto wait : all_waits()) {
    sluice::config::Bulkhead b;
    b.name = bulkhead_name(wait);
    b.server = "main";
    b.reserved = 0;
    b.max = 4;
    b.queue_depth = 1000;
    b.max_wait = wait;
    b.adaptive_lifo = false;  // first come, first served within a bulkhead
    b.match.application_name = {b.name};
    cfg.bulkheads.push_back(std::move(b));
  }
  return cfg;
}

// The ClientClass of each wait, classified once on the test thread before any coroutine runs;
// read-only afterwards.
class Classes {
 public:
  Classes(PoolManager& pm, const sluice::config::Config& cfg) {
    const auto& db = cfg.databases.at("app");
    for (auto wait : all_waits()) {
      const std::string name = bulkhead_name(wait);
      auto r = pm.classify_client(
          cfg, db,
          sluice::ClientInfo{.user = "alice", .database = "app", .application_name = name});
      REQUIRE(std::holds_alternative<ClientClass>(r));
      REQUIRE(std::get<ClientClass>(r).name == name);
      by_wait_.emplace(wait, std::get<ClientClass>(std::move(r)));
    }
  }
  const ClientClass& operator()(std::chrono::milliseconds wait) const { return by_wait_.at(wait); }

 private:
  std::map<std::chrono::milliseconds, ClientClass> by_wait_;
};

// One io_context per thread, each run by its own std::thread; counts the coroutines spawned on
// them until they finish.
class Loops {
 public:
  explicit Loops(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      contexts_.push_back(std::make_unique<asio::io_context>(1));
      guards_.push_back(asio::make_work_guard(*contexts_.back()));
    }
    for (auto& c : contexts_) threads_.emplace_back([ctx = c.get()] { ctx->run(); });
  }
  Loops(const Loops&) = delete;
  Loops& operator=(const Loops&) = delete;
  ~Loops() {
    if (pending_ != 0) {
      for (auto& c : contexts_) c->stop();  // a failed test: do not wait for stuck coroutines
    }
    join();
  }

  void spawn(std::size_t i, awaitable<void> op) {
    ++pending_;
    asio::co_spawn(*contexts_.at(i % contexts_.size()), std::move(op),
                   [this](std::exception_ptr e) {
                     if (e) ++escaped_;
                     --pending_;
                   });
  }
  int pending() const { return pending_; }
  int escaped() const { return escaped_; }
  // Lets each io_context run out of work (posted timer cancels included), then joins.
  void join() {
    guards_.clear();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::atomic<int> pending_{0};
  std::atomic<int> escaped_{0};
};

// Polls `done` from the test thread; false if it did not become true within `limit`.
template <typename Pred>
bool wait_until(Pred done, std::chrono::milliseconds limit) {
  auto end = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// The server's slot counters, read under the manager's lock.
struct Slots {
  std::uint32_t in_use = 0;
  std::uint32_t waiting = 0;
  std::uint64_t granted_total = 0;  // summed over the bulkheads
};

Slots slots(PoolManager& pm) {
  sluice::Snapshot snap;
  pm.fill_snapshot(snap);
  REQUIRE(snap.servers.size() == 1);
  Slots s{.in_use = snap.servers[0].admission.in_use, .waiting = snap.servers[0].admission.waiters};
  for (const auto& b : snap.bulkheads) s.granted_total += b.stats.admitted;
  return s;
}

// How an acquisition failed, as the test counts it.
enum class Failure {
  TimedOut,      // refused with max_wait: waited the bulkhead's max_wait in its queue
  QueueFull,     // refused at once: the bulkhead's queue was full
  EarlyRefused,  // refused at once by prediction (predicted_wait, queue_age)
  Closed,        // close_all()
  Other,         // anything this test never provokes (rate limit, breaker, cancel, ...)
};
using Acquired = std::variant<Lease, Failure>;

// PoolManager::acquire without socket watch or wait handle, mapped onto Lease or Failure.
awaitable<Acquired> acquire(PoolManager& pm, Pool& pool, const ClientClass& cls) {
  auto r = co_await pm.acquire(pool, cls, nullptr, nullptr);
  if (auto* lease = std::get_if<Lease>(&r)) co_return Acquired(std::move(*lease));
  if (std::holds_alternative<PoolManager::Closed>(r)) co_return Acquired(Failure::Closed);
  if (auto* refusal = std::get_if<AdmissionRefusal>(&r)) {
    switch (refusal->reason) {
      case Reason::MaxWait:
        co_return Acquired(Failure::TimedOut);
      case Reason::QueueFull:
        co_return Acquired(Failure::QueueFull);
      case Reason::PredictedWait:
      case Reason::QueueAge:
        co_return Acquired(Failure::EarlyRefused);
      default:
        break;
    }
  }
  co_return Acquired(Failure::Other);
}

// What the coroutines saw, counted from every thread.
struct Tally {
  std::atomic<int> held{0};  // leases held right now
  std::atomic<int> max_held{0};
  std::atomic<int> granted{0};
  std::atomic<int> granted_after_deadline{0};  // a Lease although the wait had run out
  std::atomic<int> timed_out{0};
  std::atomic<int> early_timeouts{0};  // TimedOut before the wait had run out
  std::atomic<int> early_refused{0};   // refused at once by prediction, never queued
  std::atomic<int> closed{0};
  std::atomic<int> queue_full{0};
  std::atomic<int> other{0};

  void hold() {
    int now = ++held;
    int seen = max_held.load();
    while (now > seen && !max_held.compare_exchange_weak(seen, now)) {
    }
  }
  // Called before the lease is dropped, so the next holder cannot be counted alongside it.
  void drop() { --held; }
  // Acquisitions that have ended, whichever way.
  int outcomes() const { return granted + timed_out + early_refused + closed + queue_full + other; }
  void failed(Failure f) {
    switch (f) {
      case Failure::TimedOut:
        ++timed_out;
        break;
      case Failure::Closed:
        ++closed;
        break;
      case Failure::QueueFull:
        ++queue_full;
        break;
      case Failure::EarlyRefused:
        ++early_refused;
        break;
      case Failure::Other:
        ++other;
        break;
    }
  }
};

awaitable<void> pause(std::chrono::microseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

// Holds a slot for `d` once granted.
awaitable<void> use_lease(Tally& t, Acquired& r, std::chrono::microseconds d) {
  Lease& lease = std::get<Lease>(r);
  t.hold();
  co_await pause(d);
  t.drop();
  lease.reset();
}

// Acquires `rounds` times, holding each lease 0-1 ms.
awaitable<void> churn(PoolManager& pm, Pool& pool, const ClientClass& cls, Tally& t, unsigned seed,
                      int rounds) {
  std::minstd_rand rng(seed);
  for (int i = 0; i < rounds; ++i) {
    auto r = co_await acquire(pm, pool, cls);
    if (auto* f = std::get_if<Failure>(&r)) {
      t.failed(*f);
      continue;
    }
    ++t.granted;
    co_await use_lease(t, r, std::chrono::microseconds(rng() % 1001));
  }
}

// As churn(), but each acquisition tries PoolManager::try_acquire_now() first and awaits
// acquire() only when that takes nothing; half the leases go back through the combined
// checkin() (no backend), half through Lease::reset().
awaitable<void> churn_immediate(PoolManager& pm, Pool& pool, const ClientClass& cls, Tally& t,
                                unsigned seed, int rounds, std::atomic<int>& immediate) {
  std::minstd_rand rng(seed);
  auto ex = co_await asio::this_coro::executor;
  for (int i = 0; i < rounds; ++i) {
    PoolManager::Immediate now = pm.try_acquire_now(pool, cls, ex);
    Acquired r = Failure::Other;
    if (now.lease) {
      ++immediate;
      r = std::move(now.lease);
    } else {
      r = co_await acquire(pm, pool, cls);
    }
    if (auto* f = std::get_if<Failure>(&r)) {
      t.failed(*f);
      continue;
    }
    ++t.granted;
    t.hold();
    co_await pause(std::chrono::microseconds(rng() % 1001));
    t.drop();
    if (rng() % 2 == 0) {
      pm.checkin(pool, nullptr, false, std::get<Lease>(r), sluice::pools::LeaseOutcome::Completed);
    } else {
      std::get<Lease>(r).reset();
    }
  }
}

// Acquires until refused (Closed after close_all), holding each lease 0-1 ms.
awaitable<void> churn_until_refused(PoolManager& pm, Pool& pool, const ClientClass& cls, Tally& t,
                                    unsigned seed) {
  std::minstd_rand rng(seed);
  for (;;) {
    auto r = co_await acquire(pm, pool, cls);
    if (auto* f = std::get_if<Failure>(&r)) {
      t.failed(*f);
      co_return;
    }
    ++t.granted;
    co_await use_lease(t, r, std::chrono::microseconds(rng() % 1001));
  }
}

// Takes a slot (free at once) and keeps it until `until`.
awaitable<void> block(PoolManager& pm, Pool& pool, const ClientClass& cls, Tally& t,
                      Clock::time_point until) {
  auto r = co_await acquire(pm, pool, cls);
  if (auto* f = std::get_if<Failure>(&r)) {
    t.failed(*f);
    co_return;
  }
  ++t.granted;
  t.hold();
  asio::steady_timer timer(co_await asio::this_coro::executor, until);
  co_await timer.async_wait(use_awaitable);
  t.drop();
}

// One acquisition in `cls`, whose max_wait is `wait`; a granted lease is held for `hold`.
awaitable<void> wait_once(PoolManager& pm, Pool& pool, const ClientClass& cls, Tally& t,
                          std::chrono::milliseconds wait, std::chrono::microseconds hold) {
  auto start = Clock::now();
  auto r = co_await acquire(pm, pool, cls);
  auto waited = Clock::now() - start;
  if (auto* f = std::get_if<Failure>(&r)) {
    t.failed(*f);
    if (*f == Failure::TimedOut && waited < wait) ++t.early_timeouts;
    co_return;
  }
  ++t.granted;
  if (waited >= wait) ++t.granted_after_deadline;
  co_await use_lease(t, r, hold);
}

// Acquires `n` slots one after the other, each in `cls` (a short wait), and holds them all at once.
awaitable<void> take_n(PoolManager& pm, Pool& pool, const ClientClass& cls, Tally& t, int n) {
  std::vector<Acquired> held;
  for (int i = 0; i < n; ++i) {
    held.push_back(co_await acquire(pm, pool, cls));
    if (auto* f = std::get_if<Failure>(&held.back())) {
      t.failed(*f);
    } else {
      ++t.granted;
      t.hold();
    }
  }
  for (auto& r : held) {
    if (std::holds_alternative<Lease>(r)) t.drop();
  }
}

// Waits (at most 8 s) for every coroutine of `loops` to finish while sampling the slots in use
// from the test thread (fill_snapshot() takes the same lock as the loops), joins the threads and
// returns the most slots seen in use at once.
std::uint32_t join_sampling_in_use(Loops& loops, PoolManager& pm) {
  std::uint32_t max_in_use = 0;
  const bool finished = wait_until(
      [&] {
        max_in_use = std::max(max_in_use, slots(pm).in_use);
        return loops.pending() == 0;
      },
      8s);
  REQUIRE(finished);
  loops.join();
  CHECK(loops.escaped() == 0);
  return max_in_use;
}

}  // namespace

TEST_CASE("leases taken from four threads never exceed the pool's limit", "[src][threads]") {
  auto cfg = make_config();
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  const Classes classes(pm, cfg);
  Tally t;
  constexpr int kPerThread = 50;
  constexpr int kRounds = 20;
  {
    Loops loops(kThreads);
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(
            i, churn(pm, pool, classes(5s), t, static_cast<unsigned>(i * 1000 + k + 1), kRounds));
      }
    }
    CHECK(join_sampling_in_use(loops, pm) <= kPoolSize);
  }
  constexpr int kTotal = static_cast<int>(kThreads) * kPerThread * kRounds;
  CHECK(t.granted == kTotal);
  CHECK(t.timed_out == 0);
  // At most ~200 waiters x ~0.5 ms hold / 4 slots: far below the 5 s max_wait.
  CHECK(t.early_refused == 0);
  CHECK(t.closed == 0);
  CHECK(t.queue_full == 0);
  CHECK(t.other == 0);
  CHECK(t.max_held <= static_cast<int>(kPoolSize));
  CHECK(t.max_held >= 1);
  CHECK(t.held == 0);
  auto s = slots(pm);
  CHECK(s.in_use == 0);
  CHECK(s.waiting == 0);
  CHECK(s.granted_total == static_cast<std::uint64_t>(kTotal));
}

TEST_CASE("the immediate path and the combined check-in keep the limits across four threads",
          "[src][threads]") {
  auto cfg = make_config();
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  const Classes classes(pm, cfg);
  Tally t;
  std::atomic<int> immediate{0};
  constexpr int kPerThread = 40;
  constexpr int kRounds = 20;
  {
    Loops loops(kThreads);
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(
            i, churn_immediate(pm, pool, classes(5s), t, static_cast<unsigned>(i * 1000 + k + 7),
                               kRounds, immediate));
      }
    }
    CHECK(join_sampling_in_use(loops, pm) <= kPoolSize);
  }
  constexpr int kTotal = static_cast<int>(kThreads) * kPerThread * kRounds;
  CHECK(t.granted == kTotal);
  CHECK(t.timed_out + t.early_refused + t.closed + t.queue_full + t.other == 0);
  CHECK(t.max_held <= static_cast<int>(kPoolSize));
  CHECK(t.held == 0);
  CHECK(immediate > 0);
  CHECK(immediate < kTotal);  // with 160 coroutines on 3 slots, most wait
  auto s = slots(pm);
  CHECK(s.in_use == 0);
  CHECK(s.waiting == 0);
  CHECK(s.granted_total == static_cast<std::uint64_t>(kTotal));
}

TEST_CASE("waiters that time out never leak a slot, even when a grant races the deadline",
          "[src][threads]") {
  auto cfg = make_config();
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  const Classes classes(pm, cfg);
  Loops loops(kThreads);

  SECTION("every waiter times out while the slots are held") {
    Tally blockers;
    auto until = Clock::now() + 200ms;
    for (std::size_t i = 0; i < kPoolSize; ++i) {
      loops.spawn(i, block(pm, pool, classes(1s), blockers, until));
    }
    REQUIRE(wait_until([&] { return blockers.held == static_cast<int>(kPoolSize); }, 2s));

    Tally waiters;
    constexpr int kPerThread = 20;
    constexpr int kWaiters = static_cast<int>(kThreads) * kPerThread;
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(i, wait_once(pm, pool, classes(20ms), waiters, 20ms, 0us));
      }
    }
    REQUIRE(wait_until([&] { return waiters.outcomes() == kWaiters; }, 2s));
    // Nobody is served while the slots are held. w20 has no hold time measured, so nothing is
    // refused by predicted_wait; a waiter that arrives once the oldest has waited 20 ms (only on a
    // very slow run) is refused at once by queue_age instead of waiting its own 20 ms.
    CHECK(waiters.granted == 0);
    CHECK(waiters.timed_out + waiters.early_refused == kWaiters);
    CHECK(waiters.timed_out > 0);
    CHECK(waiters.early_timeouts == 0);
    CHECK(waiters.queue_full == 0);
    CHECK(waiters.other == 0);
    auto during = slots(pm);
    CHECK(during.waiting == 0);
    CHECK(during.in_use <= kPoolSize);  // the blockers, unless their 200 ms are already up

    REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
    CHECK(blockers.granted == static_cast<int>(kPoolSize));
  }

  SECTION("grants and timeouts racing near the release time stay consistent") {
    Tally all;
    constexpr int kRoundsOfRace = 15;
    constexpr int kPerThread = 10;
    constexpr int kWaiters = static_cast<int>(kThreads) * kPerThread;
    for (int round = 0; round < kRoundsOfRace; ++round) {
      Tally blockers;
      auto release_at = Clock::now() + 30ms;
      for (std::size_t i = 0; i < kPoolSize; ++i) {
        loops.spawn(i + static_cast<std::size_t>(round),
                    block(pm, pool, classes(1s), blockers, release_at));
      }
      REQUIRE(wait_until([&] { return blockers.held == static_cast<int>(kPoolSize); }, 2s));
      // Deadlines from 25 to 40 ms after start, straddling the blockers' release at 30 ms; each
      // granted waiter holds 0-1 ms, so releases hand slots to waiters at their own deadlines.
      std::minstd_rand rng(static_cast<unsigned>(round + 1));
      for (std::size_t i = 0; i < kThreads; ++i) {
        for (int k = 0; k < kPerThread; ++k) {
          auto wait = std::chrono::milliseconds(25 + (k * 3 + static_cast<int>(i)) % 16);
          loops.spawn(i, wait_once(pm, pool, classes(wait), all, wait,
                                   std::chrono::microseconds(rng() % 1001)));
        }
      }
      REQUIRE(wait_until([&] { return loops.pending() == 0; }, 3s));
      REQUIRE(blockers.granted == static_cast<int>(kPoolSize));
      auto s = slots(pm);
      INFO("round " << round);
      REQUIRE(s.in_use == 0);
      REQUIRE(s.waiting == 0);
    }
    constexpr int kTotal = kRoundsOfRace * kWaiters;
    // Each wait is its own bulkhead (w25 ... w40), with its own hold-time estimate: a waiter may
    // be refused at once by predicted_wait or queue_age. That is a not-granted outcome like a
    // timeout; what matters is that every acquisition ended and no slot leaked (checked above
    // per round and below).
    CHECK(all.granted + all.timed_out + all.early_refused == kTotal);
    CHECK(all.closed == 0);
    CHECK(all.queue_full == 0);
    CHECK(all.other == 0);
    CHECK(all.early_timeouts == 0);
    CHECK(all.max_held <= static_cast<int>(kPoolSize));
    CHECK(all.held == 0);
    // Both outcomes happen: the 25 ms waiters expire before the release, the 40 ms ones are served.
    CHECK(all.granted > 0);
    CHECK(all.timed_out > 0);
  }

  // Whatever happened above, the three slots are all free again: three acquisitions held at once
  // succeed without waiting for anybody, and a fourth times out.
  auto s = slots(pm);
  CHECK(s.in_use == 0);
  CHECK(s.waiting == 0);
  Tally fresh;
  loops.spawn(1, take_n(pm, pool, classes(20ms), fresh, static_cast<int>(kPoolSize) + 1));
  REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
  loops.join();
  CHECK(loops.escaped() == 0);
  CHECK(fresh.granted == static_cast<int>(kPoolSize));
  CHECK(fresh.timed_out == 1);
  CHECK(fresh.early_refused == 0);
  CHECK(slots(pm).in_use == 0);
}

TEST_CASE("close_all refuses the waiters of every thread", "[src][threads]") {
  auto cfg = make_config();
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  const Classes classes(pm, cfg);
  Loops loops(kThreads);

  SECTION("queued waiters get Closed") {
    Tally blockers;
    auto until = Clock::now() + 300ms;
    for (std::size_t i = 0; i < kPoolSize; ++i) {
      loops.spawn(i, block(pm, pool, classes(1s), blockers, until));
    }
    REQUIRE(wait_until([&] { return blockers.held == static_cast<int>(kPoolSize); }, 2s));

    Tally waiters;
    constexpr int kPerThread = 15;
    constexpr std::uint32_t kWaiters = kThreads * kPerThread;
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(i, wait_once(pm, pool, classes(3s), waiters, 3s, 0us));
      }
    }
    REQUIRE(wait_until([&] { return slots(pm).waiting == kWaiters; }, 2s));
    pm.close_all();
    // Refused long before their 3 s deadline.
    REQUIRE(wait_until([&] { return waiters.outcomes() == int{kWaiters}; }, 2s));
    CHECK(waiters.closed == int{kWaiters});
    CHECK(waiters.granted == 0);
    CHECK(waiters.timed_out == 0);
    CHECK(waiters.early_refused == 0);
    CHECK(waiters.other == 0);
    CHECK(slots(pm).waiting == 0);
    // The blockers count into `blockers` until `until`: they must end before it goes out of scope.
    REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
    CHECK(blockers.granted == static_cast<int>(kPoolSize));
  }

  SECTION("close_all racing busy grants and releases") {
    Tally workers;
    constexpr int kPerThread = 20;
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(i, churn_until_refused(pm, pool, classes(3s), workers,
                                           static_cast<unsigned>(i * 100 + k)));
      }
    }
    REQUIRE(wait_until([&] { return workers.granted >= 200; }, 3s));
    pm.close_all();
    REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
    CHECK(workers.closed == static_cast<int>(kThreads) * kPerThread);
    CHECK(workers.timed_out == 0);
    CHECK(workers.early_refused == 0);
    CHECK(workers.queue_full == 0);
    CHECK(workers.other == 0);
    CHECK(workers.max_held <= static_cast<int>(kPoolSize));
    CHECK(workers.held == 0);
  }

  REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
  auto s = slots(pm);
  CHECK(s.in_use == 0);
  CHECK(s.waiting == 0);
  // Closed stays closed: a later acquisition is refused at once.
  Tally later;
  loops.spawn(2, wait_once(pm, pool, classes(3s), later, 3s, 0us));
  REQUIRE(wait_until([&] { return loops.pending() == 0; }, 1s));
  loops.join();
  CHECK(later.closed == 1);
  CHECK(loops.escaped() == 0);
}
