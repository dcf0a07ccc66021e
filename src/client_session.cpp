#include "src/client_session.hpp"

#include "protocol/messages.hpp"
#include "protocol/startup_options.hpp"
#include "protocol/stream_scanner.hpp"
#include "src/admin/admin_session.hpp"
#include "src/auth/md5.hpp"
#include "src/auth/scram.hpp"
#include "src/auth_query.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"
#include "src/statement_names.hpp"
#include "src/tls.hpp"

#include <cstring>

namespace sluice {

namespace pr = protocol;

namespace {

constexpr std::string_view kAdminDatabase = "sluice";

// Authentication messages are small; a client that sends more is not authenticating.
constexpr std::uint32_t kMaxAuthMessage = 8192;

// What the scanners are constructed with until the relay sets them up (session_relay.cpp).
const pr::StreamScanner::InspectSet kInspectNothing{};

// The client's IP address (none for a Unix-socket client).
std::optional<asio::ip::address> peer_address(const Socket& s) {
  auto tcp = tcp_peer(s);
  return tcp ? std::optional(tcp->address()) : std::nullopt;
}

}  // namespace

ClientSession::ClientSession(Runtime& rt, Socket socket, std::string peer,
                             ConnectionGate::Ticket ticket)
    : rt_(rt),
      client_(std::move(socket)),
      peer_(std::move(peer)),
      ticket_(std::move(ticket)),
      statements_(&statement_backend_name, &intern_statement_body),
      client_scanner_(pr::Direction::Frontend, 0, kInspectNothing),
      backend_scanner_(pr::Direction::Backend, 0, kInspectNothing) {}

ClientSession::~ClientSession() {
  unlist_idle();  // only when destroyed with its event loop, in the middle of a wait
  if (key_pid_ != 0) rt_.cancels().remove(key_pid_);
  if (class_counted_) rt_.pools().release_client(*class_);
  if (pool_ != nullptr) rt_.pools().leave_pool(*pool_);
}

std::optional<asio::ip::address> ClientSession::client_address() const {
  if (tls_peer_) return *tls_peer_;  // client_ is then the TLS bridge's socketpair
  return peer_address(client_);
}

ClientSnapshot ClientSession::describe() const {
  ClientSnapshot c{.id = key_pid_,
                   .peer = peer_,
                   .user = user_,
                   .database = database_,
                   .application_name = app_name_,
                   .server = class_ ? class_->server_name : std::string(),
                   .bulkhead = class_ ? class_->name : std::string(),
                   .state = state_.load(std::memory_order_relaxed),
                   .connected_at = connected_at_,
                   .backend_pid = backend_pid_.load(std::memory_order_relaxed)};
  if (c.state == ClientState::Waiting) {
    const auto since = wait_since_ns_.load(std::memory_order_relaxed);
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    c.waiting_for = std::chrono::nanoseconds(std::max<std::int64_t>(0, now - since));
  }
  return c;
}

void ClientSession::set_state(ClientState s) { state_.store(s, std::memory_order_relaxed); }

// The admin console: admin_users may do everything, stats_users only SHOW, anyone else is
// refused. The welcome is Sluice's own (no backend behind it).
awaitable<void> ClientSession::run_admin() {
  auto cfg = rt_.config();
  const auto listed = [this](const std::vector<std::string>& users) {
    return std::find(users.begin(), users.end(), user_) != users.end();
  };
  AdminRole role = AdminRole::Stats;
  if (listed(cfg->admin_users)) {
    role = AdminRole::Admin;
  } else if (!listed(cfg->stats_users)) {
    log::session().info("admin_refused peer={} user={}", peer_, log::value(user_));
    co_await send_fatal("42501", "permission denied for the admin console",
                        "user \"" + user_ + "\" is in neither admin_users nor stats_users");
    co_return;
  }
  log::session().info("admin_login session={} peer={} user={} role={}", key_pid_, peer_,
                      log::value(user_), role == AdminRole::Admin ? "admin" : "stats");
  set_state(ClientState::Active);
  pr::Buffer out;
  const std::pair<std::string_view, std::string_view> params[] = {
      {"server_version", "15.0 (Sluice " SLUICE_VERSION ")"},
      {"server_encoding", "UTF8"},
      {"client_encoding", "UTF8"},
      {"DateStyle", "ISO, MDY"},
      {"integer_datetimes", "on"},
      {"standard_conforming_strings", "on"},
      {"TimeZone", "UTC"},
      {"application_name", app_name_}};
  for (const auto& [name, value] : params) pr::build_parameter_status(out, name, value);
  pr::build_backend_key_data(out, key_pid_, key_secret_);
  pr::build_ready_for_query(out, pr::TxStatus::Idle);
  error_code ec;
  if (!co_await write_all(client_, out, ec)) co_return;
  co_await serve_admin(client_, in_, role, rt_, cfg->max_message_size);
}

void ClientSession::cancel_wait() {
  asio::post(client_.get_executor(), [self = shared_from_this()] {
    if (!self->waiting_.expired()) self->rt_.pools().abandon(self->waiting_);
  });
}

void ClientSession::terminate(std::string sqlstate, std::string message) {
  asio::post(client_.get_executor(), [self = shared_from_this(), sqlstate = std::move(sqlstate),
                                      message = std::move(message)] {
    self->set_terminate_reason(sqlstate, message);
    error_code ignored;
    self->client_.cancel(ignored);
    self->woken_for_detach_ = false;  // this cancel ends the session; it is no hand-back wake-up
    if (self->backend_) self->backend_->socket.cancel(ignored);
  });
}

awaitable<void> ClientSession::send_fatal(std::string_view sqlstate, std::string_view message,
                                          std::string_view detail, std::string_view hint) {
  pr::Buffer out;
  pr::build_error_response(out, pr::ErrorInfo{.severity = pr::Severity::Fatal,
                                              .sqlstate = sqlstate,
                                              .message = message,
                                              .detail = detail,
                                              .hint = hint});
  error_code ec;
  co_await write_all(client_, out, ec);
}

awaitable<void> ClientSession::run() {
  auto cfg = rt_.config();
  auto ex = co_await asio::this_coro::executor;
  set_nodelay(client_);
  {
    // Startup and authentication must finish within client_login_timeout (never unbounded:
    // login_time_limit()).
    const std::chrono::milliseconds login_limit = login_time_limit(*cfg);
    Deadline login_deadline(ex, client_, login_limit);
    const bool over_limit = ticket_.verdict() == ConnectionGate::Verdict::OverLimit;
    {
      // Beyond max_client_conn a connection only has a moment to say what it wants.
      Deadline startup_deadline(ex, client_,
                                over_limit
                                    ? std::min(login_limit, ConnectionGate::kOverLimitStartup)
                                    : std::chrono::milliseconds(0));
      if (!co_await read_startup()) co_return;
    }
    if (rt_.draining()) {
      co_await send_fatal("57P03", "sluice: the pooler is shutting down");
      co_return;
    }
    // The allowance beyond max_client_conn lets an operator reach the admin console.
    if (over_limit && database_ != kAdminDatabase) {
      log::session().info("client_refused reason=max_client_conn peer={}", peer_);
      rt_.metrics().count_connection_refused(ConnectionLimit::MaxClientConn);
      co_await send_fatal("53300", "sluice: no more connections allowed (max_client_conn)");
      co_return;
    }
    if (!co_await classify(*cfg)) co_return;
    // Registered after classification: what other threads read of this session (describe())
    // no longer changes from here on.
    auto [pid, secret] = rt_.cancels().add(weak_from_this());
    key_pid_ = pid;
    cancel_slot_ = rt_.cancels().slot(pid);
    key_secret_ = secret;
    if (!co_await authenticate()) co_return;
    ticket_.authenticated();  // no longer one of its peer's logins
    if (!co_await charge_bulkhead()) co_return;
  }
  if (database_ == kAdminDatabase) {
    co_await run_admin();
    error_code ignored;
    client_.shutdown(Socket::shutdown_both, ignored);
    client_.close(ignored);
    co_return;
  }
  if (!co_await login_attach()) {
    co_await cleanup();
    co_return;
  }
  log::session().debug("session_started session={} peer={} db={} user={} application_name={}",
                       key_pid_, peer_, log::value(database_), log::value(user_),
                       log::value(app_name_));
  // Until the session ends, or until it first parks (then a wait holds it, and this frame, the
  // login's, is freed).
  co_await relay(false, {});
}

// ---- 2. admission to a bulkhead --------------------------------------------------------------

// Classified once, before authentication: a refusal costs no authentication work. Nothing of the
// bulkhead's budget is spent until charge_bulkhead(), after authentication (issue 12, item 5).
awaitable<bool> ClientSession::classify(const config::Config& cfg) {
  const config::Database* db = cfg.find_database(database_);
  if (db == nullptr) co_return true;  // unknown database: 3D000 after authentication
  auto classified = rt_.pools().classify_client(cfg, *db,
                                                ClientInfo{.user = user_,
                                                           .database = database_,
                                                           .application_name = app_name_,
                                                           .address = client_address()});
  if (auto* refusal = std::get_if<AdmissionRefusal>(&classified)) {
    co_await refuse_client(*refusal);
    co_return false;
  }
  class_ = std::move(std::get<ClientClass>(classified));
  series_ = rt_.metrics().bulkhead_series(class_->server_name, class_->name);
  if (class_->statement_timeout.count() > 0) {
    statement_limit_ = class_->statement_timeout;
    statement_grace_ = cfg.statement_timeout_grace;
    // The database enforces the class's timeout unless the client asked for its own.
    if (params_->find("statement_timeout") == nullptr) {
      params_ = ParamSetTable::process().with(params_, "statement_timeout",
                                              std::to_string(class_->statement_timeout.count()));
    }
  }
  co_return true;
}

// The authenticated client is counted in its bulkhead's max_clients and takes a token of its
// connection rate; refused (as before authentication) if the budget went meanwhile.
awaitable<bool> ClientSession::charge_bulkhead() {
  if (!class_) co_return true;
  if (auto refusal = rt_.pools().admit_client(*class_)) {
    co_await refuse_client(*refusal);
    co_return false;
  }
  class_counted_ = true;
  co_return true;
}

awaitable<void> ClientSession::refuse_client(const AdmissionRefusal& refusal) {
  log::session().info("client_refused reason={} peer={} db={} user={}",
                      pools::to_string(refusal.reason), peer_, log::value(database_),
                      log::value(user_));
  co_await send_fatal(refusal.sqlstate, refusal.message, refusal.detail, refusal.hint);
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
      rt_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
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
        // TLS for TCP clients when configured (PostgreSQL refuses it over Unix sockets too).
        std::shared_ptr<asio::ssl::context> tls;
        std::optional<asio::ip::address> address;
        if (r.kind == pr::StartupKind::SslRequest && (tls = rt_.client_tls()) &&
            (address = peer_address(client_))) {
          const char yes = 'S';
          co_await asio::async_write(client_, asio::buffer(&yes, 1), ec_token(ec));
          if (ec) co_return false;
          // The handshake ends with the login's time, or an over-limit connection's moment.
          auto handshake_limit = login_time_limit(*rt_.config());
          if (ticket_.verdict() == ConnectionGate::Verdict::OverLimit) {
            handshake_limit = std::min(handshake_limit, ConnectionGate::kOverLimitStartup);
          }
          try {
            TlsBridge::start(client_, std::move(tls), handshake_limit, peer_);
          } catch (const std::exception& e) {
            log::session().warn("tls_start_failed peer={} error=\"{}\"", peer_,
                                log::escaped(e.what()));
            co_return false;
          }
          tls_peer_ = std::make_unique<const asio::ip::address>(*address);
          continue;  // the startup packet comes through the TLS bridge
        }
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
    Params requested;
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
        for (auto& p : *parsed) requested.push_back(std::move(p));
      } else if (name == "replication") {
        if (value != "false" && value != "0" && value != "off" && value != "no") {
          co_await send_fatal("08P01", "sluice: replication connections are not supported");
          co_return false;
        }
      } else if (name.starts_with("_pq_.")) {
        unrecognized.emplace_back(name);
      } else {
        if (name == "application_name") app_name_ = value;
        requested.emplace_back(std::string(name), std::string(value));
      }
    }
    in_.consume(r.length);
    params_ = ParamSetTable::process().intern(std::move(requested));
    if (!tls_peer_ && rt_.config()->client_tls_mode == config::ClientTlsMode::Require &&
        peer_address(client_)) {
      log::session().info("client_refused reason=tls_required peer={} user={}", peer_,
                          log::value(user_));
      co_await send_fatal("28000", "SSL required",
                          "sluice: client_tls_mode is \"require\" for TCP connections",
                          "Connect with sslmode=require (or verify-ca, verify-full).");
      co_return false;
    }
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

