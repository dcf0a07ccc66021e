// auth_query: the cache on a fake clock, and lookups through libpq against a fake server on
// 127.0.0.1 that speaks just enough of the protocol (no PostgreSQL needed): a found secret, no
// row, an SQL error, a refused connection, and a server that never answers (the deadline fires
// while the event loop keeps running). Everything runs on one io_context with a bounded run_for.
#include "src/auth_query.hpp"

#include "src/asio_prelude.hpp"  // before any other Asio use
#include "src/auth_store.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using sluice::AuthQueryCache;
using sluice::error_code;
using sluice::FoundSecret;
namespace asio = sluice::asio;
using asio::ip::tcp;
using Clock = AuthQueryCache::Clock;

// ---- the cache -------------------------------------------------------------------------------

TEST_CASE("the auth_query cache returns what was found, and absences too, until the ttl",
          "[auth_query]") {
  AuthQueryCache cache;
  const Clock::time_point t0{};
  CHECK_FALSE(cache.find("alice", t0, 30s));
  cache.put("alice", FoundSecret("md5abc"), t0, 30s);
  cache.put("mallory", std::nullopt, t0, 30s);
  REQUIRE(cache.find("alice", t0 + 29s, 30s));
  CHECK(*cache.find("alice", t0 + 29s, 30s) == FoundSecret("md5abc"));
  REQUIRE(cache.find("mallory", t0 + 29s, 30s));  // a cached "no such user"
  CHECK_FALSE(cache.find("mallory", t0 + 29s, 30s)->has_value());
  CHECK_FALSE(cache.find("alice", t0 + 30s, 30s));  // exactly at the ttl: expired, and removed
  CHECK(cache.size() == 1);
}

TEST_CASE("a shorter ttl on lookup (a reload) expires entries at once, and 0 stores nothing",
          "[auth_query]") {
  AuthQueryCache cache;
  const Clock::time_point t0{};
  cache.put("alice", FoundSecret("x"), t0, 30s);
  CHECK(cache.find("alice", t0 + 5s, 30s));
  CHECK_FALSE(cache.find("alice", t0 + 5s, 1s));
  cache.put("bob", FoundSecret("y"), t0, Clock::duration::zero());
  CHECK(cache.size() == 0);
  CHECK_FALSE(cache.find("bob", t0, 30s));
}

TEST_CASE("a new result replaces the old one and restarts its ttl", "[auth_query]") {
  AuthQueryCache cache;
  const Clock::time_point t0{};
  cache.put("alice", FoundSecret("old"), t0, 10s);
  cache.put("alice", FoundSecret("new"), t0 + 8s, 10s);
  REQUIRE(cache.find("alice", t0 + 15s, 10s));
  CHECK(*cache.find("alice", t0 + 15s, 10s) == FoundSecret("new"));
  CHECK(cache.size() == 1);
}

TEST_CASE("a full cache evicts expired entries first, then the oldest", "[auth_query]") {
  AuthQueryCache cache(3);
  const Clock::time_point t0{};
  cache.put("a", FoundSecret("1"), t0, 10s);
  cache.put("b", FoundSecret("2"), t0 + 5s, 10s);
  cache.put("c", FoundSecret("3"), t0 + 6s, 10s);
  cache.put("d", FoundSecret("4"), t0 + 10s, 10s);  // "a" has expired: it goes
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.find("a", t0 + 10s, 10s));
  cache.put("e", FoundSecret("5"), t0 + 11s, 10s);  // none expired: the oldest ("b") goes
  CHECK(cache.size() == 3);
  CHECK_FALSE(cache.find("b", t0 + 11s, 10s));
  CHECK(cache.find("c", t0 + 11s, 10s));
  CHECK(cache.find("d", t0 + 11s, 10s));
  CHECK(cache.find("e", t0 + 11s, 10s));
}

// ---- lookups against a fake server -------------------------------------------------------------

// One backend message: type, length, body.
std::string message(char type, const std::string& body) {
  std::string out(1, type);
  const auto n = static_cast<std::uint32_t>(body.size() + 4);
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  return out + body;
}
std::string u16(std::uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)};
}
std::string u32(std::uint32_t v) {
  return u16(static_cast<std::uint16_t>(v >> 16)) + u16(v & 0xffff);
}

