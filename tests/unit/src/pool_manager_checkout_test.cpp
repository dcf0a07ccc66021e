// PoolManager's transaction path against a fake PostgreSQL on loopback (trust login: it answers
// every startup packet with AuthenticationOk, BackendKeyData and ReadyForQuery, then only holds
// the connection): try_acquire_now() with and without an idle backend, the combined checkin(),
// and the detection of a backend that died or spoke while idle (bench/PROFILE.md C4): a checkout
// in the event-loop turn of the check-in hands the backend on without looking at its socket; one
// in a later turn looks (MSG_PEEK) and drops it.
#include "src/asio_prelude.hpp"  // before any other Asio use
#include "src/pool_manager.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <variant>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace asio = sluice::asio;
using sluice::awaitable;
using sluice::Backend;
using sluice::ClientClass;
using sluice::Lease;
using sluice::Pool;
using sluice::PoolManager;
using sluice::use_awaitable;
using Outcome = sluice::pools::LeaseOutcome;
using tcp = asio::ip::tcp;

class FakePostgres {
 public:
  explicit FakePostgres(asio::io_context& io)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  // The server side of the n-th connection (in accept order).
  tcp::socket& connection(std::size_t n) { return *connections_.at(n); }
  std::size_t connections() const { return connections_.size(); }
  void stop() {
    sluice::error_code ignored;
    acceptor_.close(ignored);
    for (auto& c : connections_) c->close(ignored);
  }

 private:
  void accept() {
    acceptor_.async_accept([this](sluice::error_code ec, tcp::socket s) {
      if (ec) return;
      auto c = std::make_shared<tcp::socket>(std::move(s));
      connections_.push_back(c);
      const std::uint32_t pid = 1000 + static_cast<std::uint32_t>(connections_.size());
      asio::co_spawn(acceptor_.get_executor(), login(c, pid), asio::detached);
      accept();
    });
  }

  static awaitable<void> login(std::shared_ptr<tcp::socket> c, std::uint32_t pid) {
    sluice::error_code ec;
    std::array<unsigned char, 4> len{};
    co_await asio::async_read(*c, asio::buffer(len), sluice::ec_token(ec));
    if (ec) co_return;
    std::uint32_t n = 0;
    for (unsigned char byte : len) n = (n << 8) | byte;
    std::vector<unsigned char> body(n - 4);
    co_await asio::async_read(*c, asio::buffer(body), sluice::ec_token(ec));
    if (ec) co_return;
    std::vector<unsigned char> out{'R', 0, 0, 0, 8, 0, 0, 0, 0, 'K', 0, 0, 0, 12};
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.push_back(static_cast<unsigned char>((pid >> shift) & 0xffu));
    }
    for (int i = 0; i < 4; ++i) out.push_back(0x5a);
    for (unsigned char b : {'Z', '\0', '\0', '\0', '\5', 'I'}) out.push_back(b);
    co_await asio::async_write(*c, asio::buffer(out), sluice::ec_token(ec));
  }

  tcp::acceptor acceptor_;
  std::vector<std::shared_ptr<tcp::socket>> connections_;
};

sluice::config::Config make_config(std::uint16_t port) {
  sluice::config::Config cfg;
  sluice::config::Server server;
  server.name = "main";
  server.port = port;
  server.max_connections = 4;
  cfg.servers.emplace(server.name, server);
  sluice::config::Database db;
  db.name = "app";
  db.server = "main";
  db.dbname = "app";
  db.pool_size = 2;
  db.pool_mode = sluice::config::PoolMode::Transaction;
  cfg.databases.emplace(db.name, db);
  return cfg;
}

awaitable<void> pause(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(use_awaitable);
}

awaitable<std::shared_ptr<Backend>> checkout(PoolManager& pm, Pool& pool, const ClientClass& cls,
                                             Lease& lease) {
  auto r = co_await pm.checkout(pool, cls, lease, sluice::pools::Clock::now(), {}, 1 << 20);
  if (auto* b = std::get_if<std::shared_ptr<Backend>>(&r)) co_return *b;
  co_return nullptr;
}

struct Counts {
  std::uint32_t in_use = 0;
  std::uint32_t idle = 0;
  std::uint32_t active = 0;
};

Counts counts(PoolManager& pm) {
  sluice::Snapshot snap;
  pm.fill_snapshot(snap);
  return Counts{.in_use = snap.servers.at(0).admission.in_use,
                .idle = snap.servers.at(0).backends.idle,
                .active = snap.servers.at(0).backends.active};
}

// Runs `test` on a fresh io_context with a fake server; rethrows what it threw.
template <typename Test>
void run(Test test) {
  asio::io_context io(1);
  FakePostgres server(io);
  const auto cfg = make_config(server.port());
  PoolManager pm(cfg);
  Pool& pool = pm.pool_for(cfg.databases.at("app"), "alice");
  auto admitted = pm.classify_client(cfg, cfg.databases.at("app"),
                                     sluice::ClientInfo{.user = "alice", .database = "app"});
  REQUIRE(std::holds_alternative<ClientClass>(admitted));
  const ClientClass cls = std::get<ClientClass>(admitted);
  REQUIRE_FALSE(pm.admit_client(cls));  // counted, as after authentication
  std::exception_ptr failure;
  bool done = false;
  asio::co_spawn(io, test(pm, pool, cls, server), [&](std::exception_ptr e) {
    failure = e;
    done = true;
    pm.close_all();
    server.stop();
  });
  io.run_for(10s);
  REQUIRE(done);
  pm.release_client(cls);
  if (failure) std::rethrow_exception(failure);
}

}  // namespace

