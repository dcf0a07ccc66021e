// HttpServer on 127.0.0.1, driven with raw requests over blocking sockets: valid requests reach
// the handler, hostile ones get 400/405/431/505 or are closed at the read deadline. Every read
// is bounded by poll() so a misbehaving server fails the test instead of hanging it.
//
// Catch2 is not thread-safe: the handler (on the server's thread) only records into atomics.
#include "src/asio_prelude.hpp"  // before any other Asio use
#include "src/http/dashboard.hpp"
#include "src/http/routes.hpp"
#include "src/http/server.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace {

using namespace std::chrono_literals;
using sluice::asio::ip::tcp;
using sluice::http::HttpRequest;
using sluice::http::HttpResponse;
using sluice::http::HttpServer;
namespace asio = sluice::asio;

constexpr auto kTestReadTimeout = 200ms;

// Runs an HttpServer on its own io_context thread; stops it on that thread at the end.
class TestServer {
 public:
  explicit TestServer(sluice::http::HttpHandler handler)
      : server_(ctx_, sluice::config::ListenAddress{false, "127.0.0.1", 0, ""}, std::move(handler),
                kTestReadTimeout) {
    server_.start();
    thread_ = std::thread([this] { ctx_.run(); });
  }
  ~TestServer() {
    asio::post(ctx_, [this] {
      server_.stop();
      ctx_.stop();
    });
    thread_.join();
  }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  std::uint16_t port() const { return server_.port(); }

 private:
  asio::io_context ctx_;
  HttpServer server_;
  std::thread thread_;
};

HttpResponse echo(const HttpRequest& r) {
  HttpResponse out;
  out.body = r.method + " " + r.path + " ?" + r.query;
  out.headers.emplace_back("X-Test", "1");
  return out;
}

struct Reply {
  std::string bytes;  // everything received until EOF
  bool eof = false;   // the server closed (FIN or reset) before the poll limit
  std::chrono::milliseconds elapsed{0};

  int status() const {
    if (bytes.rfind("HTTP/1.1 ", 0) != 0 || bytes.size() < 12) return 0;
    return std::stoi(bytes.substr(9, 3));
  }
  std::string head() const { return bytes.substr(0, bytes.find("\r\n\r\n") + 2); }
  std::string body() const {
    std::size_t end = bytes.find("\r\n\r\n");
    return end == std::string::npos ? "" : bytes.substr(end + 4);
  }
  bool has_header(const std::string& line) const {
    return head().find("\r\n" + line + "\r\n") != std::string::npos;
  }
};

// Connects, sends `request`, and reads until the server closes or `limit` passes.
Reply exchange(std::uint16_t port, const std::string& request,
               std::chrono::milliseconds limit = 3000ms) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  if (!request.empty()) asio::write(s, asio::buffer(request));
  Reply reply;
  auto start = std::chrono::steady_clock::now();
  auto deadline = start + limit;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{s.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) continue;
    sluice::error_code ec;
    std::size_t n = s.read_some(asio::buffer(buf), ec);
    if (ec) {
      reply.eof = true;
      break;
    }
    reply.bytes.append(buf, n);
  }
  reply.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  return reply;
}

}  // namespace