std::string row_description() {
  std::string body = u16(2);
  for (const char* name : {"usename", "passwd"}) {
    body += std::string(name) + '\0';
    body += u32(0) + u16(0) + u32(25) + u16(0xffff) + u32(0xffffffff) + u16(0);  // text
  }
  return message('T', body);
}
std::string data_row(const std::string& user, const std::string& secret) {
  return message('D', u16(2) + u32(static_cast<std::uint32_t>(user.size())) + user +
                          u32(static_cast<std::uint32_t>(secret.size())) + secret);
}

enum class Answer { Row, NoRow, SqlError, Silence };

// Accepts connections and answers each lookup as `answer` says; counts the connections.
struct FakeServer {
  explicit FakeServer(asio::io_context& ctx) : acceptor(ctx, tcp::endpoint(tcp::v4(), 0)) {}
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  sluice::awaitable<void> serve(Answer answer) {
    for (;;) {
      tcp::socket s = co_await acceptor.async_accept(sluice::use_awaitable);
      ++connections;
      asio::co_spawn(acceptor.get_executor(), session(std::move(s), answer), asio::detached);
    }
  }

  static sluice::awaitable<void> session(tcp::socket s, Answer answer) {
    using sluice::use_awaitable;
    std::string buf(4, '\0');
    // SSLRequest (libpq's sslmode=prefer) or StartupMessage: untyped, length first.
    for (;;) {
      co_await asio::async_read(s, asio::buffer(buf.data(), 4), use_awaitable);
      const auto len = static_cast<std::uint32_t>(static_cast<unsigned char>(buf[2]) << 8 |
                                                  static_cast<unsigned char>(buf[3]));
      std::string rest(len - 4, '\0');
      co_await asio::async_read(s, asio::buffer(rest), use_awaitable);
      if (len == 8 && rest == std::string("\x04\xd2\x16\x2f", 4)) {  // SSLRequest
        co_await asio::async_write(s, asio::buffer("N", 1), use_awaitable);
        continue;
      }
      break;
    }
    if (answer == Answer::Silence) {  // never authenticates: the client's deadline must fire
      char byte = 0;
      error_code ec;
      co_await asio::async_read(s, asio::buffer(&byte, 1), sluice::ec_token(ec));
      co_return;
    }
    std::string hello = message('R', u32(0)) + message('Z', "I");
    co_await asio::async_write(s, asio::buffer(hello), use_awaitable);
    // Parse, Bind, Describe, Execute, Sync.
    for (char type = 0; type != 'S';) {
      co_await asio::async_read(s, asio::buffer(buf.data(), 1), use_awaitable);
      type = buf[0];
      std::string len(4, '\0');
      co_await asio::async_read(s, asio::buffer(len), use_awaitable);
      const std::uint32_t n =
          static_cast<unsigned char>(len[2]) << 8 | static_cast<unsigned char>(len[3]);
      std::string body(n - 4, '\0');
      if (!body.empty()) co_await asio::async_read(s, asio::buffer(body), use_awaitable);
    }
    std::string reply;
    if (answer == Answer::SqlError) {
      std::string fields;
      for (const std::string field : {"SERROR", "C42883", "Mfunction does not exist"}) {
        fields += field + '\0';
      }
      reply = message('E', fields + '\0');
    } else {
      reply = message('1', "") + message('2', "") + row_description();
      if (answer == Answer::Row) reply += data_row("carol", "md5deadbeef");
      reply += message('C', std::string("SELECT 1\0", 9));
    }
    reply += message('Z', "I");
    co_await asio::async_write(s, asio::buffer(reply), use_awaitable);
    error_code ec;
    co_await asio::async_read(s, asio::buffer(buf.data(), 1), sluice::ec_token(ec));  // Terminate
  }

  tcp::acceptor acceptor;
  int connections = 0;
};

sluice::config::Config config_for(std::chrono::milliseconds cache) {
  sluice::config::Config cfg;
  cfg.auth_user = "sluice_auth";
  cfg.auth_query = "SELECT * FROM public.sluice_lookup($1)";
  cfg.auth_query_cache = cache;
  return cfg;
}

sluice::config::Server server_at(std::uint16_t port, std::chrono::milliseconds timeout = 5s) {
  sluice::config::Server s;
  s.name = "fake";
  s.host = "127.0.0.1";
  s.port = port;
  s.connect_timeout = timeout;
  return s;
}

