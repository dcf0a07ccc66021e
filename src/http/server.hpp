// HttpServer: a minimal HTTP/1.1 server for metrics_listen (/metrics, /status, the dashboard).
//
// Deliberately small and defensive, since the port may be reachable by anyone: one request per
// connection (every response says `Connection: close`), GET and HEAD only (405 with `Allow`),
// the request head capped at kMaxHead bytes (431) and read within a deadline (the connection is
// closed when it passes), request bodies never read, malformed heads answered 400, at most
// kMaxConnections connections at once (more are closed at accept). Every response carries
// Content-Length and `Cache-Control: no-store`. One coroutine per connection.
//
// Threads: the io_context passed in must be run by one thread. start(), stop() and the
// destructor are called on that thread, or while the io_context is not running. The handler runs
// on that thread, so it should be quick (a snapshot and a serialisation). Connections still open
// after the HttpServer is destroyed hold only shared state and finish on their own.
#pragma once

#include "config/config.hpp"
#include "src/asio_prelude.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (the server answers anything else itself)
  std::string path;    // the request target up to '?', not percent-decoded ("/metrics")
  std::string query;   // after '?', without it ("" when none)
  // The Authorization field's value, blanks around it removed ("" when absent; a request with
  // two is a 400).
  std::string authorization;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Extra header fields; Content-Type, Content-Length, Cache-Control and Connection are set by
  // the server. Fields whose name or value contains CR or LF are dropped.
  std::vector<std::pair<std::string, std::string>> headers;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

inline constexpr std::size_t kMaxHead = 8 * 1024;  // request line and header fields, bytes
inline constexpr std::size_t kMaxConnections = 64;
inline constexpr std::chrono::milliseconds kDefaultReadTimeout{5000};

// A request head, parsed: `status` 0 means `request` is valid; otherwise the status to answer
// (400 malformed, 405 method other than GET/HEAD, 505 HTTP version other than 1.0/1.1).
struct ParsedHead {
  int status = 0;
  HttpRequest request;
};

// Parses a request head: the request line and header fields, lines ending in CRLF or LF, without
// the empty line that ends the head. Pure; any thread.
ParsedHead parse_request_head(std::string_view head);

// The bytes of a response; the body is left out when `head_only` (HEAD) but Content-Length still
// gives its size.
std::string serialize_response(const HttpResponse& response, bool head_only);

namespace detail {
struct ServerState;
}

class HttpServer {
 public:
  // `read_timeout`: the whole request head must arrive within it (0 disables it; tests shorten
  // it). Nothing is bound until start().
  HttpServer(asio::io_context& ctx, config::ListenAddress address, HttpHandler handler,
             std::chrono::milliseconds read_timeout = kDefaultReadTimeout);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (SO_REUSEADDR) and starts accepting. Throws std::system_error naming the address when
  // it cannot listen (bad address, port in use, a Unix-socket address: TCP only).
  void start();
  // Stops accepting and closes every open connection. Idempotent.
  void stop();
  // The bound port (useful after binding port 0); 0 before start().
  std::uint16_t port() const;

 private:
  asio::io_context& ctx_;
  config::ListenAddress address_;
  std::shared_ptr<detail::ServerState> state_;  // shared with the running coroutines
};

}  // namespace sluice::http
