// ClientSession, stages 4 to 6: attaching backends, relaying, and cleaning up. Session pooling
// attaches one backend at login and keeps it; transaction pooling attaches a backend when the
// client sends its first message of a transaction and gives it back at the ReadyForQuery that
// leaves nothing outstanding (status idle, no Sync or Query unanswered, no extended-protocol
// message waiting for its Sync, no message half-sent in either direction).
#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "protocol/stream_scanner.hpp"
#include "src/auth/md5.hpp"
#include "src/client_session.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"

#include <openssl/sha.h>

#include <algorithm>

namespace sluice {

namespace pr = protocol;

namespace {

// Query and Parse messages up to this size are inspected whole for session-state features;
// beyond it only their first bytes are (a bulk INSERT need not be buffered whole).
constexpr std::size_t kInspectMax = 64 * 1024;

const pr::StreamScanner::InspectSet kClientInspectSession =
    pr::make_inspect_set(pr::fe::kTerminate);
// Transaction pooling looks at every message that names a prepared statement, whole when it is
// at most kInspectMaxTransaction long, else at its first kMinPrefix bytes (a long Bind).
constexpr std::size_t kInspectMaxTransaction = 1024 * 1024;
constexpr std::size_t kMinPrefix = 1024;
const pr::StreamScanner::InspectSet kClientInspectTransaction =
    pr::make_inspect_set(pr::fe::kTerminate, pr::fe::kQuery, pr::fe::kParse, pr::fe::kBind,
                         pr::fe::kDescribe, pr::fe::kClose);
const pr::StreamScanner::InspectSet kBackendInspect =
    pr::make_inspect_set(pr::be::kReadyForQuery, pr::be::kParameterStatus);
const pr::StreamScanner::InspectSet kBackendInspectTransaction =
    pr::make_inspect_set(pr::be::kReadyForQuery, pr::be::kParameterStatus, pr::be::kParseComplete,
                         pr::be::kCloseComplete, pr::be::kErrorResponse);

// Reported parameters a client cannot change; never part of parameter sync.
bool is_settable(std::string_view name) {
  for (std::string_view fixed : {"server_version", "server_encoding", "integer_datetimes",
                                 "is_superuser", "in_hot_standby", "session_authorization"}) {
    if (iequals(fixed, name)) return false;
  }
  return true;
}

std::string_view text_of(pr::ByteView v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

std::string statement_backend_name(std::string_view body) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string name = "sluice_";
  for (int i = 0; i < 16; ++i) {
    name += kHex[digest[i] >> 4];
    name += kHex[digest[i] & 0xf];
  }
  return name;
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
  // A user missing from auth_file logs in with the secret auth_query found for it, if any.
  const UserSecret* own = store->find(user_);
  from_secret(own != nullptr ? own : queried_secret_.get());
  if (scram_client_key_ && scram_server_key_) {
    c.scram_client_key = scram_client_key_;
    c.scram_server_key = scram_server_key_;
  }
  return c;
}

awaitable<bool> ClientSession::login_attach() {
  auto cfg = rt_.config();
  const config::Database* db = cfg->find_database(database_);
  if (db == nullptr) {
    log::session().info("login_failed reason=unknown_database peer={} user={} db={}", peer_, user_,
                        database_);
    co_await send_fatal("3D000", "database \"" + database_ + "\" does not exist");
    co_return false;
  }
  tx_mode_ = db->pool_mode == config::PoolMode::Transaction;
  BackendCredentials creds = backend_credentials();
  pool_ = &rt_.pools().pool_for(*db, creds.user);
  bool can_login =
      creds.password || creds.md5_secret || (creds.scram_client_key && creds.scram_server_key);
  if (can_login) rt_.pools().learn_credentials(*pool_, creds);

  if (tx_mode_) {
    // The pool knows what the server reports: welcome the client without a backend (its
    // settings are applied when its first transaction takes one), so that logging in never
    // waits for, or is refused by, a saturated bulkhead.
    if (auto defaults = rt_.pools().server_defaults(*pool_)) co_return co_await welcome(*defaults);
  }
  // Otherwise a backend now: the client must see the server's ParameterStatus values, with its
  // own settings applied, before its first ReadyForQuery.
  if (auto refusal = co_await acquire_backend(true)) {
    // At connect time every refusal is FATAL: the client has no session to go on with.
    co_await send_fatal(refusal->sqlstate, refusal->message, refusal->detail, refusal->hint);
    co_return false;
  }
  pr::Buffer out;
  for (const auto& [name, value] : backend_->reported) pr::build_parameter_status(out, name, value);
  pr::build_backend_key_data(out, key_pid_, key_secret_);
  pr::build_ready_for_query(out, pr::TxStatus::Idle);
  error_code ec;
  if (!co_await write_all(client_, out, ec)) co_return false;
  if (tx_mode_) detach_backend();
  co_return true;
}

// Transaction pooling, the pool's server parameters known: the client's expected settings are
// the server's defaults overlaid with its startup parameters, as sync_parameters(login) would
// settle them; they reach a backend at the client's first transaction.
awaitable<bool> ClientSession::welcome(const std::map<std::string, std::string>& defaults) {
  Params desired;
  for (const auto& [name, value] : defaults) {
    if (is_settable(name)) desired.emplace_back(name, value);
  }
  for (const auto& [name, value] : client_params_) set_param(desired, name, value);
  pr::Buffer out;
  for (const auto& [name, value] : defaults) {
    const std::string* mine = find_param(client_params_, name);
    pr::build_parameter_status(out, name, mine != nullptr && is_settable(name) ? *mine : value);
  }
  client_params_ = std::move(desired);
  refresh_params_key();
  pr::build_backend_key_data(out, key_pid_, key_secret_);
  pr::build_ready_for_query(out, pr::TxStatus::Idle);
  set_state(ClientState::Idle);
  error_code ec;
  co_return co_await write_all(client_, out, ec);
}

awaitable<std::optional<ClientSession::Refusal>> ClientSession::acquire_backend(bool login) {
  auto cfg = rt_.config();
  if (!class_) {
    co_return Refusal{.sqlstate = "08006",
                      .message = "sluice: the database was added after this client connected",
                      .fatal = true};
  }
  // Nothing else reads the client's socket now: acquire() may watch it for a disconnect.
  wait_since_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                       std::memory_order_relaxed);
  set_state(ClientState::Waiting);
  const auto wait_start = std::chrono::steady_clock::now();
  auto acquired = co_await rt_.pools().acquire(*pool_, *class_, &client_, &waiting_);
  set_state(ClientState::Idle);
  if (series_ != nullptr)
    series_->observe_queue_wait(std::chrono::steady_clock::now() - wait_start);
  if (auto* refusal = std::get_if<AdmissionRefusal>(&acquired)) {
    co_return Refusal{.sqlstate = refusal->sqlstate,
                      .message = refusal->message,
                      .detail = refusal->detail,
                      .hint = refusal->hint};
  }
  if (std::holds_alternative<PoolManager::Cancelled>(acquired)) {
    co_return Refusal{.sqlstate = "57014",
                      .message = "canceling statement due to user request",
                      .detail = "sluice: cancelled while waiting in bulkhead \"" + class_->name +
                                "\"'s queue; it never reached the database"};
  }
  if (std::holds_alternative<PoolManager::ClientGone>(acquired)) {
    client_terminated_ = true;  // nobody to answer
    co_return Refusal{.sqlstate = "08006", .message = "client disconnected", .fatal = true};
  }
  if (std::holds_alternative<PoolManager::Closed>(acquired)) {
    co_return Refusal{
        .sqlstate = "57P01", .message = "sluice: the pooler is shutting down", .fatal = true};
  }
  lease_ = std::move(std::get<Lease>(acquired));

