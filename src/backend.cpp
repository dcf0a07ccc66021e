#include "src/backend.hpp"

#include "protocol/builders.hpp"
#include "src/auth/md5.hpp"
#include "src/log.hpp"

#include <cctype>
#include <sys/socket.h>

namespace sluice {
namespace {

namespace pr = protocol;

BackendError connection_error(const std::string& what, const error_code& ec) {
  return BackendError{.sqlstate = "08006",
                      .message = "sluice: could not connect to server: " + what,
                      .detail = ec ? ec.message() : std::string()};
}

BackendError error_from_server(pr::ByteView msg) {
  BackendError e{.from_server = true};
  if (auto f = pr::read_error_fields(msg)) {
    e.sqlstate = std::string(f->sqlstate());
    e.message = std::string(f->message());
    e.detail = std::string(f->get('D'));
  } else {
    e.message = "sluice: malformed ErrorResponse from server";
    e.from_server = false;
  }
  return e;
}

awaitable<std::vector<Endpoint>> resolve(const config::Server& server, error_code& ec) {
  std::vector<Endpoint> out;
  if (!server.host.empty() && server.host.front() == '/') {
    std::string path = server.host + "/.s.PGSQL." + std::to_string(server.port);
    out.emplace_back(asio::local::stream_protocol::endpoint(path));
    co_return out;
  }
  asio::ip::tcp::resolver resolver(co_await asio::this_coro::executor);
  auto results =
      co_await resolver.async_resolve(server.host, std::to_string(server.port),
                                      asio::ip::resolver_base::numeric_service, ec_token(ec));
  if (ec) co_return out;
  for (const auto& r : results) out.emplace_back(r.endpoint());
  co_return out;
}

// Runs `f` on a worker thread, off every event loop, and resumes the caller on its own executor
// with the result: for work whose cost a remote peer chooses (PBKDF2 with the server's iteration
// count), which must not stall the other sessions of a loop.
template <typename F>
awaitable<std::invoke_result_t<F>> off_loop(F f) {
  using Result = std::invoke_result_t<F>;
  static asio::thread_pool workers(1);
  auto home = co_await asio::this_coro::executor;
  // Named, not a temporary of the co_await expression: GCC 12 may destroy such temporaries twice.
  auto initiation = [home, f = std::move(f)](auto handler) mutable {
    asio::post(workers, [home, f = std::move(f), handler = std::move(handler)]() mutable {
      Result result = f();
      asio::post(home, [handler = std::move(handler), result = std::move(result)]() mutable {
        handler(std::move(result));
      });
    });
  };
  Result result = co_await asio::async_initiate<decltype(asio::use_awaitable), void(Result)>(
      std::move(initiation), asio::use_awaitable);
  co_return result;
}

// Whether a SCRAM server-first-message asks for more PBKDF2 iterations than a login should spend
// on an event loop (PostgreSQL's default is 4096). Malformed messages are left to the SCRAM code.
bool costly_scram(std::string_view server_first) {
  constexpr std::uint64_t kInlineIterations = 16384;
  const std::size_t at = server_first.find(",i=");
  if (at == std::string_view::npos) return false;
  std::uint64_t iterations = 0;
  for (std::size_t i = at + 3; i < server_first.size() && server_first[i] >= '0' &&
                               server_first[i] <= '9' && iterations <= kInlineIterations;
       ++i) {
    iterations = iterations * 10 + static_cast<std::uint64_t>(server_first[i] - '0');
  }
  return iterations > kInlineIterations;
}

// Handles one Authentication request during login; appends any reply to `out`.
std::optional<BackendError> answer_auth(const pr::Authentication& a, const BackendCredentials& c,
                                        std::unique_ptr<auth::ScramClient>& scram,
                                        pr::Buffer& out) {
  auto fail = [](std::string m) {
    return BackendError{.sqlstate = "08006", .message = "sluice: " + std::move(m)};
  };
  switch (a.code) {
    case pr::AuthCode::Ok:
      return std::nullopt;
    case pr::AuthCode::CleartextPassword:
      if (!c.password) return fail("server asked for a password and none is configured");
      pr::build_password_message(out, *c.password);
      return std::nullopt;
    case pr::AuthCode::MD5Password: {
      if (a.data.size() != 4) return fail("malformed AuthenticationMD5Password from server");
      std::array<unsigned char, 4> salt{};
      std::memcpy(salt.data(), a.data.data(), 4);
      std::string secret = c.md5_secret ? *c.md5_secret
                           : c.password ? auth::md5_secret(*c.password, c.user)
                                        : std::string();
      if (secret.empty())
        return fail("server asked for md5 and no password or md5 secret is known");
      pr::build_password_message(out, auth::md5_response_from_secret(secret, salt));
      return std::nullopt;
    }
    case pr::AuthCode::SASL: {
      auto mechs = pr::read_sasl_mechanisms(a.data);
      bool offered =
          mechs && std::find(mechs->begin(), mechs->end(), "SCRAM-SHA-256") != mechs->end();
      if (!offered) return fail("server offers no SASL mechanism Sluice supports");
      std::string nonce = auth::base64_encode(auth::random_bytes(18));
      if (c.password) {
        scram = std::make_unique<auth::ScramClient>(*c.password, nonce);
      } else if (c.scram_client_key && c.scram_server_key) {
        scram =
            std::make_unique<auth::ScramClient>(*c.scram_client_key, *c.scram_server_key, nonce);
      } else {
        return fail("server asked for SCRAM and no password or SCRAM keys are known for \"" +
                    c.user + "\" yet");
      }
      pr::build_sasl_initial_response(out, "SCRAM-SHA-256", scram->client_first());
      return std::nullopt;
    }
    case pr::AuthCode::SASLContinue: {
      if (!scram) return fail("unexpected SASLContinue from server");
      std::string_view data(reinterpret_cast<const char*>(a.data.data()), a.data.size());
      auto reply = scram->handle_server_first(data);
      if (!reply) return fail("SCRAM exchange with server failed");
      pr::build_sasl_response(out, *reply);
      return std::nullopt;
    }
    case pr::AuthCode::SASLFinal: {
      std::string_view data(reinterpret_cast<const char*>(a.data.data()), a.data.size());
      if (!scram || !scram->handle_server_final(data)) {
        return fail("server's SCRAM signature did not verify");
      }
      return std::nullopt;
    }
    default:
      return fail("server asked for an authentication method Sluice does not support");
  }
}

}  // namespace

std::string* find_param(Params& params, std::string_view name) {
  for (auto& [k, v] : params) {
    if (iequals(k, name)) return &v;
  }
  return nullptr;
}

const std::string* find_param(const Params& params, std::string_view name) {
  for (const auto& [k, v] : params) {
    if (iequals(k, name)) return &v;
  }
  return nullptr;
}

void set_param(Params& params, std::string_view name, std::string_view value) {
  if (std::string* v = find_param(params, name)) {
    *v = value;
  } else {
    params.emplace_back(std::string(name), std::string(value));
  }
}

std::optional<std::string> Backend::known_value(std::string_view name) const {
  for (const auto& [k, v] : reported) {
    if (iequals(k, name)) return v;
  }
  if (const std::string* v = find_param(applied, name)) return *v;
  if (const std::string* v = find_param(startup, name)) return *v;
  return std::nullopt;
}

bool Backend::idle_and_quiet() {
  if (!socket.is_open() || !buf.empty()) return false;
  char probe;
  ssize_t n = ::recv(socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void Backend::close() {
  error_code ignored;
  socket.shutdown(Socket::shutdown_both, ignored);
  socket.close(ignored);
}

awaitable<std::optional<BackendError>> connect_backend(Backend& b, const config::Server& server,
                                                       const std::string& dbname,
                                                       const BackendCredentials& creds,
                                                       const Params& startup,
                                                       std::uint32_t max_message_size) {
  auto ex = co_await asio::this_coro::executor;
  error_code ec;
  Deadline deadline(ex, b.socket, server.connect_timeout);
  auto endpoints = co_await resolve(server, ec);
  if (ec || endpoints.empty()) co_return connection_error("cannot resolve " + server.host, ec);
  for (const Endpoint& ep : endpoints) {
    ec.clear();
    co_await b.socket.async_connect(ep, ec_token(ec));
    if (!ec) {
      b.remote = ep;
      break;
    }
    error_code ignored;
    b.socket.close(ignored);
    if (deadline.fired()) break;
  }
  if (ec || !b.remote) {
    co_return connection_error(server.host + ":" + std::to_string(server.port),
                               deadline.fired() ? asio::error::timed_out : ec);
  }
  set_nodelay(b.socket);

  Params params{{"user", creds.user}, {"database", dbname}};
  for (const auto& p : startup) params.push_back(p);
  b.startup = startup;
  pr::Buffer out;
  pr::build_startup_message(out, params);
  if (!co_await write_all(b.socket, out, ec)) co_return connection_error("write failed", ec);

  std::unique_ptr<auth::ScramClient> scram;
  for (;;) {
    pr::FrameError ferr = pr::FrameError::None;
    auto size =
        co_await read_message(b.socket, b.buf, pr::Direction::Backend, max_message_size, ferr, ec);
    if (!size) {
      b.close();
      if (ferr != pr::FrameError::None) {
        co_return BackendError{.message = "sluice: protocol error from server during login",
                               .detail = std::string(pr::to_string(ferr))};
      }
      co_return connection_error("connection lost during login",
                                 deadline.fired() ? asio::error::timed_out : ec);
    }
    pr::ByteView msg = b.buf.view().first(*size);
    char type = static_cast<char>(msg[0]);
    std::optional<BackendError> failure;
    out.clear();
    switch (type) {
      case pr::be::kAuthentication: {
        auto a = pr::read_authentication(msg);
        if (a && a->code == pr::AuthCode::SASLContinue && scram &&
            costly_scram(
                std::string_view(reinterpret_cast<const char*>(a->data.data()), a->data.size()))) {
          // PBKDF2 with a server-chosen iteration count above the usual (up to 10 million,
          // seconds of CPU): on a worker thread, so that connect_timeout and every other session
          // of this loop go on. The usual counts stay inline: they cost less than the hop, and
          // do not queue behind a hostile server's.
          std::string data(reinterpret_cast<const char*>(a->data.data()), a->data.size());
          auth::ScramClient* client = scram.get();
          auto work = [client, data = std::move(data)] {
            return client->handle_server_first(data);
          };
          std::optional<std::string> reply = co_await off_loop(std::move(work));
          if (reply) {
            pr::build_sasl_response(out, *reply);
          } else {
            failure = BackendError{.message = "sluice: SCRAM exchange with server failed"};
          }
          break;
        }
        failure = a ? answer_auth(*a, creds, scram, out)
                    : BackendError{.message = "sluice: malformed Authentication from server"};
        break;
      }
      case pr::be::kErrorResponse:
        failure = error_from_server(msg);
        break;
      case pr::be::kParameterStatus:
        if (auto p = pr::read_parameter_status(msg)) {
          b.reported[std::string(p->name)] = std::string(p->value);
        }
        break;
      case pr::be::kBackendKeyData:
        if (auto k = pr::read_backend_key_data(msg)) {
          b.pid = k->pid;
          b.secret = k->secret;
        }
        break;
      case pr::be::kReadyForQuery:
        b.tx = pr::read_ready_for_query(msg).value_or(pr::TxStatus::Idle);
        b.defaults = b.reported;
        b.buf.consume(*size);
        co_return std::nullopt;
      default:  // NoticeResponse, NegotiateProtocolVersion: nothing to do
        break;
    }
    b.buf.consume(*size);
    if (failure) {
      b.close();
      co_return failure;
    }
    if (!out.empty() && !co_await write_all(b.socket, out, ec)) {
      co_return connection_error("write failed during login", ec);
    }
  }
}

awaitable<std::optional<BackendError>> run_internal_query(Backend& b, const std::string& sql,
                                                          std::uint32_t max_message_size) {
  pr::Buffer out;
  pr::build_query(out, sql);
  co_return co_await run_internal_messages(b, out, max_message_size);
}

awaitable<std::optional<BackendError>> run_internal_messages(Backend& b, const pr::Buffer& out,
                                                             std::uint32_t max_message_size) {
  error_code ec;
  if (!co_await write_all(b.socket, out, ec)) {
    co_return connection_error("write failed", ec);
  }
  std::optional<BackendError> first_error;
  for (;;) {
    pr::FrameError ferr = pr::FrameError::None;
    auto size =
        co_await read_message(b.socket, b.buf, pr::Direction::Backend, max_message_size, ferr, ec);
    if (!size) {
      b.close();
      co_return connection_error("connection lost", ec);
    }
    pr::ByteView msg = b.buf.view().first(*size);
    switch (static_cast<char>(msg[0])) {
      case pr::be::kErrorResponse:
        if (!first_error) first_error = error_from_server(msg);
        break;
      case pr::be::kParameterStatus:
        if (auto p = pr::read_parameter_status(msg)) {
          b.reported[std::string(p->name)] = std::string(p->value);
        }
        break;
      case pr::be::kReadyForQuery:
        b.tx = pr::read_ready_for_query(msg).value_or(pr::TxStatus::Idle);
        b.buf.consume(*size);
        co_return first_error;
      default:
        break;
    }
    b.buf.consume(*size);
  }
}

awaitable<void> send_cancel_request(asio::any_io_executor ex, Endpoint target, std::uint32_t pid,
                                    std::uint32_t secret) {
  Socket s(ex);
  error_code ec;
  Deadline deadline(ex, s, std::chrono::seconds(5));
  co_await s.async_connect(target, ec_token(ec));
  if (ec) {
    log::session().warn("cancel_forward_failed reason=\"{}\"", ec.message());
    co_return;
  }
  pr::Buffer out;
  pr::build_cancel_request(out, pid, secret);
  co_await write_all(s, out, ec);
  // PostgreSQL closes the connection after reading the request; wait for that so the request is
  // surely delivered before we close our end.
  char byte;
  co_await s.async_read_some(asio::buffer(&byte, 1), ec_token(ec));
}

}  // namespace sluice