// Issue 12, item 10: the peer's cancel budget first (CancelRateLimiter), then the key. Whatever
// the outcome, the client's connection is closed before anything is done about it, as PostgreSQL
// answers every CancelRequest: neither the answer nor its timing (forwarding waits for the
// backend to take the request) tells a right key from a wrong one.
awaitable<void> ClientSession::handle_cancel_request(pr::ByteView msg) {
  CancelRegistry& cancels = rt_.cancels();
  const bool allowed = cancels.allow_cancel_request(client_address());
  const auto req = pr::read_cancel_request(msg);
  CancelRegistry::Match match;
  if (allowed && req) match = cancels.match(req->pid, req->secret);
  error_code ignored;
  client_.shutdown(Socket::shutdown_both, ignored);
  client_.close(ignored);

  CancelOutcome outcome = CancelOutcome::UnknownKey;
  if (!allowed) {
    outcome = CancelOutcome::RateLimited;
  } else if (match.session && match.target) {
    outcome = CancelOutcome::Forwarded;
  } else if (match.session) {
    // Not running anything on a backend: it may be waiting in a queue; it then leaves it.
    const bool queued =
        match.session->state_.load(std::memory_order_relaxed) == ClientState::Waiting;
    outcome = queued ? CancelOutcome::Dequeued : CancelOutcome::NothingRunning;
    match.session->cancel_wait();
  }
  rt_.metrics().count_cancel_request(outcome);
  if (outcome != CancelOutcome::Forwarded) {
    log::session().debug("cancel_request outcome={} peer={}", to_string(outcome), peer_);
    co_return;
  }
  log::session().info("cancel_forwarded session={} backend_pid={}", req->pid, match.target->pid);
  // series_ was set before the session was registered and never changes: safe to read here.
  if (match.session->series_ != nullptr) match.session->series_->count_statement_cancel();
  co_await send_cancel_request(co_await asio::this_coro::executor, match.target->endpoint,
                               match.target->pid, match.target->secret);
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
  log::session().info("login_failed reason=password peer={} user={}", peer_, log::value(user_));
  co_await send_fatal("28P01", "password authentication failed for user \"" + user_ + "\"");
}

