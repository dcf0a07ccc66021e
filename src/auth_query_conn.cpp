#include "src/auth_query_conn.hpp"

#include "config/keys.hpp"

#include <libpq-fe.h>

#include <functional>
#include <optional>
#include <utility>
#include <vector>

namespace sluice {

void PgConnDeleter::operator()(pg_conn* c) const { PQfinish(c); }

namespace {

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, ResultDeleter>;

QueryOutcome failed(std::string reason, std::string_view error) {
  // libpq's messages end in a newline and may have several lines; one is enough for a log.
  error = error.substr(0, error.find('\n'));
  return QueryOutcome{
      .kind = QueryOutcome::Kind::Failed, .reason = std::move(reason), .error = std::string(error)};
}

// Waits for libpq's socket to become readable or writable, all waits of one lookup bounded by
// one deadline. libpq owns the socket, and its number may change between PQconnectPoll calls
// (another address, an SSL retry), so each wait wraps it in a fresh descriptor and releases it
// again, never closing it. A fresh registration also reports readiness that arrived before the
// wait (Asio's epoll reactor is edge-triggered). Lives on one executor (the lookup's coroutine).
class SocketWaiter {
 public:
  enum class Want { Read, Write };

  SocketWaiter(const asio::any_io_executor& ex, std::chrono::milliseconds timeout)
      : ex_(ex), timer_(ex), state_(std::make_shared<State>()) {
    timer_.expires_after(timeout);
    timer_.async_wait([state = state_](error_code ec) {
      if (ec) return;
      state->expired = true;
      if (state->cancel) state->cancel();
    });
  }
  ~SocketWaiter() {
    state_->cancel = nullptr;
    timer_.cancel();
  }
  SocketWaiter(const SocketWaiter&) = delete;
  SocketWaiter& operator=(const SocketWaiter&) = delete;

  bool expired() const { return state_->expired; }

  // Runs `cancel` if the deadline passes while `op` is awaited.
  template <typename T>
  awaitable<T> bounded(awaitable<T> op, std::function<void()> cancel) {
    state_->cancel = std::move(cancel);
    struct Reset {
      State& s;
      ~Reset() { s.cancel = nullptr; }
    } reset{*state_};
    co_return co_await std::move(op);
  }

  // False on an invalid socket, an error or the deadline.
  awaitable<bool> wait(int fd, Want want) {
    if (fd < 0 || expired()) co_return false;
    error_code ec;
    asio::posix::stream_descriptor d(ex_);
    d.assign(fd, ec);
    if (ec) co_return false;
    struct Release {  // libpq closes the socket, never the descriptor
      asio::posix::stream_descriptor& d;
      ~Release() { d.release(); }
    } release{d};
    const auto what = want == Want::Read ? asio::posix::stream_descriptor::wait_read
                                         : asio::posix::stream_descriptor::wait_write;
    co_await bounded(d.async_wait(what, ec_token(ec)), [&d] {
      error_code ignored;
      d.cancel(ignored);
    });
    co_return !ec && !expired();
  }

