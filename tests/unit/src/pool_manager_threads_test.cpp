// PoolManager driven from several threads, one io_context per thread as Runtime runs them
// (STYLE.md §2 shape (a), §9): the global limits hold, a grant racing a deadline never leaks a
// slot, and close_all() refuses waiters on every thread. Meant to be run under TSan as well
// (tests/run.sh --tsan). No PostgreSQL: only acquire() is used, never checkout().
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
#include <memory>
#include <random>
#include <thread>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sluice::awaitable;
using sluice::Lease;
using sluice::Pool;
using sluice::PoolManager;
using sluice::use_awaitable;
using Clock = std::chrono::steady_clock;
using Failure = PoolManager::AcquireFailure;
namespace asio = sluice::asio;

constexpr std::size_t kThreads = 4;
constexpr std::uint32_t kPoolSize = 3;  // min(pool_size 3, max_connections 4)

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
  return cfg;
}

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

sluice::pools::GroupStats slots(PoolManager& pm) {
  auto all = pm.stats();
  REQUIRE(all.size() == 1);
  return all.front().slots;
}

// What the coroutines saw, counted from every thread.
struct Tally {
  std::atomic<int> held{0};  // leases held right now
  std::atomic<int> max_held{0};
  std::atomic<int> granted{0};
  std::atomic<int> granted_after_deadline{0};  // a Lease although the wait had run out
  std::atomic<int> timed_out{0};
  std::atomic<int> early_timeouts{0};  // TimedOut before the wait had run out
  std::atomic<int> closed{0};
  std::atomic<int> queue_full{0};

  void hold() {
    int now = ++held;
    int seen = max_held.load();
    while (now > seen && !max_held.compare_exchange_weak(seen, now)) {
    }
  }
  // Called before the lease is dropped, so the next holder cannot be counted alongside it.
  void drop() { --held; }
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
    }
  }
};