TEST_CASE("try_acquire_now hands out a slot and an idle backend without a coroutine", "[src]") {
  run([](PoolManager& pm, Pool& pool, const ClientClass& cls,
         FakePostgres& server) -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    // Nothing idle yet: a slot only, the backend comes from checkout().
    PoolManager::Immediate first = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(first.lease);
    REQUIRE_FALSE(first.backend);
    std::shared_ptr<Backend> b1 = co_await checkout(pm, pool, cls, first.lease);
    REQUIRE(b1);
    REQUIRE(server.connections() == 1);
    REQUIRE(counts(pm).in_use == 1);
    Backend* const raw = b1.get();

    // Backend and slot back under one lock.
    pm.checkin(pool, std::move(b1), true, first.lease, Outcome::Completed);
    REQUIRE_FALSE(first.lease);
    Counts c = counts(pm);
    REQUIRE(c.in_use == 0);
    REQUIRE(c.idle == 1);

    // Both at once now.
    PoolManager::Immediate again = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(again.lease);
    REQUIRE(again.backend.get() == raw);
    c = counts(pm);
    REQUIRE(c.in_use == 1);
    REQUIRE(c.active == 1);
    REQUIRE(c.idle == 0);

    // The pool's limit (pool_size 2): a second slot at once, a third not, and that refusal of
    // the immediate path counts as nothing (acquire() would queue).
    PoolManager::Immediate second = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(second.lease);
    REQUIRE_FALSE(second.backend);
    PoolManager::Immediate third = pm.try_acquire_now(pool, cls, ex);
    REQUIRE_FALSE(third.lease);
    REQUIRE_FALSE(third.backend);
    REQUIRE(counts(pm).in_use == 2);

    // Only the lease back (no backend); then a backend that may not be reused.
    pm.checkin(pool, nullptr, false, second.lease, Outcome::Ignored);
    REQUIRE_FALSE(second.lease);
    pm.checkin(pool, std::move(again.backend), false, again.lease, Outcome::Failed);
    c = counts(pm);
    REQUIRE(c.in_use == 0);
    REQUIRE(c.idle == 0);
    REQUIRE(c.active == 0);

    // PAUSE: the immediate path takes nothing; RESUME lets it through again.
    pm.set_paused("app", true);
    REQUIRE_FALSE(pm.try_acquire_now(pool, cls, ex).lease);
    REQUIRE(counts(pm).in_use == 0);
    pm.set_paused("", false);
    PoolManager::Immediate resumed = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(resumed.lease);
    resumed.lease.reset();

    // Shut down: nothing at once either.
    pm.close_all();
    REQUIRE_FALSE(pm.try_acquire_now(pool, cls, ex).lease);
  });
}

TEST_CASE("a backend that dies or speaks while idle is dropped at the next turn's checkout",
          "[src]") {
  run([](PoolManager& pm, Pool& pool, const ClientClass& cls,
         FakePostgres& server) -> awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    PoolManager::Immediate t = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(t.lease);
    std::shared_ptr<Backend> b1 = co_await checkout(pm, pool, cls, t.lease);
    REQUIRE(b1);
    const std::uint32_t pid1 = b1->pid;
    pm.checkin(pool, std::move(b1), true, t.lease, Outcome::Completed);

    // Terminated while idle (as by pg_terminate_backend): the server closes the connection.
    server.connection(0).close();
    co_await pause(20ms);  // later turns of the loop: the FIN has arrived

    t = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(t.lease);
    REQUIRE_FALSE(t.backend);  // the dead one was dropped, not handed out
    REQUIRE(counts(pm).idle == 0);
    std::shared_ptr<Backend> b2 = co_await checkout(pm, pool, cls, t.lease);
    REQUIRE(b2);
    REQUIRE(b2->pid != pid1);
    REQUIRE(server.connections() == 2);

    // Bytes arriving after the check-in, within the same turn: the loop has taken in nothing
    // since the check-in, so the checkout does not look (whatever came is no older than the
    // request being served). The same bytes are seen by a checkout in a later turn.
    Backend* const raw2 = b2.get();
    pm.checkin(pool, std::move(b2), true, t.lease, Outcome::Completed);
    const std::array<char, 6> notice{'N', 0, 0, 0, 5, 0};
    asio::write(server.connection(1), asio::buffer(notice));
    t = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(t.lease);
    REQUIRE(t.backend.get() == raw2);
    pm.checkin(pool, std::move(t.backend), true, t.lease, Outcome::Completed);
    co_await pause(20ms);
    t = pm.try_acquire_now(pool, cls, ex);
    REQUIRE(t.lease);
    REQUIRE_FALSE(t.backend);

    // checkout() probes the same way: a backend checked in before a turn passed and then
    // terminated is not returned by it either.
    std::shared_ptr<Backend> b3 = co_await checkout(pm, pool, cls, t.lease);
    REQUIRE(b3);
    const std::uint32_t pid3 = b3->pid;
    pm.checkin(pool, std::move(b3), true, t.lease, Outcome::Completed);
    co_await pause(20ms);
    server.connection(2).close();
    co_await pause(20ms);
    auto acquired = co_await pm.acquire(pool, cls, nullptr, nullptr);
    REQUIRE(std::holds_alternative<Lease>(acquired));
    t.lease = std::move(std::get<Lease>(acquired));
    std::shared_ptr<Backend> b4 = co_await checkout(pm, pool, cls, t.lease);
    REQUIRE(b4);
    REQUIRE(b4->pid != pid3);
    pm.checkin(pool, std::move(b4), true, t.lease, Outcome::Completed);
    const Counts c = counts(pm);
    REQUIRE(c.in_use == 0);
    REQUIRE(c.idle == 1);
    REQUIRE(c.active == 0);
  });
}
