// CancelRegistry: targets set from a Backend through a session's Slot, cleared, and looked up
// only with the right secret; the endpoint comes back whole although an
// entry keeps only its index. The Slot path is also written from one thread while another looks
// up (run under TSan with the rest of unit_src).
#include "src/cancel_registry.hpp"

#include "src/asio_prelude.hpp"  // before any other Asio use
#include "src/backend.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace {

namespace asio = sluice::asio;
using sluice::Backend;
using sluice::CancelRegistry;
using sluice::CancelTarget;
using sluice::Endpoint;

Endpoint tcp(const char* address, unsigned short port) {
  return Endpoint(asio::ip::tcp::endpoint(asio::ip::make_address(address), port));
}

}  // namespace

TEST_CASE("cancel targets are set, looked up with the secret only, and cleared", "[src]") {
  CancelRegistry r;
  const auto [pid, secret] = r.add(std::weak_ptr<sluice::ClientSession>());
  const auto [pid2, secret2] = r.add(std::weak_ptr<sluice::ClientSession>());
  REQUIRE(pid != pid2);
  REQUIRE(r.size() == 2);
  REQUIRE_FALSE(r.lookup(pid, secret).has_value());  // no backend yet
  CancelRegistry::Slot* slot = r.slot(pid);
  CancelRegistry::Slot* slot2 = r.slot(pid2);
  REQUIRE(slot != nullptr);
  REQUIRE(slot2 != nullptr);

  asio::io_context io;
  const Endpoint a = tcp("127.0.0.1", 5432);
  const Endpoint b = tcp("::1", 5433);
  Backend first(io.get_executor());
  first.remote = a;
  first.pid = 41;
  first.secret = 42;
  Backend second(io.get_executor());
  second.remote = a;
  second.pid = 51;
  second.secret = 52;
  r.set_target(*slot, first);
  r.set_target(*slot2, second);
  auto t = r.lookup(pid, secret);
  REQUIRE(t.has_value());
  CHECK(t->endpoint == a);
  CHECK(t->pid == 41);
  CHECK(t->secret == 42);
  CHECK_FALSE(r.lookup(pid, secret + 1).has_value());
  CHECK_FALSE(r.lookup(pid + pid2, secret).has_value());
  CHECK(r.lookup(pid2, secret2)->pid == 51);

  // Another server's backend: its remote endpoint, pid and secret.
  Backend other(io.get_executor());
  other.remote = b;
  other.pid = 61;
  other.secret = 62;
  r.set_target(*slot, other);
  t = r.lookup(pid, secret);
  REQUIRE(t.has_value());
  CHECK(t->endpoint == b);
  CHECK(t->pid == 61);
  CHECK(t->secret == 62);
  CHECK(r.lookup(pid2, secret2)->endpoint == a);  // the other entry is unchanged

  CancelRegistry::clear_target(*slot);
  CHECK_FALSE(r.lookup(pid, secret).has_value());
  CHECK(r.lookup(pid2, secret2).has_value());
  CancelRegistry::clear_target(*slot2);
  CHECK_FALSE(r.lookup(pid2, secret2).has_value());

  // A backend without a remote endpoint is no target.
  other.remote.reset();
  other.cancel_endpoint = 0;
  r.set_target(*slot, other);
  CHECK_FALSE(r.lookup(pid, secret).has_value());

  // A removed pid has no slot and no target.
  r.set_target(*slot, first);
  r.remove(pid);
  CHECK(r.size() == 1);
  CHECK(r.slot(pid) == nullptr);
  CHECK_FALSE(r.lookup(pid, secret).has_value());
}

