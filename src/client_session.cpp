#include "src/client_session.hpp"

#include "protocol/messages.hpp"
#include "protocol/startup_options.hpp"
#include "protocol/stream_scanner.hpp"
#include "src/auth/md5.hpp"
#include "src/auth/scram.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"

namespace sluice {

namespace pr = protocol;

namespace {

constexpr std::size_t kRelayChunk = 32 * 1024;
// Authentication messages are small; a client that sends more is not authenticating.
constexpr std::uint32_t kMaxAuthMessage = 8192;
const pr::StreamScanner::InspectSet kClientInspect = pr::make_inspect_set(pr::fe::kTerminate);
const pr::StreamScanner::InspectSet kBackendInspect =
    pr::make_inspect_set(pr::be::kReadyForQuery, pr::be::kParameterStatus);

}  // namespace

ClientSession::ClientSession(Runtime& rt, Socket socket, std::string peer)
    : rt_(rt), client_(std::move(socket)), peer_(std::move(peer)) {}

ClientSession::~ClientSession() {
  if (key_pid_ != 0) rt_.cancels().remove(key_pid_);
  if (counted_) rt_.clients.fetch_sub(1);
}

void ClientSession::terminate(std::string sqlstate, std::string message) {
  asio::post(client_.get_executor(), [self = shared_from_this(), sqlstate = std::move(sqlstate),
                                      message = std::move(message)]() mutable {
    if (!self->terminate_reason_)
      self->terminate_reason_.emplace(std::move(sqlstate), std::move(message));
    error_code ignored;
    self->client_.cancel(ignored);
    if (self->backend_) self->backend_->socket.cancel(ignored);
  });
}

awaitable<void> ClientSession::send_fatal(std::string_view sqlstate, std::string_view message,
                                          std::string_view detail) {
  pr::Buffer out;
  pr::build_error_response(out, pr::ErrorInfo{.severity = pr::Severity::Fatal,
                                              .sqlstate = sqlstate,
                                              .message = message,
                                              .detail = detail});
  error_code ec;
  co_await write_all(client_, out, ec);
}

awaitable<void> ClientSession::run() {
  auto cfg = rt_.config();
  auto ex = co_await asio::this_coro::executor;
  set_nodelay(client_);
  {
    // Startup and authentication must finish within client_login_timeout.
    Deadline login_deadline(ex, client_, cfg->client_login_timeout);
    if (!co_await read_startup()) co_return;
    if (rt_.draining()) {
      co_await send_fatal("57P03", "sluice: the pooler is shutting down");
      co_return;
    }
    counted_ = true;
    if (rt_.clients.fetch_add(1) + 1 > cfg->max_client_conn) {
      log::session().info("client_refused reason=max_client_conn peer={}", peer_);
      co_await send_fatal("53300", "sluice: no more connections allowed (max_client_conn)");
      co_return;
    }
    auto [pid, secret] = rt_.cancels().add(weak_from_this());
    key_pid_ = pid;
    key_secret_ = secret;
    if (!co_await authenticate()) co_return;
  }
  if (!co_await attach_backend()) {
    co_await cleanup();
    co_return;
  }
  log::session().debug("session_started session={} peer={} db={} user={}", key_pid_, peer_,
                       database_, user_);
  co_await relay();
  co_await cleanup();
  log::session().debug("session_ended session={}", key_pid_);
}

// ---- 1. startup ------------------------------------------------------------------------------

awaitable<bool> ClientSession::read_startup() {
  bool answered_ssl = false;
  bool answered_gss = false;
  for (;;) {
    error_code ec;
    if (!co_await read_at_least(client_, in_, 4, ec)) co_return false;
    auto r = pr::peek_startup(in_.view());
    if (r.status == pr::DecodeStatus::NeedMore) {
      std::size_t want = pr::read_u32(in_.view().data());
      if (!co_await read_at_least(client_, in_, want, ec)) co_return false;
      r = pr::peek_startup(in_.view());
    }
    if (r.status != pr::DecodeStatus::Ok) {
      log::session().info("client_protocol_error phase=startup peer={} error={}", peer_,
                          pr::to_string(r.error));
      if (r.error == pr::FrameError::UnsupportedProtocol) {
        co_await send_fatal("0A000", "sluice: unsupported frontend protocol");
      } else {
        co_await send_fatal("08P01", "invalid startup packet layout");
      }
      co_return false;
    }
    pr::ByteView msg = in_.view().first(r.length);
    switch (r.kind) {
      case pr::StartupKind::SslRequest:
      case pr::StartupKind::GssEncRequest: {
        bool& answered = r.kind == pr::StartupKind::SslRequest ? answered_ssl : answered_gss;
        in_.consume(r.length);
        // Bytes after an encryption request, before our answer, would be read as plaintext that
        // a man in the middle could have injected (CVE-2021-23222): refuse them.
        if (answered || !in_.empty()) {
          co_await send_fatal("08P01", "invalid startup packet sequence");
          co_return false;
        }
        answered = true;
        const char no = 'N';
        co_await asio::async_write(client_, asio::buffer(&no, 1), ec_token(ec));
        if (ec) co_return false;
        continue;
      }
      case pr::StartupKind::CancelRequest:
        co_await handle_cancel_request(msg);
        co_return false;
      case pr::StartupKind::Startup:
        break;
    }
    auto startup = pr::read_startup_message(msg);
    if (!startup) {
      co_await send_fatal("08P01", "invalid startup packet layout");
      co_return false;
    }
    std::vector<std::string> unrecognized;
    for (const auto& [name, value] : startup->params) {
      if (name == "user") {
        user_ = value;
      } else if (name == "database") {
        database_ = value;
      } else if (name == "options") {
        auto parsed = pr::parse_startup_options(value);
        if (!parsed) {
          co_await send_fatal("08P01", "sluice: invalid \"options\" startup parameter");
          co_return false;
        }
        for (auto& p : *parsed) client_params_.push_back(std::move(p));
      } else if (name == "replication") {
        if (value != "false" && value != "0" && value != "off" && value != "no") {
          co_await send_fatal("08P01", "sluice: replication connections are not supported");
          co_return false;
        }
      } else if (name.starts_with("_pq_.")) {
        unrecognized.emplace_back(name);
      } else {
        if (name == "application_name") app_name_ = value;
        client_params_.emplace_back(std::string(name), std::string(value));
      }
    }
    in_.consume(r.length);
    if (user_.empty()) {
      co_await send_fatal("28000", "no PostgreSQL user name specified in startup packet");
      co_return false;
    }
    if (database_.empty()) database_ = user_;
    if ((startup->protocol & 0xffff) != 0 || !unrecognized.empty()) {
      // We speak 3.0: tell a newer client so, as PostgreSQL does.
      std::vector<std::string_view> names(unrecognized.begin(), unrecognized.end());
      pr::Buffer out;
      pr::build_negotiate_protocol_version(out, 0, names);
      if (!co_await write_all(client_, out, ec)) co_return false;
    }
    co_return true;
  }
}

awaitable<void> ClientSession::handle_cancel_request(pr::ByteView msg) {
  auto req = pr::read_cancel_request(msg);
  if (!req) co_return;
  auto target = rt_.cancels().lookup(req->pid, req->secret);
  if (!target) {
    log::session().debug("cancel_ignored reason=no_match_or_idle peer={}", peer_);
    co_return;
  }
  log::session().info("cancel_forwarded session={} backend_pid={}", req->pid, target->pid);
  co_await send_cancel_request(co_await asio::this_coro::executor, target->endpoint, target->pid,
                               target->secret);
}

// ---- 3. authentication -----------------------------------------------------------------------

awaitable<std::optional<std::size_t>> ClientSession::read_client_message(char expected_type) {
  error_code ec;
  pr::FrameError err = pr::FrameError::None;
  auto size =
      co_await read_message(client_, in_, pr::Direction::Frontend, kMaxAuthMessage, err, ec);
  if (!size) {
    if (err != pr::FrameError::None) co_await send_fatal("08P01", "invalid message framing");
    co_return std::nullopt;
  }
  if (static_cast<char>(in_.view()[0]) != expected_type) {
    co_await send_fatal("08P01", "expected password response, got another message type");
    co_return std::nullopt;
  }
  co_return size;
}

awaitable<void> ClientSession::auth_failed() {
  log::session().info("login_failed reason=password peer={} user={}", peer_, user_);
  co_await send_fatal("28P01", "password authentication failed for user \"" + user_ + "\"");
}

awaitable<bool> ClientSession::authenticate() {
  auto cfg = rt_.config();
  auto store = rt_.auth();
  const UserSecret* secret = store->find(user_);
  bool ok = false;
  switch (cfg->auth_type) {
    case config::AuthType::Trust:
      ok = true;
      break;
    case config::AuthType::Md5:
      // As PostgreSQL: md5 users whose secret is a SCRAM verifier authenticate with SCRAM.
      if (secret != nullptr && secret->kind == UserSecret::Kind::Scram) {
        ok = co_await auth_scram(secret);
      } else {
        ok = co_await auth_password(secret, true);
      }
      break;
    case config::AuthType::ScramSha256:
      ok = co_await auth_scram(secret);
      break;
  }
  if (!ok) co_return false;
  pr::Buffer out;
  pr::build_auth_ok(out);
  error_code ec;
  co_return co_await write_all(client_, out, ec);
}

awaitable<bool> ClientSession::auth_password(const UserSecret* secret, bool /*md5*/) {
  std::string salt_bytes = auth::random_bytes(4);
  std::array<unsigned char, 4> salt{};
  std::memcpy(salt.data(), salt_bytes.data(), 4);
  pr::Buffer out;
  pr::build_auth_md5(
      out, std::span<const std::byte, 4>(reinterpret_cast<const std::byte*>(salt.data()), 4));
  error_code ec;
  if (!co_await write_all(client_, out, ec)) co_return false;
  auto size = co_await read_client_message(pr::fe::kPassword);
  if (!size) co_return false;
  auto password = pr::read_password_message(in_.view().first(*size));
  std::string given = password ? std::string(*password) : std::string();
  in_.consume(*size);
  if (!password) {
    co_await send_fatal("08P01", "invalid password packet");
    co_return false;
  }
  std::string md5secret;
  if (secret != nullptr && secret->kind == UserSecret::Kind::Md5) md5secret = secret->text;
  if (secret != nullptr && secret->kind == UserSecret::Kind::Plain) {
    md5secret = auth::md5_secret(secret->text, user_);
  }
  if (md5secret.empty() ||
      !auth::constant_time_equal(given, auth::md5_response_from_secret(md5secret, salt))) {
    co_await auth_failed();
    co_return false;
  }
  co_return true;
}

awaitable<bool> ClientSession::auth_scram(const UserSecret* secret) {
  const std::string_view mechs[] = {"SCRAM-SHA-256"};
  pr::Buffer out;
  pr::build_auth_sasl(out, mechs);
  error_code ec;
  if (!co_await write_all(client_, out, ec)) co_return false;

  auth::ScramSecret verifier = secret != nullptr ? secret->scram : rt_.auth()->mock_secret(user_);
  auth::ScramServer server(verifier, auth::base64_encode(auth::random_bytes(18)));

  auto size = co_await read_client_message(pr::fe::kPassword);
  if (!size) co_return false;
  auto initial = pr::read_sasl_initial_response(in_.view().first(*size));
  if (!initial || initial->mechanism != "SCRAM-SHA-256") {
    co_await send_fatal("08P01", "client selected an invalid SASL authentication mechanism");
    co_return false;
  }
  auto server_first = server.handle_client_first(initial->data);
  in_.consume(*size);
  if (!server_first) {
    co_await send_fatal("08P01", "malformed SCRAM message");
    co_return false;
  }
  out.clear();
  pr::build_auth_sasl_continue(out, *server_first);
  if (!co_await write_all(client_, out, ec)) co_return false;

  size = co_await read_client_message(pr::fe::kPassword);
  if (!size) co_return false;
  auto response = pr::read_sasl_response(in_.view().first(*size));
  std::optional<std::string> server_final;
  if (response) server_final = server.handle_client_final(*response);
  in_.consume(*size);
  if (!server_final || secret == nullptr) {
    if (server.error() == auth::ScramError::BadProof || secret == nullptr) {
      co_await auth_failed();
    } else {
      co_await send_fatal("08P01", "malformed SCRAM message");
    }
    co_return false;
  }
  if (secret->kind == UserSecret::Kind::Scram) {
    scram_client_key_ = server.client_key();
    scram_server_key_ = secret->scram.server_key;
  }
  out.clear();
  pr::build_auth_sasl_final(out, *server_final);
  co_return co_await write_all(client_, out, ec);
}

// ---- 4. backend ------------------------------------------------------------------------------

BackendCredentials ClientSession::backend_credentials() const {
  auto cfg = rt_.config();
  auto store = rt_.auth();
  const config::Database* db = cfg->find_database(database_);
  BackendCredentials c;
  auto from_secret = [&c](const UserSecret* s) {
    if (s == nullptr) return;
    if (s->kind == UserSecret::Kind::Plain) c.password = s->text;
    if (s->kind == UserSecret::Kind::Md5) c.md5_secret = s->text;
  };
  if (db != nullptr && !db->user.empty()) {
    c.user = db->user;
    if (auth::is_md5_secret(db->password)) {
      c.md5_secret = db->password;
    } else if (!db->password.empty()) {
      c.password = db->password;
    } else {
      from_secret(store->find(db->user));
    }
    return c;
  }
  c.user = user_;
  from_secret(store->find(user_));
  if (scram_client_key_ && scram_server_key_) {
    c.scram_client_key = scram_client_key_;
    c.scram_server_key = scram_server_key_;
  }
  return c;
}

awaitable<bool> ClientSession::attach_backend() {
  auto cfg = rt_.config();
  const config::Database* db = cfg->find_database(database_);
  if (db == nullptr) {
    log::session().info("login_failed reason=unknown_database peer={} user={} db={}", peer_, user_,
                        database_);
    co_await send_fatal("3D000", "database \"" + database_ + "\" does not exist");
    co_return false;
  }
  BackendCredentials creds = backend_credentials();
  pool_ = &rt_.pools().pool_for(*db, creds.user);
  bool can_login =
      creds.password || creds.md5_secret || (creds.scram_client_key && creds.scram_server_key);
  if (can_login) rt_.pools().learn_credentials(*pool_, creds);

  auto acquired = co_await rt_.pools().acquire(*pool_, cfg->query_wait_timeout);
  if (auto* failure = std::get_if<PoolManager::AcquireFailure>(&acquired)) {
    switch (*failure) {
      case PoolManager::AcquireFailure::Closed:
        co_await send_fatal("57P01", "sluice: the pooler is shutting down");
        break;
      case PoolManager::AcquireFailure::QueueFull:
        co_await send_fatal("53300", "sluice: too many clients waiting for a backend connection");
        break;
      case PoolManager::AcquireFailure::TimedOut:
        co_await send_fatal("53300", "sluice: no backend connection became free in time",
                            "query_wait_timeout passed while waiting in the queue");
        break;
    }
    co_return false;
  }
  lease_ = std::move(std::get<Lease>(acquired));

  auto checked = co_await rt_.pools().checkout(*pool_, {}, cfg->max_message_size);
  if (auto* err = std::get_if<BackendError>(&checked)) {
    co_await send_fatal(err->sqlstate, err->message, err->detail);
    co_return false;
  }
  backend_ = std::move(std::get<std::shared_ptr<Backend>>(checked));
  if (!co_await sync_parameters()) co_return false;

  pr::Buffer out;
  for (const auto& [name, value] : backend_->reported) pr::build_parameter_status(out, name, value);
  pr::build_backend_key_data(out, key_pid_, key_secret_);
  pr::build_ready_for_query(out, pr::TxStatus::Idle);
  error_code ec;
  if (!co_await write_all(client_, out, ec)) co_return false;
  if (backend_->remote) {
    rt_.cancels().set_target(key_pid_,
                             CancelTarget{*backend_->remote, backend_->pid, backend_->secret});
  }
  co_return true;
}

awaitable<bool> ClientSession::sync_parameters() {
  std::string sql;
  for (const auto& [name, value] : client_params_) {
    if (backend_->known_value(name) == value) continue;
    sql += "SET " + quote_ident(name) + " TO " + quote_literal(value) + ";";
  }
  if (sql.empty()) co_return true;
  auto cfg = rt_.config();
  auto err = co_await run_internal_query(*backend_, sql, cfg->max_message_size);
  if (err) {
    co_await send_fatal(err->sqlstate, err->message, err->detail);
    co_return false;
  }
  co_return true;
}

// ---- 5. relay --------------------------------------------------------------------------------

awaitable<void> ClientSession::relay() {
  auto ex = co_await asio::this_coro::executor;
  pump_done_.emplace(ex);
  pump_done_->expires_at(asio::steady_timer::time_point::max());
  backend_pump_done_ = false;
  asio::co_spawn(ex, backend_to_client(), [self = shared_from_this()](std::exception_ptr e) {
    if (e) {
      log::session().error("session_exception session={} where=backend_to_client", self->key_pid_);
      self->backend_failed_ = true;
    }
    self->backend_pump_done_ = true;
    self->pump_done_->cancel();
  });
  co_await client_to_backend();
  if (!backend_pump_done_) {
    // The client is done (Terminate, EOF or error): stop reading from the backend and wait for
    // the pump to notice.
    error_code ec;
    backend_->socket.cancel(ec);
    co_await pump_done_->async_wait(ec_token(ec));
  }
}

awaitable<void> ClientSession::client_to_backend() {
  const std::uint32_t max_message = rt_.config()->max_message_size;
  pr::StreamScanner scanner(pr::Direction::Frontend, max_message, kClientInspect);
  Backend& b = *backend_;
  error_code ec;
  for (;;) {
    in_.reserve_tail(kRelayChunk);
    std::size_t n = co_await client_.async_read_some(in_.tail(), ec_token(ec));
    if (ec) break;
    in_.commit(n);
    pr::ByteView view = in_.view();
    std::size_t fwd = 0;
    bool stop = false;
    while (!stop) {
      pr::ScanStep step = scanner.next(view.subspan(fwd));
      if (step.kind == pr::ScanStep::Kind::NeedMore) break;
      switch (step.kind) {
        case pr::ScanStep::Kind::Error:
          log::session().info("client_protocol_error session={} error={}", key_pid_,
                              pr::to_string(step.error));
          if (!terminate_reason_) terminate_reason_.emplace("08P01", "invalid message framing");
          client_mid_message_ = true;
          stop = true;
          break;
        case pr::ScanStep::Kind::Message:  // Terminate: the client is leaving
          client_terminated_ = true;
          stop = true;
          break;
        case pr::ScanStep::Kind::Header:
          switch (step.frame.type) {
            case pr::fe::kQuery:
            case pr::fe::kFunctionCall:
              ++pending_syncs_;
              break;
            case pr::fe::kSync:
              ++pending_syncs_;
              unsynced_extended_ = false;
              break;
            case pr::fe::kParse:
            case pr::fe::kBind:
            case pr::fe::kDescribe:
            case pr::fe::kExecute:
            case pr::fe::kClose:
            case pr::fe::kFlush:
              unsynced_extended_ = true;
              break;
            default:
              break;
          }
          fwd += step.n;
          break;
        default:
          fwd += step.n;
          break;
      }
    }
    if (fwd > 0) {
      co_await asio::async_write(b.socket, asio::buffer(view.data(), fwd), ec_token(ec));
      if (ec) {
        backend_failed_ = true;
        break;
      }
      in_.consume(fwd);
    }
    if (stop) break;
  }
  client_mid_message_ =
      client_mid_message_ || scanner.in_body() || (!client_terminated_ && !in_.empty());
}

awaitable<void> ClientSession::backend_to_client() {
  const std::uint32_t max_message = rt_.config()->max_message_size;
  pr::StreamScanner scanner(pr::Direction::Backend, max_message, kBackendInspect);
  Backend& b = *backend_;
  ReadBuffer& in = b.buf;
  error_code ec;
  bool client_gone = false;
  for (;;) {
    in.reserve_tail(kRelayChunk);
    std::size_t n = co_await b.socket.async_read_some(in.tail(), ec_token(ec));
    if (ec) break;
    in.commit(n);
    pr::ByteView view = in.view();
    std::size_t fwd = 0;
    bool framing_lost = false;
    for (;;) {
      pr::ScanStep step = scanner.next(view.subspan(fwd));
      if (step.kind == pr::ScanStep::Kind::NeedMore) {
        if (step.frame.length > 0) in.reserve_tail(step.frame.size());
        break;
      }
      if (step.kind == pr::ScanStep::Kind::Error) {
        log::session().error("backend_protocol_error session={} error={}", key_pid_,
                             pr::to_string(step.error));
        framing_lost = true;
        break;
      }
      if (step.kind == pr::ScanStep::Kind::Message) {
        pr::ByteView msg = view.subspan(fwd, step.n);
        if (step.frame.type == pr::be::kReadyForQuery) {
          b.tx = pr::read_ready_for_query(msg).value_or(pr::TxStatus::Failed);
          if (pending_syncs_ > 0) --pending_syncs_;
        } else if (auto p = pr::read_parameter_status(msg)) {
          b.reported[std::string(p->name)] = std::string(p->value);
        }
      }
      fwd += step.n;
    }
    if (fwd > 0) {
      co_await asio::async_write(client_, asio::buffer(view.data(), fwd), ec_token(ec));
      in.consume(fwd);
      if (ec) {
        client_gone = true;
        break;
      }
    }
    backend_mid_message_ = scanner.in_body();
    if (framing_lost) {
      backend_failed_ = true;
      break;
    }
  }
  backend_mid_message_ = backend_mid_message_ || scanner.in_body() || !in.empty();
  if (ec && ec != asio::error::operation_aborted && !client_gone) {
    backend_failed_ = true;  // EOF or reset: the server ended the connection
  }
  if (backend_failed_ || client_gone) {
    // Wake the other pump: the session cannot go on.
    error_code ignored;
    client_.cancel(ignored);
  }
}

// ---- 6. cleanup ------------------------------------------------------------------------------

awaitable<void> ClientSession::cleanup() {
  auto cfg = rt_.config();
  if (key_pid_ != 0) rt_.cancels().set_target(key_pid_, std::nullopt);
  if (backend_) {
    bool reusable = !backend_failed_ && !backend_mid_message_ && !client_mid_message_ &&
                    pending_syncs_ == 0 && !unsynced_extended_ &&
                    backend_->tx == pr::TxStatus::Idle && backend_->socket.is_open();
    const std::string& reset = pool_->db.server_reset_query;
    if (reusable && !reset.empty()) {
      auto ex = co_await asio::this_coro::executor;
      Deadline deadline(ex, backend_->socket, std::chrono::seconds(5));
      auto err = co_await run_internal_query(*backend_, reset, cfg->max_message_size);
      if (err || deadline.fired() || backend_->tx != pr::TxStatus::Idle) {
        log::session().warn("backend_reset_failed session={} pid={}", key_pid_, backend_->pid);
        reusable = false;
      }
    }
    if (pending_syncs_ > 0 && !backend_failed_ && backend_->remote) {
      // The client left with a query still running: cancel it so the server stops working for
      // nobody (closing the socket alone is noticed only when the server next writes).
      asio::co_spawn(co_await asio::this_coro::executor,
                     send_cancel_request(co_await asio::this_coro::executor, *backend_->remote,
                                         backend_->pid, backend_->secret),
                     [](std::exception_ptr) {});
    }
    backend_->buf.release_memory();
    rt_.pools().checkin(*pool_, std::move(backend_), reusable);
  }
  lease_.reset();
  if (terminate_reason_ && client_.is_open() && !backend_mid_message_) {
    co_await send_fatal(terminate_reason_->first, terminate_reason_->second);
  }
  error_code ignored;
  client_.shutdown(Socket::shutdown_both, ignored);
  client_.close(ignored);
}

}  // namespace sluice