// Runs one lookup to completion (bounded) and returns what it found.
std::optional<FoundSecret> run_lookup(asio::io_context& ctx, const sluice::config::Config& cfg,
                                      const sluice::config::Server& server,
                                      const std::string& user) {
  const sluice::AuthStore store(sluice::config::AuthFile{{"sluice_auth", "auth-pass"}}, 4096);
  const std::string dbname = "app";  // lookup() keeps references: no temporaries
  std::optional<FoundSecret> result;
  asio::co_spawn(ctx, sluice::auth_query_service().lookup(cfg, server, dbname, user, store),
                 [&](std::exception_ptr e, FoundSecret found) {
                   if (e) std::rethrow_exception(e);
                   result = std::move(found);
                 });
  ctx.restart();
  for (auto deadline = Clock::now() + 10s; !result && Clock::now() < deadline;) {
    ctx.run_one_for(100ms);
  }
  return result;
}

TEST_CASE("a lookup returns the secret of the first row and caches it", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::Row), asio::detached);
  const auto cfg = config_for(30s);
  const auto server = server_at(fake.port());
  auto found = run_lookup(ctx, cfg, server, "carol");
  REQUIRE(found);
  CHECK(*found == FoundSecret("md5deadbeef"));
  found = run_lookup(ctx, cfg, server, "carol");
  REQUIRE(found);
  CHECK(*found == FoundSecret("md5deadbeef"));
  CHECK(fake.connections == 1);  // the second came from the cache
}

TEST_CASE("no row is a cached absence; with auth_query_cache 0 every lookup asks", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::NoRow), asio::detached);
  const auto server = server_at(fake.port());
  for (auto cache : {30s, 0s}) {
    const auto cfg = config_for(cache);
    for (int i = 0; i < 2; ++i) {
      auto found = run_lookup(ctx, cfg, server, "nobody");
      REQUIRE(found);
      CHECK_FALSE(found->has_value());
    }
  }
  CHECK(fake.connections == 3);  // once with the cache, twice without
}

TEST_CASE("an SQL error is a failed lookup, not cached", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::SqlError), asio::detached);
  const auto cfg = config_for(30s);
  const auto server = server_at(fake.port());
  for (int i = 0; i < 2; ++i) {
    auto found = run_lookup(ctx, cfg, server, "carol");
    REQUIRE(found);
    CHECK_FALSE(found->has_value());
  }
  CHECK(fake.connections == 2);
}

TEST_CASE("a refused connection is a failed lookup", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  std::uint16_t port = 0;
  {
    tcp::acceptor probe(ctx, tcp::endpoint(tcp::v4(), 0));
    port = probe.local_endpoint().port();
  }  // closed: nobody listens there now
  auto found = run_lookup(ctx, config_for(30s), server_at(port), "carol");
  REQUIRE(found);
  CHECK_FALSE(found->has_value());
}

TEST_CASE("a server that never answers fails the lookup at connect_timeout without blocking",
          "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::Silence), asio::detached);
  // A ticker on the same loop: it keeps running while the lookup waits.
  int ticks = 0;
  asio::steady_timer ticker(ctx);
  std::function<void(error_code)> tick = [&](error_code ec) {
    if (ec) return;
    ++ticks;
    ticker.expires_after(10ms);
    ticker.async_wait(tick);
  };
  ticker.expires_after(10ms);
  ticker.async_wait(tick);
  const auto start = Clock::now();
  auto found = run_lookup(ctx, config_for(30s), server_at(fake.port(), 300ms), "carol");
  const auto took = Clock::now() - start;
  ticker.cancel();
  REQUIRE(found);
  CHECK_FALSE(found->has_value());
  CHECK(took >= 300ms);
  CHECK(took < 3s);
  CHECK(ticks >= 10);
  CHECK(fake.connections == 1);
}

}  // namespace

TEST_CASE("a data exception of auth_query is logged without the value it quotes", "[auth_query]") {
  // e.g. auth_query = "SELECT usename, passwd::int ...": PostgreSQL quotes the secret it read.
  CHECK(
      sluice::auth_query_error_text(
          "22P02", "invalid input syntax for type integer: \"SCRAM-SHA-256$4096:c2FsdA==$a:b\"") ==
      "22P02 invalid input syntax for type integer: \"********\"");
  CHECK(sluice::auth_query_error_text("22P02", "invalid input: \"md5abc\"\"def\"") ==
        "22P02 invalid input: \"********\"");
  CHECK(sluice::auth_query_error_text("22P02", "unclosed \"md5abc") ==
        "22P02 unclosed \"********\"");
  CHECK(sluice::auth_query_error_text("22012", "division by zero") == "22012 division by zero");
  // Other errors quote identifiers, which an operator needs to see.
  CHECK(sluice::auth_query_error_text("42P01", "relation \"pg_shadowx\" does not exist") ==
        "42P01 relation \"pg_shadowx\" does not exist");
}