TEST_CASE("a session's Slot sets and clears its target without the registry's lock", "[src]") {
  CancelRegistry r;
  const auto [pid, secret] = r.add(std::weak_ptr<sluice::ClientSession>());
  CancelRegistry::Slot* slot = r.slot(pid);
  REQUIRE(slot != nullptr);
  REQUIRE(r.slot(pid + 1) == nullptr);

  asio::io_context io;
  Backend one(io.get_executor());
  one.remote = tcp("127.0.0.1", 5432);
  one.pid = 11;
  one.secret = 12;
  Backend two(io.get_executor());
  two.remote = tcp("127.0.0.1", 5432);  // the same server: one endpoint in the table
  two.pid = 21;
  two.secret = 22;

  r.set_target(*slot, one);
  auto t = r.lookup(pid, secret);
  REQUIRE(t.has_value());
  CHECK(t->endpoint == *one.remote);
  CHECK(t->pid == 11);
  CHECK(t->secret == 12);
  CHECK(one.cancel_endpoint != 0);  // interned once, remembered by the backend
  CancelRegistry::clear_target(*slot);
  CHECK_FALSE(r.lookup(pid, secret).has_value());
  r.set_target(*slot, two);
  CHECK(r.lookup(pid, secret)->pid == 21);
  CHECK(static_cast<std::uint32_t>(two.cancel_endpoint) ==
        static_cast<std::uint32_t>(one.cancel_endpoint));
  // Another registry does not take the remembered index for its own.
  CancelRegistry other;
  const auto [opid, osecret] = other.add(std::weak_ptr<sluice::ClientSession>());
  other.set_target(*other.slot(opid), one);
  CHECK(other.lookup(opid, osecret)->endpoint == *one.remote);

  // One thread switches the target back and forth while another reads: every answer is one of
  // the session's two backends, or none.
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::thread reader([&] {
    while (!stop) {
      if (auto got = r.lookup(pid, secret)) {
        const bool ok =
            (got->pid == 11 && got->secret == 12) || (got->pid == 21 && got->secret == 22);
        if (!ok || !(got->endpoint == *one.remote)) ++bad;
      }
    }
  });
  for (int i = 0; i < 20000; ++i) {
    r.set_target(*slot, i % 2 == 0 ? one : two);
    if (i % 3 == 0) CancelRegistry::clear_target(*slot);
  }
  stop = true;
  reader.join();
  CHECK(bad == 0);
  r.remove(pid);
  CHECK(r.slot(pid) == nullptr);
}

TEST_CASE("cancel keys are random: unpredictable pids, positive as int32, unique", "[src]") {
  // Issue 12, item 10: a pid must not be predictable from the one issued before it.
  CancelRegistry r;
  constexpr int kSessions = 2000;
  std::vector<std::uint32_t> pids;
  std::set<std::uint32_t> distinct;
  std::set<std::uint32_t> secrets;
  for (int i = 0; i < kSessions; ++i) {
    const auto [pid, secret] = r.add(std::weak_ptr<sluice::ClientSession>());
    CHECK(pid != 0);
    CHECK(pid <= 0x7fffffffU);  // libpq keeps it in a signed 32-bit int
    pids.push_back(pid);
    distinct.insert(pid);
    secrets.insert(secret);
  }
  CHECK(distinct.size() == kSessions);  // unique among live sessions
  CHECK(r.size() == kSessions);
  // Sequential or small-step keys would put most neighbours within a few of each other; random
  // ones almost never (2000 draws from 2^31: the chance of even one pair within 1000 is ~1e-3).
  int close_neighbours = 0;
  std::uint32_t high_bit_set = 0;
  for (std::size_t i = 1; i < pids.size(); ++i) {
    const auto gap = pids[i] > pids[i - 1] ? pids[i] - pids[i - 1] : pids[i - 1] - pids[i];
    if (gap < 1000) ++close_neighbours;
  }
  for (std::uint32_t pid : pids) high_bit_set += (pid >> 30) & 1;
  CHECK(close_neighbours <= 2);
  // Bit 30 is set in about half of them: the whole positive int32 range is used.
  CHECK(high_bit_set > kSessions / 4);
  CHECK(high_bit_set < kSessions * 3 / 4);
  CHECK(secrets.size() > kSessions - 5);  // 32 random bits each
  for (std::uint32_t pid : pids) r.remove(pid);
  CHECK(r.size() == 0);
}

TEST_CASE("match finds the session and its target with the right secret only", "[src]") {
  CancelRegistry r;
  auto session = std::shared_ptr<sluice::ClientSession>();  // no live session object needed
  const auto [pid, secret] = r.add(session);
  CHECK_FALSE(r.match(pid, secret + 1).target.has_value());
  CHECK(r.match(pid, secret + 1).session == nullptr);
  CHECK_FALSE(r.match(pid, secret).target.has_value());  // no backend yet

  asio::io_context io;
  Backend b(io.get_executor());
  b.remote = tcp("127.0.0.1", 5432);
  b.pid = 7;
  b.secret = 8;
  r.set_target(*r.slot(pid), b);
  const auto m = r.match(pid, secret);
  REQUIRE(m.target.has_value());
  CHECK(m.target->pid == 7);
  CHECK(m.target->secret == 8);
  CHECK_FALSE(r.match(pid, secret ^ 1).target.has_value());
}
