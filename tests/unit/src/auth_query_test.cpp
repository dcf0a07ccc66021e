// auth_query: the cache on a fake clock, and lookups through libpq against a fake server on
// 127.0.0.1 that speaks just enough of the protocol (no PostgreSQL needed): a found secret, no
// row, an SQL error, a refused connection, and a server that never answers (the deadline fires
// while the event loop keeps running). Everything runs on one io_context with a bounded run_for.
#include "src/auth_query.hpp"

#include "src/asio_prelude.hpp"  // before any other Asio use
#include "src/auth_store.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
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

// Accepts connections and answers each lookup as `answer` says, any number of lookups per
// connection (as PostgreSQL does); counts connections, lookups, and the most connections open at
// once.
struct FakeServer {
  explicit FakeServer(asio::io_context& ctx) : acceptor(ctx, tcp::endpoint(tcp::v4(), 0)) {}
  std::uint16_t port() const { return acceptor.local_endpoint().port(); }

  sluice::awaitable<void> serve(Answer answer) {
    for (;;) {
      tcp::socket s = co_await acceptor.async_accept(sluice::use_awaitable);
      ++connections;
      peak_open = std::max(peak_open, ++open);
      asio::co_spawn(acceptor.get_executor(), session(std::move(s), answer),
                     [this](std::exception_ptr) { --open; });
    }
  }

  // Reads one message of the extended protocol: its type, or 0 at EOF.
  static sluice::awaitable<char> read_message(tcp::socket& s) {
    std::string head(5, '\0');
    error_code ec;
    co_await asio::async_read(s, asio::buffer(head), sluice::ec_token(ec));
    if (ec) co_return 0;
    const std::uint32_t n =
        static_cast<unsigned char>(head[3]) << 8 | static_cast<unsigned char>(head[4]);
    std::string body(n - 4, '\0');
    if (!body.empty()) co_await asio::async_read(s, asio::buffer(body), sluice::ec_token(ec));
    co_return ec ? 0 : head[0];
  }

  sluice::awaitable<void> session(tcp::socket s, Answer answer) {
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
    for (;;) {
      // Parse, Bind, Describe, Execute, Sync; a Terminate or EOF ends the session.
      for (char type = 0; type != 'S';) {
        type = co_await read_message(s);
        if (type == 0 || type == 'X') co_return;
      }
      ++queries;
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
      if (hang_up_after_answer) co_return;
    }
  }

  tcp::acceptor acceptor;
  int connections = 0;
  int queries = 0;
  int open = 0;
  int peak_open = 0;
  bool hang_up_after_answer = false;  // close each connection after its first answer
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
  CHECK(fake.queries == 3);      // once with the cache, twice without
  CHECK(fake.connections == 1);  // on one connection of auth_user, kept between lookups
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
  CHECK(fake.queries == 2);
  CHECK(fake.connections == 1);  // an SQL error leaves the connection usable
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

// ---- the pool, coalescing, waiting (issue 12, item 6) -------------------------------------------

// What a lookup returns: a secret, or none (no row, or the lookup failed).
const std::optional<FoundSecret> kFound{FoundSecret("md5deadbeef")};
const std::optional<FoundSecret> kNoRow{FoundSecret()};

struct Lookups {
  const sluice::AuthStore store{sluice::config::AuthFile{{"sluice_auth", "auth-pass"}}, 4096};
  const std::string dbname = "app";
  std::vector<std::string> users;  // stable addresses: lookup() keeps references
  std::vector<std::optional<FoundSecret>> results;
  int done = 0;