awaitable<bool> ClientSession::authenticate() {
  auto cfg = rt_.config();
  auto store = rt_.auth();
  const UserSecret* secret = store->find(user_);
  // auth_query (src/auth_query.hpp): a user missing from auth_file may be looked up on the
  // server; nothing found (or a failed lookup) leaves secret null, i.e. an unknown user (28P01).
  if (secret == nullptr && database_ != kAdminDatabase) {
    queried_secret_ = co_await lookup_user_secret(*cfg, *store, database_, user_, client_address());
    secret = queried_secret_.get();
  }
  bool ok = false;
  switch (cfg->auth_type) {
    case config::AuthType::Trust:
      ok = true;
      break;
    case config::AuthType::Md5:
      // As PostgreSQL: a user whose secret is a SCRAM verifier authenticates with SCRAM, any other
      // known user with md5. An unknown user gets the method most of the auth file's users get
      // (PostgreSQL's password_encryption rule), so the method does not tell it from them.
      if (secret != nullptr ? secret->kind == UserSecret::Kind::Scram
                            : store->unknown_user_gets_scram_under_md5()) {
        ok = co_await auth_scram(secret);
      } else {
        ok = co_await auth_password(secret);
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

awaitable<bool> ClientSession::auth_password(const UserSecret* secret) {
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
  // An unknown user is checked against a stand-in secret, so its failure costs what a wrong
  // password costs; `doomed` makes sure it fails.
  const bool doomed = md5secret.empty();
  if (doomed) md5secret = auth::md5_secret(auth::random_bytes(16), user_);
  if (!auth::constant_time_equal(given, auth::md5_response_from_secret(md5secret, salt)) ||
      doomed) {
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

  // A user whose secret cannot answer SCRAM (unknown, or stored as an md5 secret) is shown the
  // mock verifier: the salt this process derives from the name, the usual iteration count. The
  // exchange runs up to the proof and fails there like a wrong password (PostgreSQL's "doomed"
  // exchange), so nothing before the password check tells such a user from a real one.
  const bool doomed = secret == nullptr || secret->kind == UserSecret::Kind::Md5;
  auth::ScramSecret verifier = doomed ? rt_.auth()->mock_secret(user_) : secret->scram;
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
  // A malformed message is 08P01 for unknown and known users alike; only a proof is checked.
  if (!server_final || doomed) {
    if (server.error() == auth::ScramError::BadProof || (server_final && doomed)) {
      co_await auth_failed();
    } else {
      co_await send_fatal("08P01", "malformed SCRAM message");
    }
    co_return false;
  }
  if (secret->kind == UserSecret::Kind::Scram && server.client_key()) {
    scram_keys_ = std::make_unique<std::pair<auth::Key, auth::Key>>(*server.client_key(),
                                                                    secret->scram.server_key);
  }
  out.clear();
  pr::build_auth_sasl_final(out, *server_final);
  co_return co_await write_all(client_, out, ec);
}

}  // namespace sluice