awaitable<void> pause(std::chrono::microseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

// Holds a slot for `d` once granted.
awaitable<void> use_lease(Tally& t, std::variant<Lease, Failure>& r, std::chrono::microseconds d) {
  Lease& lease = std::get<Lease>(r);
  t.hold();
  co_await pause(d);
  t.drop();
  lease.reset();
}

// Acquires `rounds` times, holding each lease 0-1 ms.
awaitable<void> churn(PoolManager& pm, Pool& pool, Tally& t, unsigned seed, int rounds) {
  std::minstd_rand rng(seed);
  for (int i = 0; i < rounds; ++i) {
    auto r = co_await pm.acquire(pool, 5s);
    if (auto* f = std::get_if<Failure>(&r)) {
      t.failed(*f);
      continue;
    }
    ++t.granted;
    co_await use_lease(t, r, std::chrono::microseconds(rng() % 1001));
  }
}

// Acquires until refused (Closed after close_all), holding each lease 0-1 ms.
awaitable<void> churn_until_refused(PoolManager& pm, Pool& pool, Tally& t, unsigned seed) {
  std::minstd_rand rng(seed);
  for (;;) {
    auto r = co_await pm.acquire(pool, 3s);
    if (auto* f = std::get_if<Failure>(&r)) {
      t.failed(*f);
      co_return;
    }
    ++t.granted;
    co_await use_lease(t, r, std::chrono::microseconds(rng() % 1001));
  }
}

// Takes a slot (free at once) and keeps it until `until`.
awaitable<void> block(PoolManager& pm, Pool& pool, Tally& t, Clock::time_point until) {
  auto r = co_await pm.acquire(pool, 1s);
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

// One acquisition with `wait`; a granted lease is held for `hold`.
awaitable<void> wait_once(PoolManager& pm, Pool& pool, Tally& t, std::chrono::milliseconds wait,
                          std::chrono::microseconds hold) {
  auto start = Clock::now();
  auto r = co_await pm.acquire(pool, wait);
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

// Acquires `n` slots one after the other, each with a short wait, and holds them all at once.
awaitable<void> take_n(PoolManager& pm, Pool& pool, Tally& t, int n) {
  std::vector<std::variant<Lease, Failure>> held;
  for (int i = 0; i < n; ++i) {
    held.push_back(co_await pm.acquire(pool, 20ms));
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

}  // namespace

TEST_CASE("leases taken from four threads never exceed the pool's limit", "[src][threads]") {
  auto cfg = make_config();
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  Tally t;
  constexpr int kPerThread = 50;
  constexpr int kRounds = 20;
  {
    Loops loops(kThreads);
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(i, churn(pm, pool, t, static_cast<unsigned>(i * 1000 + k + 1), kRounds));
      }
    }
    // Sample the counters from the test thread meanwhile (stats() takes the same lock).
    std::uint32_t max_in_use = 0;
    bool finished = wait_until(
        [&] {
          max_in_use = std::max(max_in_use, slots(pm).in_use);
          return loops.pending() == 0;
        },
        8s);
    REQUIRE(finished);
    loops.join();
    CHECK(loops.escaped() == 0);
    CHECK(max_in_use <= kPoolSize);
  }
  constexpr int kTotal = static_cast<int>(kThreads) * kPerThread * kRounds;
  CHECK(t.granted == kTotal);
  CHECK(t.timed_out == 0);
  CHECK(t.closed == 0);
  CHECK(t.queue_full == 0);
  CHECK(t.max_held <= static_cast<int>(kPoolSize));
  CHECK(t.max_held >= 1);
  CHECK(t.held == 0);
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
  Loops loops(kThreads);

  SECTION("every waiter times out while the slots are held") {
    Tally blockers;
    auto until = Clock::now() + 200ms;
    for (std::size_t i = 0; i < kPoolSize; ++i) loops.spawn(i, block(pm, pool, blockers, until));
    REQUIRE(wait_until([&] { return blockers.held == static_cast<int>(kPoolSize); }, 2s));

    Tally waiters;
    constexpr int kPerThread = 20;
    constexpr int kWaiters = static_cast<int>(kThreads) * kPerThread;
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) loops.spawn(i, wait_once(pm, pool, waiters, 20ms, 0us));
    }
    REQUIRE(wait_until([&] { return waiters.timed_out + waiters.granted == kWaiters; }, 2s));
    CHECK(waiters.timed_out == kWaiters);
    CHECK(waiters.early_timeouts == 0);
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
        loops.spawn(i + static_cast<std::size_t>(round), block(pm, pool, blockers, release_at));
      }
      REQUIRE(wait_until([&] { return blockers.held == static_cast<int>(kPoolSize); }, 2s));
      // Deadlines from 25 to 40 ms after start, straddling the blockers' release at 30 ms; each
      // granted waiter holds 0-1 ms, so releases hand slots to waiters at their own deadlines.
      std::minstd_rand rng(static_cast<unsigned>(round + 1));
      for (std::size_t i = 0; i < kThreads; ++i) {
        for (int k = 0; k < kPerThread; ++k) {
          auto wait = std::chrono::milliseconds(25 + (k * 3 + static_cast<int>(i)) % 16);
          loops.spawn(i, wait_once(pm, pool, all, wait, std::chrono::microseconds(rng() % 1001)));
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
    CHECK(all.granted + all.timed_out == kTotal);
    CHECK(all.closed == 0);
    CHECK(all.queue_full == 0);
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
  loops.spawn(1, take_n(pm, pool, fresh, static_cast<int>(kPoolSize) + 1));
  REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
  loops.join();
  CHECK(loops.escaped() == 0);
  CHECK(fresh.granted == static_cast<int>(kPoolSize));
  CHECK(fresh.timed_out == 1);
  CHECK(slots(pm).in_use == 0);
}

TEST_CASE("close_all refuses the waiters of every thread", "[src][threads]") {
  auto cfg = make_config();
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  Loops loops(kThreads);

  SECTION("queued waiters get Closed") {
    Tally blockers;
    auto until = Clock::now() + 300ms;
    for (std::size_t i = 0; i < kPoolSize; ++i) loops.spawn(i, block(pm, pool, blockers, until));
    REQUIRE(wait_until([&] { return blockers.held == static_cast<int>(kPoolSize); }, 2s));

    Tally waiters;
    constexpr int kPerThread = 15;
    constexpr std::uint32_t kWaiters = kThreads * kPerThread;
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) loops.spawn(i, wait_once(pm, pool, waiters, 3s, 0us));
    }
    REQUIRE(wait_until([&] { return slots(pm).waiting == kWaiters; }, 2s));
    pm.close_all();
    // Refused long before their 3 s deadline.
    REQUIRE(wait_until(
        [&] { return waiters.closed + waiters.timed_out + waiters.granted == int{kWaiters}; }, 2s));
    CHECK(waiters.closed == int{kWaiters});
    CHECK(waiters.granted == 0);
    CHECK(waiters.timed_out == 0);
    CHECK(slots(pm).waiting == 0);
  }

  SECTION("close_all racing busy grants and releases") {
    Tally workers;
    constexpr int kPerThread = 20;
    for (std::size_t i = 0; i < kThreads; ++i) {
      for (int k = 0; k < kPerThread; ++k) {
        loops.spawn(i, churn_until_refused(pm, pool, workers, static_cast<unsigned>(i * 100 + k)));
      }
    }
    REQUIRE(wait_until([&] { return workers.granted >= 200; }, 3s));
    pm.close_all();
    REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
    CHECK(workers.closed == static_cast<int>(kThreads) * kPerThread);
    CHECK(workers.timed_out == 0);
    CHECK(workers.queue_full == 0);
    CHECK(workers.max_held <= static_cast<int>(kPoolSize));
    CHECK(workers.held == 0);
  }

  REQUIRE(wait_until([&] { return loops.pending() == 0; }, 2s));
  auto s = slots(pm);
  CHECK(s.in_use == 0);
  CHECK(s.waiting == 0);
  // Closed stays closed: a later acquisition is refused at once.
  Tally later;
  loops.spawn(2, wait_once(pm, pool, later, 3s, 0us));
  REQUIRE(wait_until([&] { return loops.pending() == 0; }, 1s));
  loops.join();
  CHECK(later.closed == 1);
  CHECK(loops.escaped() == 0);
}