TEST_CASE("A GET reaches the handler and the response is complete and closed", "[http]") {
  TestServer server(echo);
  REQUIRE(server.port() != 0);
  Reply r = exchange(server.port(), "GET /metrics?a=1&b HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(r.eof);
  CHECK(r.status() == 200);
  CHECK(r.body() == "GET /metrics ?a=1&b");
  CHECK(r.has_header("Content-Length: " + std::to_string(r.body().size())));
  CHECK(r.has_header("Cache-Control: no-store"));
  CHECK(r.has_header("Connection: close"));
  CHECK(r.has_header("Content-Type: text/plain; charset=utf-8"));
  CHECK(r.has_header("X-Test: 1"));
}

TEST_CASE("HTTP/1.0, bare line feeds and a leading path without query work", "[http]") {
  TestServer server(echo);
  Reply r = exchange(server.port(), "GET / HTTP/1.0\n\n");
  CHECK(r.status() == 200);
  CHECK(r.body() == "GET / ?");
}

TEST_CASE("HEAD gets the headers of GET and no body", "[http]") {
  TestServer server(echo);
  Reply r = exchange(server.port(), "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(r.status() == 200);
  CHECK(r.body().empty());
  CHECK(r.has_header("Content-Length: " + std::to_string(std::string("HEAD /x ?").size())));
}

TEST_CASE("Methods other than GET and HEAD get 405 with Allow", "[http]") {
  TestServer server(echo);
  for (const char* method : {"POST", "PUT", "DELETE", "OPTIONS", "BREW"}) {
    INFO(method);
    Reply r = exchange(server.port(), std::string(method) +
                                          " / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    CHECK(r.status() == 405);
    CHECK(r.has_header("Allow: GET, HEAD"));
    CHECK(r.eof);
  }
}

TEST_CASE("Malformed requests get 400 and other HTTP versions 505", "[http]") {
  TestServer server(echo);
  struct Case {
    const char* request;
    int status;
  };
  auto c = GENERATE(values<Case>({
      {"garbage\r\n\r\n", 400},
      {"\x16\x03\x01\x02\x01\xfc\x03\x03\n", 400},  // a TLS hello, by accident
      {"GET /\r\n\r\n", 400},
      {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400},
      {"GET noslash HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\n\r\n", 400},                        // no Host
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},  // two
      {"GET / HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nBad name: 1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01z\r\n\r\n", 400},
      {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"GET / HTTP/1.1x\r\nHost: x\r\n\r\n", 400},
  }));
  INFO(c.request);
  Reply r = exchange(server.port(), c.request);
  CHECK(r.status() == c.status);
  CHECK(r.eof);
}

TEST_CASE("A head over 8 KiB gets 431", "[http]") {
  TestServer server(echo);
  std::string big = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a');
  Reply r = exchange(server.port(), big);
  CHECK(r.status() == 431);
  CHECK(r.eof);
}

TEST_CASE("A head that never completes is closed at the read deadline", "[http]") {
  TestServer server(echo);
  Reply r = exchange(server.port(), "GET / HTTP/1.1\r\nHost: x\r\n", 3000ms);
  CHECK(r.eof);
  CHECK(r.bytes.empty());
  CHECK(r.elapsed >= 150ms);
  CHECK(r.elapsed < 2000ms);

  Reply silent = exchange(server.port(), "", 3000ms);  // connects and sends nothing
  CHECK(silent.eof);
  CHECK(silent.elapsed < 2000ms);
}

TEST_CASE("A handler that throws gets 500", "[http]") {
  TestServer server([](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
  Reply r = exchange(server.port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(r.status() == 500);
}

TEST_CASE("Binding a port in use throws a system_error naming the address", "[http]") {
  asio::io_context ctx;
  // A socket without SO_REUSEPORT holds the port (a second Sluice, which sets it too, could
  // share it: that is the rolling restart).
  asio::ip::tcp::acceptor blocker(ctx,
                                  asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto port = blocker.local_endpoint().port();
  HttpServer second(ctx, sluice::config::ListenAddress{false, "127.0.0.1", port, ""}, echo);
  try {
    second.start();
    FAIL("start() did not throw");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("127.0.0.1") != std::string::npos);
  }
  HttpServer unix_socket(ctx, sluice::config::ListenAddress{true, "", 9187, "sockets"}, echo);
  CHECK_THROWS_AS(unix_socket.start(), std::system_error);
  HttpServer bad_host(ctx, sluice::config::ListenAddress{false, "not-an-ip", 0, ""}, echo);
  CHECK_THROWS_AS(bad_host.start(), std::system_error);
}

TEST_CASE("The routes serve metrics, status, the dashboard and health", "[http]") {
  sluice::config::Config cfg;
  cfg.servers["main"] = sluice::config::Server{.name = "main"};
  sluice::Metrics metrics(cfg);
  std::atomic<int> snapshots{0};
  auto snapshot = [&snapshots] {
    ++snapshots;
    return sluice::Snapshot{};
  };
  TestServer server(
      [&](const HttpRequest& r) { return sluice::http::route_request(r, snapshot, metrics, cfg); });

  Reply m = exchange(server.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(m.status() == 200);
  CHECK(m.has_header("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  CHECK(m.body().find("# TYPE sluice_queue_waiters gauge") != std::string::npos);

  Reply s = exchange(server.port(), "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(s.status() == 200);
  CHECK(s.has_header("Content-Type: application/json"));
  CHECK(s.body().rfind("{\"version\":", 0) == 0);

  Reply d = exchange(server.port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(d.status() == 200);
  CHECK(d.has_header("Content-Type: text/html; charset=utf-8"));
  CHECK(d.body() == std::string(sluice::http::kDashboardHtml));
  CHECK(d.body().rfind("<!doctype html>", 0) == 0);

  Reply h = exchange(server.port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(h.status() == 200);
  CHECK(h.body() == "ok");

  Reply n = exchange(server.port(), "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(n.status() == 404);
  CHECK(snapshots == 2);
}

TEST_CASE("parse_request_head splits path and query and drops a fragment", "[http]") {
  auto p = sluice::http::parse_request_head("GET /a/b?x=1#frag HTTP/1.1\r\nHost: h\r");
  REQUIRE(p.status == 0);
  CHECK(p.request.method == "GET");
  CHECK(p.request.path == "/a/b");
  CHECK(p.request.query == "x=1");
  CHECK(sluice::http::parse_request_head("OPTIONS * HTTP/1.1\r\nHost: h").status == 405);
  CHECK(sluice::http::parse_request_head("GET * HTTP/1.1\r\nHost: h").status == 400);
  CHECK(sluice::http::parse_request_head("").status == 400);
}
