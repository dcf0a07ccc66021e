#include "src/http/server.hpp"

#include "protocol/text.hpp"
#include "src/log.hpp"
#include "src/task_failure.hpp"
#include "src/wire.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <system_error>

namespace sluice::http {
namespace {

// Writing a response may take longer than reading a request (a large /metrics on a slow link).
constexpr std::chrono::milliseconds kWriteTimeout{10000};
// After the response: how long, and how many bytes, we read and discard until the client closes.
// Closing with unread request bytes would make the kernel send a reset, which can destroy the
// response before the client reads it (e.g. a 431 for an oversized head).
constexpr std::chrono::milliseconds kMaxDrainTime{1000};
constexpr std::size_t kMaxDrainBytes = 64 * 1024;

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!is_tchar(c)) return false;
  }
  return true;
}

std::string_view strip_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

struct RequestLine {
  std::string_view method;
  std::string_view target;
  bool http11 = false;
};

// 0 when `line` (without its line end) is a valid request line; otherwise the status to answer.
int parse_request_line(std::string_view line, RequestLine& out) {
  std::size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return 400;
  std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return 400;
  out.method = line.substr(0, sp1);
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(out.method) || out.method.size() > 32) return 400;
  if (out.target.empty()) return 400;
  for (char c : out.target) {
    if (c <= 0x20 || c >= 0x7f) return 400;  // also rejects a third space
  }
  if (out.target.front() != '/' && out.target != "*") return 400;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !digit(version[5]) ||
      version[6] != '.' || !digit(version[7])) {
    return 400;
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return 505;
  out.http11 = version == "HTTP/1.1";
  if (out.method != "GET" && out.method != "HEAD") return 405;
  if (out.target == "*") return 400;
  return 0;
}

// 0 when `line` is a valid header field line; then `name` and `value` (without the blanks
// around it) are set.
int parse_field_line(std::string_view line, std::string_view& name, std::string_view& value) {
  if (line.empty() || line.front() == ' ' || line.front() == '\t') return 400;  // obs-fold
  std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) return 400;
  for (char c : line.substr(colon + 1)) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return 400;
  }
  name = line.substr(0, colon);
  value = line.substr(colon + 1);
  const std::size_t first = value.find_first_not_of(" \t");
  value = first == value.npos ? std::string_view() : value.substr(first);
  value = value.substr(0, value.find_last_not_of(" \t") + 1);
  return 0;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "";
  }
}

HttpResponse error_response(int status) {
  HttpResponse r;
  r.status = status;
  r.body = std::string(reason_phrase(status)) + "\n";
  if (status == 405) r.headers.emplace_back("Allow", "GET, HEAD");
  return r;
}

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != s.npos; }

// Where the head ends: the index of the line feed that ends its last line, if the empty line
// after it (LF or CRLF) has arrived.
std::optional<std::size_t> find_head_end(std::string_view data) {
  for (std::size_t i = data.find('\n'); i != data.npos; i = data.find('\n', i + 1)) {
    if (i + 1 < data.size() && data[i + 1] == '\n') return i;
    if (i + 2 < data.size() && data[i + 1] == '\r' && data[i + 2] == '\n') return i;
  }
  return std::nullopt;
}

}  // namespace