  // Starts lookups of `names` (not yet run: the io_context runs them).
  void spawn(asio::io_context& ctx, const sluice::config::Config& cfg,
             const sluice::config::Server& server, const std::vector<std::string>& names,
             std::optional<std::chrono::milliseconds> max_wait = std::nullopt) {
    users.reserve(names.size());
    results.resize(names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
      users.push_back(names[i]);
      asio::co_spawn(ctx,
                     sluice::auth_query_service().lookup(cfg, server, dbname, users[i], store,
                                                         std::nullopt, max_wait),
                     [this, i](std::exception_ptr e, FoundSecret found) {
                       if (e) std::rethrow_exception(e);
                       results[i] = std::move(found);
                       ++done;
                     });
    }
  }
  // Runs `ctx` until `n` lookups are done (bounded).
  void run_until(asio::io_context& ctx, int n) {
    ctx.restart();
    for (auto deadline = Clock::now() + 10s; done < n && Clock::now() < deadline;) {
      ctx.run_one_for(100ms);
    }
  }
};

TEST_CASE("50 concurrent lookups of one new name cause one query", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::Row), asio::detached);
  const auto cfg = config_for(30s);
  const auto server = server_at(fake.port());
  Lookups lookups;
  lookups.spawn(ctx, cfg, server, std::vector<std::string>(50, "carol"));
  lookups.run_until(ctx, 50);
  REQUIRE(lookups.done == 50);
  for (const auto& r : lookups.results) CHECK(r == kFound);
  CHECK(fake.queries == 1);
  CHECK(fake.connections == 1);
}

TEST_CASE("lookups of many names run on at most auth_query_pool_size connections", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::NoRow), asio::detached);
  auto cfg = config_for(30s);
  cfg.auth_query_pool_size = 2;
  const auto server = server_at(fake.port());
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back("user" + std::to_string(i));
  Lookups lookups;
  lookups.spawn(ctx, cfg, server, names);
  lookups.run_until(ctx, 40);
  REQUIRE(lookups.done == 40);
  for (const auto& r : lookups.results) CHECK(r == kNoRow);
  CHECK(fake.queries == 40);
  CHECK(fake.connections == 2);
  CHECK(fake.peak_open == 2);
  const auto counts = sluice::auth_query_service().counts("fake");
  CHECK(counts.idle == 2);
  CHECK(counts.flights == 0);
  // Idle connections are closed after AuthQuery::kIdleTimeout.
  sluice::auth_query_service().maintain(Clock::now() + sluice::AuthQuery::kIdleTimeout);
  CHECK(sluice::auth_query_service().counts("fake").connections() == 0);
  ctx.restart();
  for (auto deadline = Clock::now() + 5s; fake.open > 0 && Clock::now() < deadline;) {
    ctx.run_one_for(100ms);
  }
  CHECK(fake.open == 0);
}

TEST_CASE("a lookup finding the pool busy waits at most max_wait and opens no connection",
          "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  asio::co_spawn(ctx, fake.serve(Answer::Silence), asio::detached);
  auto cfg = config_for(30s);
  cfg.auth_query_pool_size = 1;
  const auto server = server_at(fake.port(), 3s);
  Lookups hung;  // holds the one connection until connect_timeout
  hung.spawn(ctx, cfg, server, {"carol"});
  Lookups waiting;  // another name: needs the connection, waits 200 ms for it
  waiting.spawn(ctx, cfg, server, {"dave"}, 200ms);
  Lookups joined;  // the same name as the hung one: joins it, waits 200 ms for its answer
  joined.spawn(ctx, cfg, server, {"carol"}, 200ms);
  waiting.run_until(ctx, 1);
  joined.run_until(ctx, 1);
  REQUIRE(waiting.done == 1);
  REQUIRE(joined.done == 1);
  CHECK(waiting.results[0] == kNoRow);
  CHECK(joined.results[0] == kNoRow);
  CHECK(hung.done == 0);
  CHECK(fake.connections == 1);
  hung.run_until(ctx, 1);
  REQUIRE(hung.done == 1);
  CHECK(fake.connections == 1);
  CHECK(sluice::auth_query_service().counts("fake").flights == 0);
}

TEST_CASE("a kept connection the server has closed is replaced once", "[auth_query]") {
  sluice::auth_query_service().clear();
  asio::io_context ctx;
  FakeServer fake(ctx);
  fake.hang_up_after_answer = true;  // as after idle_session_timeout or a restart
  asio::co_spawn(ctx, fake.serve(Answer::Row), asio::detached);
  const auto cfg = config_for(0s);  // no cache: each lookup asks
  const auto server = server_at(fake.port());
  for (int i = 0; i < 3; ++i) {
    CHECK(run_lookup(ctx, cfg, server, "carol") == kFound);
  }
  CHECK(fake.queries == 3);
  CHECK(fake.connections == 3);
  CHECK(sluice::auth_query_service().counts("fake").connections() == 1);
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