  auto checked = co_await rt_.pools().checkout(*pool_, {}, cfg->max_message_size);
  if (auto* err = std::get_if<BackendError>(&checked)) {
    lease_.reset(pools::LeaseOutcome::Failed);
    co_return Refusal{.sqlstate = err->sqlstate, .message = err->message, .detail = err->detail};
  }
  backend_ = std::move(std::get<std::shared_ptr<Backend>>(checked));
  attached_at_ = std::chrono::steady_clock::now();
  backend_pid_.store(backend_->pid, std::memory_order_relaxed);
  set_state(ClientState::Active);
  backend_->statements.set_capacity(cfg->max_prepared_statements);
  edits_.clear();
  pending_syncs_ = 0;
  unsynced_extended_ = false;
  backend_mid_message_ = false;
  backend_failed_ = false;
  if (auto err = co_await sync_parameters(login)) {
    // A setting the server rejects would fail on every backend: end the session.
    co_return Refusal{
        .sqlstate = err->sqlstate, .message = err->message, .detail = err->detail, .fatal = true};
  }
  if (backend_->remote) {
    rt_.cancels().set_target(key_pid_,
                             CancelTarget{*backend_->remote, backend_->pid, backend_->secret});
  }
  co_return std::nullopt;
}

void ClientSession::detach_backend() {
  rt_.cancels().set_target(key_pid_, std::nullopt);
  set_state(ClientState::Idle);
  backend_pid_.store(0, std::memory_order_relaxed);
  backend_->buf.release_memory();
  rt_.pools().checkin(*pool_, std::move(backend_), true);
  backend_.reset();
  const auto held = std::chrono::steady_clock::now() - attached_at_;
  pool_->traffic.transactions.fetch_add(1, std::memory_order_relaxed);
  pool_->traffic.transaction_ns.fetch_add(
      static_cast<std::uint64_t>(std::chrono::nanoseconds(held).count()),
      std::memory_order_relaxed);
  if (series_ != nullptr) series_->observe_transaction(held);
  lease_.reset(std::exchange(statement_timed_out_, false) ? pools::LeaseOutcome::TimedOut
                                                          : pools::LeaseOutcome::Completed);
}

// Brings the backend's parameters in line with what this client expects. At login the client
// expects the server's defaults overlaid with its startup parameters; later, the values it has
// seen (client_params_, kept up to date from ParameterStatus). One pipelined query of SET and
// RESET statements; nothing when the backend already matches, which is the common case.
awaitable<std::optional<BackendError>> ClientSession::sync_parameters(bool login) {
  Backend& b = *backend_;
  Params login_desired;
  if (login) {
    for (const auto& [name, value] : b.defaults) {
      if (is_settable(name)) login_desired.emplace_back(name, value);
    }
    for (const auto& [name, value] : client_params_) set_param(login_desired, name, value);
  }
  // After login the client's own list is what it expects (no copy: this runs per transaction).
  const Params& desired = login ? login_desired : client_params_;
  // The common case: this backend was last brought in line with exactly these settings.
  if (!login && !b.synced_params_key.empty() && b.synced_params_key == params_key_) {
    co_return std::nullopt;
  }
  std::string sql;
  for (const auto& [name, value] : desired) {
    if (!is_settable(name) || b.known_value(name) == value) continue;
    sql += "SET " + quote_ident(name) + " TO " + quote_literal(value) + ";";
    if (!pr::is_reported_parameter(name)) set_param(b.applied, name, value);
  }
  for (auto it = b.applied.begin(); it != b.applied.end();) {
    if (find_param(desired, it->first) == nullptr) {
      sql += "RESET " + quote_ident(it->first) + ";";
      it = b.applied.erase(it);
    } else {
      ++it;
    }
  }
  if (!sql.empty()) {
    auto err = co_await run_internal_query(b, sql, rt_.config()->max_message_size);
    if (err) {
      backend_failed_ = true;  // its settings are now unknown: never reuse it
      co_return err;
    }
  }
  if (login) {
    // From now on the client's expectations are complete and in the server's spelling.
    Params settled;
    for (const auto& [name, value] : b.reported) {
      if (is_settable(name)) settled.emplace_back(name, value);
    }
    for (const auto& [name, value] : desired) {
      if (!pr::is_reported_parameter(name)) set_param(settled, name, value);
    }
    client_params_ = std::move(settled);
    refresh_params_key();
  }
  b.synced_params_key = params_key_;
  co_return std::nullopt;
}

// The client's expected settings as one string, so a backend can tell in one comparison whether
// it already has them (Backend::synced_params_key).
void ClientSession::refresh_params_key() {
  params_key_.clear();
  for (const auto& [name, value] : client_params_) {
    params_key_ += name;
    params_key_ += '=';
    params_key_ += value;
    params_key_ += '\0';
  }
}

void ClientSession::pin(pr::SessionFeature why) {
  if (!tx_mode_ || pinned_) return;
  pinned_ = true;
  log::session().info("client_pinned session={} reason={} db={} user={}", key_pid_,
                      pr::to_string(why), database_, user_);
}

void ClientSession::inspect_client_message(pr::ByteView msg, bool complete) {
  if (!tx_mode_ || pinned_) return;
  char type = static_cast<char>(msg[0]);
  if (type == pr::fe::kQuery) {
    // A partial Query (longer than kInspectMax) is checked on the bytes present.
    std::string_view sql = complete ? pr::read_query(msg).value_or("") : text_of(msg.subspan(5));
    pr::SessionFeature f = pr::detect_session_feature(sql);
    if (f != pr::SessionFeature::None) pin(f);
  } else if (type == pr::fe::kParse) {
    auto parse = complete ? pr::read_parse(msg) : std::nullopt;
    if (!parse) return;  // named statements are rewritten, not pinned; a huge one is refused
    pr::SessionFeature f = pr::detect_session_feature(parse->query);
    if (f != pr::SessionFeature::None) pin(f);
  }
}

void ClientSession::count_client_message(char type) {
  switch (type) {
    case pr::fe::kQuery:
    case pr::fe::kFunctionCall:
      if (pending_syncs_++ == 0) statement_started();
      edits_.group_sent();
      break;
    case pr::fe::kSync:
      if (pending_syncs_++ == 0) statement_started();
      edits_.group_sent();
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
}

bool ClientSession::can_detach() const {
  return tx_mode_ && !pinned_ && backend_ && !backend_failed_ && pending_syncs_ == 0 &&
         !unsynced_extended_ && !client_mid_message_ && !writing_to_backend_ &&
         !backend_mid_message_ && backend_->buf.empty() && backend_->tx == pr::TxStatus::Idle &&
         edits_.empty();
}

// ---- 5. relay --------------------------------------------------------------------------------

// An ErrorResponse that names a backend statement ("sluice_…"), rewritten with this client's
// name for it; nullopt when there is nothing to rename.
std::optional<pr::Buffer> ClientSession::rename_statements_in_error(pr::ByteView msg) const {
  std::string_view raw(reinterpret_cast<const char*>(msg.data()), msg.size());
  if (raw.find("\"sluice_") == std::string_view::npos) return std::nullopt;
  auto fields = pr::read_error_fields(msg);
  if (!fields) return std::nullopt;
  pr::Buffer out;
  pr::MessageWriter w(out);
  w.begin(pr::be::kErrorResponse);
  for (const auto& [code, value] : fields->fields) {
    std::string text(value);
    for (std::size_t pos = text.find("\"sluice_"); pos != std::string::npos;
         pos = text.find("\"sluice_", pos + 1)) {
      std::size_t end = text.find('"', pos + 1);
      if (end == std::string::npos) break;
      std::string_view client =
          statements_.client_name_of(std::string_view(text).substr(pos + 1, end - pos - 1));
      if (!client.empty()) text.replace(pos + 1, end - pos - 1, client);
    }
    w.add_u8(static_cast<std::uint8_t>(code)).add_cstring(text);
  }
  w.add_u8(0);
  w.finish();
  return out;
}

// Called when the backend has answered everything and the client holds it inside a transaction.
void ClientSession::arm_idle_transaction_timer() {
  auto timeout = class_ ? class_->idle_transaction_timeout : std::chrono::milliseconds(0);
  if (timeout.count() <= 0) {
    auto cfg = rt_.config();
    const config::Database* db = cfg->find_database(pool_->database);
    timeout = db != nullptr ? db->idle_transaction_timeout : pool_->db.idle_transaction_timeout;
  }
  if (timeout.count() <= 0) return;
  if (!idle_tx_timer_) idle_tx_timer_.emplace(client_.get_executor());
  idle_tx_timer_->expires_after(timeout);
  idle_tx_timer_->async_wait([self = shared_from_this(),
                              generation = idle_tx_generation_](error_code ec) {
    if (ec || generation != self->idle_tx_generation_) return;
    log::session().info("client_closed reason=idle_transaction_timeout session={}", self->key_pid_);
    self->terminate("25P03", "terminating connection due to idle-in-transaction timeout");
  });
}

void ClientSession::disarm_idle_transaction_timer() {
  ++idle_tx_generation_;
  if (idle_tx_timer_) idle_tx_timer_->cancel();
}

// A statement (a Query, FunctionCall or Sync) was sent with nothing else outstanding, or the
// previous one of a pipeline was answered: its statement-timeout clock starts now.
void ClientSession::statement_started() {
  statement_started_ = std::chrono::steady_clock::now();
  if (statement_limit_.count() <= 0) return;
  statement_cancel_sent_ = false;
  if (!statement_timer_armed_)
    arm_statement_timer(statement_started_ + statement_limit_ + statement_grace_);
}

// One timer per session, re-armed lazily: a busy client does not touch it per statement.
void ClientSession::arm_statement_timer(std::chrono::steady_clock::time_point at) {
  if (!statement_timer_) statement_timer_.emplace(client_.get_executor());
  statement_timer_armed_ = true;
  statement_timer_->expires_at(at);
  statement_timer_->async_wait([self = shared_from_this()](error_code ec) {
    self->statement_timer_armed_ = false;
    if (!ec) self->on_statement_timer();
  });
}

void ClientSession::on_statement_timer() {
  if (pending_syncs_ == 0 || !backend_ || backend_failed_) return;  // nothing running
  const auto now = std::chrono::steady_clock::now();
  if (!statement_cancel_sent_) {
    const auto deadline = statement_started_ + statement_limit_ + statement_grace_;
    if (now < deadline) {
      arm_statement_timer(deadline);
      return;
    }
    // The database's own statement_timeout should have fired by now: cancel it ourselves.
    statement_cancel_sent_ = true;
    statement_timed_out_ = true;
    statement_cancelled_at_ = now;
    log::session().warn("statement_timeout session={} bulkhead={} backend_pid={} action=cancel",
                        key_pid_, class_ ? class_->name : "", backend_->pid);
    if (series_ != nullptr) series_->count_statement_cancel();
    if (backend_->remote) {
      auto ex = client_.get_executor();
      asio::co_spawn(ex,
                     send_cancel_request(ex, *backend_->remote, backend_->pid, backend_->secret),
                     [](std::exception_ptr) {});
    }
    arm_statement_timer(now + std::max(statement_grace_, std::chrono::milliseconds(100)));
    return;
  }
  if (now < statement_cancelled_at_ + statement_grace_) {
    arm_statement_timer(statement_cancelled_at_ + statement_grace_);
    return;
  }
  // The backend did not come back after the cancel: it is closed, not reused.
  log::session().warn("statement_timeout session={} backend_pid={} action=close_backend", key_pid_,
                      backend_->pid);
  backend_failed_ = true;
  terminate("57014", "canceling statement due to statement timeout");
}

void ClientSession::start_backend_pump() {
  backend_pump_running_ = true;
  woken_for_detach_ = false;
  pump_done_->expires_at(asio::steady_timer::time_point::max());
  asio::co_spawn(client_.get_executor(), backend_to_client(),
                 [self = shared_from_this()](std::exception_ptr e) {
                   if (e) {
                     log::session().error("session_exception session={} where=backend_to_client",
                                          self->key_pid_);
                     self->backend_failed_ = true;
                     error_code ignored;
                     self->client_.cancel(ignored);
                   }
                   self->backend_pump_running_ = false;
                   self->pump_done_->cancel();
                 });
}

void ClientSession::skip_client_message(const pr::ScanStep& step, std::size_t at,
                                        std::size_t& run_start, bool body_follows) {
  add_input_piece(run_start, at);
  run_start = at + step.n;
  skip_body_ = step.kind == pr::ScanStep::Kind::Header && body_follows;
}

void ClientSession::add_input_piece(std::size_t from, std::size_t to) {
  if (to > from) pieces_.push_back(Piece{.scratch = false, .offset = from, .size = to - from});
}

const std::vector<asio::const_buffer>& ClientSession::gather(pr::ByteView input) {
  gather_.clear();
  for (const Piece& p : pieces_) {
    const std::byte* base = p.scratch ? scratch_.data() : input.data();
    gather_.emplace_back(base + p.offset, p.size);
  }
  return gather_;
}

// Transaction pooling: Parse, Bind, Describe, Close and DEALLOCATE are rewritten for the attached
// backend (statement names). Returns false on a malformed message. Adds the output pieces for
// the message at `at` and moves `run_start` past it when it was replaced.
bool ClientSession::rewrite_client_message(pr::ByteView view, const pr::ScanStep& step,
                                           std::size_t at, std::size_t& run_start) {
  const char type = step.frame.type;
  const std::size_t before = scratch_.size();
  pr::StatementMapper::Outcome outcome;
  std::size_t replaced = step.n;
  if (step.kind == pr::ScanStep::Kind::Message) {
    outcome = statements_.rewrite(view.subspan(at, step.n), backend_->statements, edits_, scratch_);
  } else if (type == pr::fe::kBind) {
    outcome = statements_.rewrite_bind_prefix(view.subspan(at, step.n), step.frame.length,
                                              backend_->statements, edits_, scratch_, replaced);
  } else if (type == pr::fe::kParse) {
    // Too long to buffer whole: an unnamed Parse still needs its response accounted for; a
    // named one cannot be rewritten.
    auto name_end =
        std::find(view.begin() + static_cast<std::ptrdiff_t>(at + 5),
                  view.begin() + static_cast<std::ptrdiff_t>(at + step.n), std::byte{0});
    if (name_end != view.begin() + static_cast<std::ptrdiff_t>(at + 5)) return false;
    edits_.expect(pr::ResponseEdits::Edit::Keep);
    return true;
  } else {
    return true;  // a long Query or other message: forwarded as it is
  }
  if (outcome == pr::StatementMapper::Outcome::Malformed) return false;
  if (outcome == pr::StatementMapper::Outcome::Rewritten) {
    add_input_piece(run_start, at);
    pieces_.push_back(Piece{.scratch = true, .offset = before, .size = scratch_.size() - before});
    run_start = at + replaced;
  }
  return true;
}

awaitable<void> ClientSession::relay() {
  auto cfg = rt_.config();
  pump_done_.emplace(client_.get_executor());
  in_.release_memory();  // the small login-phase buffer; the relay takes a recycled one
  if (backend_) start_backend_pump();
  pr::StreamScanner scanner(pr::Direction::Frontend, cfg->max_message_size,
                            tx_mode_ ? kClientInspectTransaction : kClientInspectSession,
                            tx_mode_ ? kInspectMaxTransaction : kInspectMax,
                            tx_mode_ ? kMinPrefix : 0);
  error_code ec;
  std::size_t need = 0;  // size of a message whose start is buffered and that must be whole
  for (;;) {
    if (in_.empty()) {
      // Nothing buffered: wait for the client without holding a buffer, then read what is there
      // without another trip through the reactor (bench/PROFILE.md, C1).
      in_.release_memory();
      co_await client_.async_wait(Socket::wait_read, ec_token(ec));
      if (ec) break;
    }
    in_.reserve_tail(std::max(kRelayChunk, need));
    need = 0;
    std::size_t n = receive_now(client_, in_, ec);
    if (n == 0) {
      if (ec != asio::error::would_block) break;  // eof or a socket error
      ec.clear();
      n = co_await client_.async_read_some(in_.tail(), ec_token(ec));
      if (ec) break;
      in_.commit(n);
    }
    pool_->traffic.bytes_in.fetch_add(n, std::memory_order_relaxed);
    disarm_idle_transaction_timer();
    pr::ByteView view = in_.view();
    pieces_.clear();
    scratch_.clear();
    std::size_t fwd = 0;        // bytes of `view` dealt with
    std::size_t run_start = 0;  // start of the input bytes not yet added to pieces_
    bool stop = false;
    bool framing_lost = false;
    while (!stop) {
      pr::ScanStep step = scanner.next(view.subspan(fwd));
      if (step.kind == pr::ScanStep::Kind::NeedMore) {
        // Room is made after the forwarded bytes are consumed: growing the buffer now would
        // move the bytes `view` points at.
        need = std::min<std::size_t>(step.frame.size(), kInspectMaxTransaction);
        break;
      }
      if (step.kind == pr::ScanStep::Kind::Error) {
        log::session().info("client_protocol_error session={} error={}", key_pid_,
                            pr::to_string(step.error));
        rt_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        if (!terminate_reason_) terminate_reason_.emplace("08P01", "invalid message framing");
        framing_lost = true;
        break;
      }
      if (step.kind == pr::ScanStep::Kind::Body) {
        if (skip_body_) {
          add_input_piece(run_start, fwd);
          run_start = fwd + step.n;
          skip_body_ = scanner.in_body();
        }
        fwd += step.n;
        continue;
      }
      const char type = step.frame.type;
      if (type == pr::fe::kTerminate) {
        client_terminated_ = true;
        break;
      }
      if (discard_until_sync_ || (!backend_ && (type == pr::fe::kSync || type == pr::fe::kFlush))) {
        // After a refusal the rest of the extended-protocol batch is skipped up to its Sync, as
        // PostgreSQL does after an error. Without a backend and outside a transaction, a Sync is
        // answered here and a Flush has nothing to flush.
        skip_client_message(step, fwd, run_start, scanner.in_body());
        if (type == pr::fe::kSync) {
          discard_until_sync_ = false;
          pr::build_ready_for_query(client_out_, pr::TxStatus::Idle);
        }
        fwd += step.n;
        continue;
      }
      if (!backend_) {
        // The first message of a transaction: take a backend (the bytes wait in `in_`).
        if (auto refusal = co_await acquire_backend(false)) {
          if (refusal->fatal) {
            co_await send_fatal(refusal->sqlstate, refusal->message, refusal->detail,
                                refusal->hint);
            stop = true;
            break;
          }
          // Refusal is an answer, not a disconnect: an ERROR, then ReadyForQuery (at once for a
          // Query or FunctionCall, at the next Sync for the extended protocol).
          log::session().info("transaction_refused session={} sqlstate={} reason=\"{}\"", key_pid_,
                              refusal->sqlstate, refusal->message);
          pr::build_error_response(client_out_, pr::ErrorInfo{.severity = pr::Severity::Error,
                                                              .sqlstate = refusal->sqlstate,
                                                              .message = refusal->message,
                                                              .detail = refusal->detail,
                                                              .hint = refusal->hint});
          skip_client_message(step, fwd, run_start, scanner.in_body());
          if (type == pr::fe::kQuery || type == pr::fe::kFunctionCall) {
            pr::build_ready_for_query(client_out_, pr::TxStatus::Idle);
          } else {
            discard_until_sync_ = true;
          }
          fwd += step.n;
          continue;
        }
        start_backend_pump();
      }
      inspect_client_message(view.subspan(fwd, step.n), step.kind == pr::ScanStep::Kind::Message);
      if (tx_mode_ && !rewrite_client_message(view, step, fwd, run_start)) {
        if (!terminate_reason_) terminate_reason_.emplace("08P01", "invalid message format");
        framing_lost = true;
        break;
      }
      count_client_message(step.frame.type);
      fwd += step.n;
    }
    add_input_piece(run_start, fwd);
    // Bytes of a message are forwarded but not all of it: the backend is waiting for the rest.
    client_mid_message_ = framing_lost || (scanner.in_body() && !skip_body_);
    if (!client_out_.empty()) {
      // Sluice's own answers (refusals, a Sync without a backend) precede anything the backend
      // will say about later messages of this batch, which it has not been sent yet.
      co_await asio::async_write(client_, asio::buffer(client_out_), ec_token(ec));
      client_out_.clear();
      if (ec) break;
    }
    if (!pieces_.empty() && backend_) {
      writing_to_backend_ = true;
      // A non-blocking send first; the rest (rare: a full socket buffer) asynchronously.
      gather(view);
      const std::size_t total = asio::buffer_size(gather_);
      const std::size_t sent = send_now(backend_->socket, gather_, ec);
      if (!ec || ec == asio::error::would_block) {
        ec.clear();
        if (sent < total) {
          drop_front(gather_, sent);
          co_await asio::async_write(backend_->socket, gather_, ec_token(ec));
        }
      }
      writing_to_backend_ = false;
      if (ec) {
        backend_failed_ = true;
        break;
      }
      if (can_detach()) {
        // The backend answered everything before this write's completion was seen: wake the
        // backend pump (blocked reading) so that it hands the backend back now.
        woken_for_detach_ = true;
        error_code ignored;
        backend_->socket.cancel(ignored);
      }
    }
    in_.consume(fwd);
    if (stop || framing_lost || client_terminated_ || backend_failed_) break;
    if (!backend_ && in_.empty()) in_.release_memory();
  }
  client_mid_message_ =
      client_mid_message_ || scanner.in_body() || (!client_terminated_ && !in_.empty());
  if (backend_pump_running_) {
    // The client is done (Terminate, EOF or error): stop reading from the backend and wait for
    // the pump to notice. This cancel is not a hand-back wake-up (a stale one would make the pump
    // read on).
    woken_for_detach_ = false;
    if (backend_) backend_->socket.cancel(ec);
    co_await pump_done_->async_wait(ec_token(ec));
  }
}

awaitable<void> ClientSession::backend_to_client() {
  const std::uint32_t max_message = rt_.config()->max_message_size;
  pr::StreamScanner scanner(pr::Direction::Backend, max_message,
                            tx_mode_ ? kBackendInspectTransaction : kBackendInspect);
  Backend& b = *backend_;
  ReadBuffer& in = b.buf;
  error_code ec;
  bool client_gone = false;
  std::size_t need = 0;
  std::vector<asio::const_buffer>& out = backend_out_;  // reused across transactions
  std::vector<std::string> not_prepared;
  std::vector<std::string> not_defined;
  for (;;) {
    in.reserve_tail(std::max(kRelayChunk, need));
    need = 0;
    std::size_t n = co_await b.socket.async_read_some(in.tail(), ec_token(ec));
    if (ec == asio::error::operation_aborted && woken_for_detach_) {
      // Woken by relay() after its write (see there). By now relay() may have sent the client's
      // next message to this backend: then there is nothing to hand back; read on.
      woken_for_detach_ = false;
      if (can_detach()) {
        detach_backend();
        co_return;
      }
      ec.clear();
      continue;
    }
    if (ec) break;
    in.commit(n);
    pr::ByteView view = in.view();
    std::size_t fwd = 0;
    std::size_t run_start = 0;
    out.clear();
    bool framing_lost = false;
    for (;;) {
      pr::ScanStep step = scanner.next(view.subspan(fwd));
      if (step.kind == pr::ScanStep::Kind::NeedMore) {
        need = step.frame.size();  // see relay(): grow only after consuming
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
        const char type = step.frame.type;
        if (type == pr::be::kReadyForQuery) {
          b.tx = pr::read_ready_for_query(msg).value_or(pr::TxStatus::Failed);
          const auto now = std::chrono::steady_clock::now();
          const auto took = now - statement_started_;
          pool_->traffic.queries.fetch_add(1, std::memory_order_relaxed);
          pool_->traffic.query_ns.fetch_add(
              static_cast<std::uint64_t>(std::chrono::nanoseconds(took).count()),
              std::memory_order_relaxed);
          if (series_ != nullptr) series_->observe_query(took);
          if (pending_syncs_ > 0 && --pending_syncs_ > 0) statement_started();
          if (!tx_mode_ && b.tx == pr::TxStatus::Idle) {
            pool_->traffic.transactions.fetch_add(1, std::memory_order_relaxed);
          }
        } else if (type == pr::be::kParameterStatus) {
          if (auto p = pr::read_parameter_status(msg)) {
            b.reported[std::string(p->name)] = std::string(p->value);
            if (is_settable(p->name)) {
              // The client and its backend change together: they stay in line.
              set_param(client_params_, p->name, p->value);
              refresh_params_key();
              b.synced_params_key = params_key_;
            }
          }
        }
        if (tx_mode_) {
          not_prepared.clear();
          not_defined.clear();
          auto edit = edits_.on_backend_message(type, not_prepared, not_defined);
          for (const auto& name : not_prepared) b.statements.erase(name);
          for (const auto& name : not_defined) statements_.forget(name);
          if (type == pr::be::kErrorResponse) {
            if (auto renamed = rename_statements_in_error(msg)) {
              // The client must read its own statement names, not Sluice's backend names.
              if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
              backend_replacements_.push_back(std::move(*renamed));
              out.emplace_back(asio::buffer(backend_replacements_.back()));
              run_start = fwd + step.n;
            }
          }
          if (edit == pr::ResponseEdits::Edit::Drop) {
            if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
            run_start = fwd + step.n;
          } else if (edit == pr::ResponseEdits::Edit::AsParseComplete) {
            // Our own buffer: retype CloseComplete into ParseComplete in place.
            *const_cast<std::byte*>(msg.data()) = static_cast<std::byte>(pr::be::kParseComplete);
          }
        }
      }
      fwd += step.n;
    }
    if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
    if (!out.empty()) {
      pool_->traffic.bytes_out.fetch_add(asio::buffer_size(out), std::memory_order_relaxed);
      // A non-blocking send first; the rest (rare: a full socket buffer) asynchronously.
      const std::size_t total = asio::buffer_size(out);
      const std::size_t sent = send_now(client_, out, ec);
      if (!ec || ec == asio::error::would_block) {
        ec.clear();
        if (sent < total) {
          drop_front(out, sent);
          co_await asio::async_write(client_, out, ec_token(ec));
        }
      }
      backend_replacements_.clear();
      if (ec) {
        client_gone = true;
        in.consume(fwd);
        break;
      }
    }
    in.consume(fwd);
    backend_mid_message_ = scanner.in_body() || !in.empty();
    if (framing_lost) {
      backend_failed_ = true;
      break;
    }
    if (can_detach()) {
      detach_backend();  // `b` is no longer ours: return without touching it
      co_return;
    }
    if (b.tx != pr::TxStatus::Idle && pending_syncs_ == 0 && !unsynced_extended_ &&
        !writing_to_backend_ && !backend_mid_message_) {
      arm_idle_transaction_timer();
    }
  }
  backend_mid_message_ = backend_mid_message_ || scanner.in_body() || !in.empty();
  if (ec && ec != asio::error::operation_aborted && !client_gone) {
    backend_failed_ = true;  // EOF or reset: the server ended the connection
  }
  if (backend_failed_ || client_gone) {
    // Wake the client pump: the session cannot go on.
    error_code ignored;
    client_.cancel(ignored);
  }
}

// ---- 6. cleanup ------------------------------------------------------------------------------

awaitable<void> ClientSession::cleanup() {
  auto cfg = rt_.config();
  auto ex = co_await asio::this_coro::executor;
  if (key_pid_ != 0) rt_.cancels().set_target(key_pid_, std::nullopt);
  disarm_idle_transaction_timer();
  if (statement_timer_) statement_timer_->cancel();
  if (backend_ && !tx_mode_ && series_ != nullptr) {
    series_->observe_transaction(std::chrono::steady_clock::now() - attached_at_);  // the session
  }
  if (backend_) {
    bool reusable = !backend_failed_ && !backend_mid_message_ && !client_mid_message_ &&
                    pending_syncs_ == 0 && !unsynced_extended_ &&
                    backend_->tx == pr::TxStatus::Idle && backend_->socket.is_open();
    const config::Database* db = cfg->find_database(pool_->database);
    const std::string reset = db != nullptr ? db->server_reset_query : pool_->db.server_reset_query;
    // Transaction pooling hands backends on without a reset; session state only exists on
    // backends of session pooling or of pinned clients.
    if (reusable && !reset.empty() && (!tx_mode_ || pinned_)) {
      Deadline deadline(ex, backend_->socket, std::chrono::seconds(5));
      auto err = co_await run_internal_query(*backend_, reset, cfg->max_message_size);
      if (err || deadline.fired() || backend_->tx != pr::TxStatus::Idle) {
        log::session().warn("backend_reset_failed session={} pid={}", key_pid_, backend_->pid);
        reusable = false;
      }
      backend_->applied.clear();
      backend_->synced_params_key.clear();
    }
    if (pending_syncs_ > 0 && !backend_failed_ && backend_->remote) {
      // The client left with a query still running: cancel it so the server stops working for
      // nobody (closing the socket alone is noticed only when the server next writes).
      asio::co_spawn(ex,
                     send_cancel_request(ex, *backend_->remote, backend_->pid, backend_->secret),
                     [](std::exception_ptr) {});
    }
    backend_->buf.release_memory();
    rt_.pools().checkin(*pool_, std::move(backend_), reusable);
    lease_.reset(statement_timed_out_ ? pools::LeaseOutcome::TimedOut
                 : reusable           ? pools::LeaseOutcome::Completed
                                      : pools::LeaseOutcome::Failed);
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