ParsedHead parse_request_head(std::string_view head) {
  ParsedHead out;
  std::size_t eol = head.find('\n');
  RequestLine rl;
  out.status = parse_request_line(strip_cr(head.substr(0, eol)), rl);
  if (out.status != 0) return out;
  int hosts = 0;
  int authorizations = 0;
  while (eol != head.npos) {
    std::size_t start = eol + 1;
    eol = head.find('\n', start);
    std::string_view name, value;
    out.status = parse_field_line(strip_cr(head.substr(start, eol - start)), name, value);
    if (out.status != 0) return out;
    hosts += protocol::iequals(name, "host") ? 1 : 0;
    if (protocol::iequals(name, "authorization")) {
      ++authorizations;
      out.request.authorization = std::string(value);
    }
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without Host, or any request with several, is a 400.
  // Authorization is a singleton too: two could mean two different credentials.
  if (hosts > 1 || (rl.http11 && hosts == 0) || authorizations > 1) {
    out.status = 400;
    return out;
  }
  out.request.method = std::string(rl.method);
  std::string_view target = rl.target.substr(0, rl.target.find('#'));
  std::size_t q = target.find('?');
  out.request.path = std::string(target.substr(0, q));
  if (q != target.npos) out.request.query = std::string(target.substr(q + 1));
  return out;
}

std::string serialize_response(const HttpResponse& response, bool head_only) {
  int status = response.status >= 100 && response.status <= 999 ? response.status : 500;
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\n";
  if (!has_line_break(response.content_type)) {
    out += "Content-Type: " + response.content_type + "\r\n";
  }
  out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n";
  for (const auto& [name, value] : response.headers) {
    if (!is_token(name) || has_line_break(value)) continue;
    out += name + ": " + value + "\r\n";
  }
  out += "\r\n";
  if (!head_only) out += response.body;
  return out;
}

// Shared by the server object and its coroutines, so connections may outlive the HttpServer.
// Used on the io_context's one thread only.
struct detail::ServerState {
  ServerState(asio::io_context& ctx, HttpHandler h, std::chrono::milliseconds timeout)
      : acceptor(ctx), handler(std::move(h)), read_timeout(timeout) {}
  Acceptor acceptor;
  HttpHandler handler;
  std::chrono::milliseconds read_timeout;
  bool stopped = false;
  std::size_t live = 0;    // connections accepted and not finished
  std::set<Socket*> open;  // sockets of running connections, closed by stop()
};

namespace {

// Registers a connection's socket for stop() while the connection runs.
class OpenConnection {
 public:
  OpenConnection(std::set<Socket*>& open, std::size_t& live, Socket& socket)
      : open_(open), live_(live), socket_(socket) {
    open_.insert(&socket_);
  }
  ~OpenConnection() {
    open_.erase(&socket_);
    --live_;
  }
  OpenConnection(const OpenConnection&) = delete;
  OpenConnection& operator=(const OpenConnection&) = delete;

 private:
  std::set<Socket*>& open_;
  std::size_t& live_;
  Socket& socket_;
};

struct HeadRead {
  bool closed = false;  // EOF, an error, or the deadline closed the socket
  int status = 0;       // answer this at once (the head is too large or its first line is bad)
  std::string text;     // the head without its final empty line
};

awaitable<HeadRead> read_head(Socket& socket) {
  std::string buf(kMaxHead, '\0');
  std::size_t used = 0;
  bool line_checked = false;
  for (;;) {
    std::string_view data(buf.data(), used);
    if (auto end = find_head_end(data)) {
      buf.resize(*end);
      co_return HeadRead{false, 0, std::move(buf)};
    }
    std::size_t eol = data.find('\n');
    if (!line_checked && eol != data.npos) {
      // Not HTTP (a TLS handshake, a stray protocol): answer now instead of at the deadline.
      line_checked = true;
      RequestLine rl;
      int status = parse_request_line(strip_cr(data.substr(0, eol)), rl);
      if (status == 400 || status == 505) co_return HeadRead{false, status, {}};
    }
    if (used == buf.size()) co_return HeadRead{false, 431, {}};
    error_code ec;
    std::size_t n = co_await socket.async_read_some(
        asio::buffer(buf.data() + used, buf.size() - used), ec_token(ec));
    if (ec) co_return HeadRead{true, 0, {}};
    used += n;
  }
}

HttpResponse respond(const HttpHandler& handler, const HttpRequest& request) {
  try {
    return handler(request);
  } catch (const std::exception& ex) {
    log::main().error("http_handler_failed path={} what=\"{}\"", log::value(request.path),
                      log::escaped(ex.what()));
    return error_response(500);
  }
}

awaitable<void> serve_connection(std::shared_ptr<detail::ServerState> state, Socket socket) {
  OpenConnection registration(state->open, state->live, socket);
  if (state->stopped) co_return;
  auto ex = co_await asio::this_coro::executor;
  HeadRead head;
  {
    Deadline deadline(ex, socket, state->read_timeout);
    head = co_await read_head(socket);
  }
  if (head.closed) co_return;

  HttpResponse response;
  bool head_only = false;
  if (head.status != 0) {
    response = error_response(head.status);
  } else if (ParsedHead parsed = parse_request_head(head.text); parsed.status != 0) {
    response = error_response(parsed.status);
  } else {
    head_only = parsed.request.method == "HEAD";
    response = respond(state->handler, parsed.request);
  }

  error_code ec;
  std::string out = serialize_response(response, head_only);
  {
    Deadline deadline(ex, socket, kWriteTimeout);
    co_await asio::async_write(socket, asio::buffer(out), ec_token(ec));
    if (ec) co_return;
  }
  socket.shutdown(asio::socket_base::shutdown_send, ec);
  auto drain_time = state->read_timeout.count() > 0 ? std::min(kMaxDrainTime, state->read_timeout)
                                                    : kMaxDrainTime;
  Deadline deadline(ex, socket, drain_time);
  std::array<char, 4096> sink;
  for (std::size_t drained = 0; drained < kMaxDrainBytes;) {
    std::size_t n = co_await socket.async_read_some(asio::buffer(sink), ec_token(ec));
    if (ec) break;
    drained += n;
  }
}

awaitable<void> accept_loop(std::shared_ptr<detail::ServerState> state) {
  for (;;) {
    error_code ec;
    Socket socket = co_await state->acceptor.async_accept(ec_token(ec));
    if (state->stopped) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted || !state->acceptor.is_open()) co_return;
      // Out of file descriptors or similar: back off briefly instead of spinning.
      log::main().warn("http_accept_failed reason=\"{}\"", ec.message());
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await t.async_wait(ec_token(ec));
      continue;
    }
    if (state->live >= kMaxConnections) {
      socket.close(ec);
      continue;
    }
    ++state->live;
    asio::co_spawn(state->acceptor.get_executor(), serve_connection(state, std::move(socket)),
                   on_task_exit(Task::HttpConnection));
  }
}

}  // namespace