 private:
  struct State {
    bool expired = false;
    std::function<void()> cancel;  // cancels the operation in progress, if any
  };
  asio::any_io_executor ex_;
  asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

// libpq prints NOTICEs to stderr by default; a lookup has nothing to say to our log.
void ignore_notice(void*, const char*) {}

// The connection keywords for auth_user on `server`. A host name is resolved by Asio (in the
// background) and handed to libpq as hostaddr, because libpq would resolve it blockingly. (As for
// backend connections, a getaddrinfo() already running is not interrupted by the deadline; the
// lookup then fails as soon as it returns.)
struct ConnParams {
  std::vector<std::pair<std::string, std::string>> items;
  void add(std::string key, std::string value) {
    items.emplace_back(std::move(key), std::move(value));
  }
};

awaitable<std::optional<QueryOutcome>> add_address(ConnParams& params, const config::Server& server,
                                                   SocketWaiter& waiter) {
  if (!server.host.empty() && server.host.front() == '/') {
    params.add("host", server.host);  // a Unix-socket directory
    co_return std::nullopt;
  }
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  error_code ec;
  auto results = co_await waiter.bounded(
      resolver.async_resolve(server.host, std::to_string(server.port),
                             asio::ip::resolver_base::numeric_service, ec_token(ec)),
      [&resolver] { resolver.cancel(); });
  if (waiter.expired()) co_return failed("timeout", "resolving " + server.host);
  if (ec || results.empty()) co_return failed("resolve", ec.message());
  std::string hosts;
  std::string addresses;
  for (const auto& r : results) {
    if (!hosts.empty()) {
      hosts += ',';
      addresses += ',';
    }
    hosts += server.host;  // for libpq's messages (and SSL's host name check)
    addresses += r.endpoint().address().to_string();
  }
  params.add("host", hosts);
  params.add("hostaddr", addresses);
  co_return std::nullopt;
}

awaitable<std::optional<QueryOutcome>> connect(PgConn& conn, const ConnParams& params,
                                               SocketWaiter& waiter) {
  std::vector<const char*> keys;
  std::vector<const char*> values;
  for (const auto& [key, value] : params.items) {
    keys.push_back(key.c_str());
    values.push_back(value.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  conn.reset(PQconnectStartParams(keys.data(), values.data(), 0));
  if (!conn) co_return failed("connect", "out of memory");
  PQsetNoticeProcessor(conn.get(), ignore_notice, nullptr);
  if (PQstatus(conn.get()) == CONNECTION_BAD) {
    co_return failed("connect", PQerrorMessage(conn.get()));
  }
  // As the libpq docs say: after PQconnectStart, act as if PQconnectPoll had said "writing".
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  for (;;) {
    if (poll == PGRES_POLLING_OK) co_return std::nullopt;
    if (poll == PGRES_POLLING_FAILED) co_return failed("connect", PQerrorMessage(conn.get()));
    const auto want =
        poll == PGRES_POLLING_READING ? SocketWaiter::Want::Read : SocketWaiter::Want::Write;
    if (!co_await waiter.wait(PQsocket(conn.get()), want)) {
      co_return failed(waiter.expired() ? "timeout" : "connect", "while connecting");
    }
    poll = PQconnectPoll(conn.get());
  }
}

// The first row's second column of the first result; the connection is drained to the end.
awaitable<QueryOutcome> run_query(PGconn* conn, const std::string& query, const std::string& user,
                                  SocketWaiter& waiter) {
  if (PQsetnonblocking(conn, 1) != 0) co_return failed("query", PQerrorMessage(conn));
  const char* param = user.c_str();
  if (PQsendQueryParams(conn, query.c_str(), 1, nullptr, &param, nullptr, nullptr, 0) == 0) {
    co_return failed("query", PQerrorMessage(conn));
  }
  // The query is small and the server reads it before it answers, so waiting for writability
  // alone cannot deadlock here.
  for (int flushed = PQflush(conn); flushed != 0; flushed = PQflush(conn)) {
    if (flushed < 0) co_return failed("query", PQerrorMessage(conn));
    if (!co_await waiter.wait(PQsocket(conn), SocketWaiter::Want::Write)) {
      co_return failed(waiter.expired() ? "timeout" : "query", "while sending the query");
    }
  }
  std::optional<QueryOutcome> outcome;
  for (;;) {
    while (PQisBusy(conn) != 0) {
      if (!co_await waiter.wait(PQsocket(conn), SocketWaiter::Want::Read)) {
        co_return failed(waiter.expired() ? "timeout" : "query", "while waiting for the result");
      }
      if (PQconsumeInput(conn) == 0) co_return failed("query", PQerrorMessage(conn));
    }
    Result result(PQgetResult(conn));
    if (!result) break;
    if (outcome) continue;  // only the first result counts
    if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
      const char* sqlstate = PQresultErrorField(result.get(), PG_DIAG_SQLSTATE);
      const char* message = PQresultErrorField(result.get(), PG_DIAG_MESSAGE_PRIMARY);
      outcome =
          failed("query", auth_query_error_text(sqlstate != nullptr ? sqlstate : "",
                                                message != nullptr ? message : "no result rows"));
    } else if (PQnfields(result.get()) < 2) {
      outcome = failed("query", "auth_query must return two columns (user name, secret)");
    } else if (PQntuples(result.get()) == 0 || PQgetisnull(result.get(), 0, 1) != 0) {
      outcome = QueryOutcome{.kind = QueryOutcome::Kind::NotFound};
    } else {
      outcome =
          QueryOutcome{.kind = QueryOutcome::Kind::Found, .secret = PQgetvalue(result.get(), 0, 1)};
    }
  }
  co_return outcome ? std::move(*outcome) : failed("query", "no result");
}

// The connection parameters of `target` (its address resolved by `waiter`), or why not.
awaitable<std::optional<QueryOutcome>> params_of(ConnParams& params, const AuthConnTarget& target,
                                                 SocketWaiter& waiter) {
  const config::Server& server = *target.server;
  if (auto failure = co_await add_address(params, server, waiter)) co_return failure;
  params.add("port", std::to_string(server.port));
  params.add("dbname", target.dbname);
  params.add("user", target.user);
  if (!target.password.empty()) params.add("password", target.password);
  params.add("application_name", "sluice_auth_query");
  // GSSAPI encryption is tried first by default and may consult Kerberos files; Sluice's own
  // backend connections do not use it either.
  params.add("gssencmode", "disable");
  co_return std::nullopt;
}

}  // namespace

awaitable<QueryOutcome> run_auth_query(PgConn& conn, const AuthConnTarget& target,
                                       const std::string& query, const std::string& user) {
  SocketWaiter waiter(co_await asio::this_coro::executor, target.server->connect_timeout);
  if (conn) {
    QueryOutcome outcome = co_await run_query(conn.get(), query, user, waiter);
    // A kept connection the server has closed meanwhile (restart, idle_session_timeout) is no
    // answer: try once more on a new one, within the same deadline.
    if (outcome.kind != QueryOutcome::Kind::Failed || PQstatus(conn.get()) != CONNECTION_BAD ||
        waiter.expired()) {
      co_return outcome;
    }
    conn.reset();
  }
  ConnParams params;
  if (auto failure = co_await params_of(params, target, waiter)) co_return std::move(*failure);
  if (auto failure = co_await connect(conn, params, waiter)) co_return std::move(*failure);
  co_return co_await run_query(conn.get(), query, user, waiter);
}

bool reusable(const PgConn& conn) {
  return conn && PQstatus(conn.get()) == CONNECTION_OK &&
         PQtransactionStatus(conn.get()) == PQTRANS_IDLE;
}

std::string auth_query_error_text(std::string_view sqlstate, std::string_view message) {
  std::string text = std::string(sqlstate) + " " + std::string(message);
  if (!sqlstate.starts_with("22")) return text;
  // From the first quote to the last (a value may contain quotes), or to the end if unclosed.
  const std::size_t open = text.find('"', sqlstate.size());
  if (open == std::string::npos) return text;
  const std::size_t close = text.rfind('"');
  text.replace(open, close > open ? close - open + 1 : std::string::npos,
               "\"" + std::string(config::kRedacted) + "\"");
  return text;
}

}  // namespace sluice