HttpServer::HttpServer(asio::io_context& ctx, config::ListenAddress address, HttpHandler handler,
                       std::chrono::milliseconds read_timeout)
    : ctx_(ctx),
      address_(std::move(address)),
      state_(std::make_shared<detail::ServerState>(ctx, std::move(handler), read_timeout)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  std::string where = "cannot listen on " + address_.to_string() + " (metrics_listen)";
  if (address_.is_unix) {
    throw std::system_error(std::make_error_code(std::errc::address_family_not_supported),
                            where + ": HTTP listens on TCP only");
  }
  std::string host = (address_.host.empty() || address_.host == "*") ? "0.0.0.0" : address_.host;
  error_code ec;
  asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) throw std::system_error(ec, where + ": not an IP address");
  Endpoint ep = asio::ip::tcp::endpoint(ip, address_.port);
  Acceptor& acceptor = state_->acceptor;
  acceptor.open(ep.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.set_option(ReusePort(true), ec);  // a new Sluice beside the old one
  if (!ec) acceptor.bind(ep, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    acceptor.close(ignored);
    throw std::system_error(ec, where);
  }
  state_->stopped = false;
  asio::co_spawn(ctx_, accept_loop(state_), on_task_exit(Task::HttpAcceptLoop));
}

void HttpServer::stop() {
  if (state_->stopped) return;
  state_->stopped = true;
  error_code ignored;
  state_->acceptor.close(ignored);
  for (Socket* s : state_->open) s->close(ignored);
}

std::uint16_t HttpServer::port() const {
  error_code ec;
  Endpoint ep = state_->acceptor.local_endpoint(ec);
  if (ec) return 0;
  asio::ip::tcp::endpoint tcp;
  tcp.resize(ep.size());
  std::memcpy(tcp.data(), ep.data(), ep.size());
  return tcp.port();
}

}  // namespace sluice::http
