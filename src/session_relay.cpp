// ClientSession, stages 4 to 6: attaching backends, relaying, and cleaning up. A client takes a
// backend with its first message. Session pooling keeps it until the client leaves; transaction
// pooling gives it back at the ReadyForQuery that leaves nothing outstanding (status idle, no
// Sync or Query unanswered, no extended-protocol message waiting for its Sync, no message
// half-sent in either direction).
#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "protocol/session_settings.hpp"
#include "protocol/stream_scanner.hpp"
#include "src/auth/md5.hpp"
#include "src/client_session.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"
#include "src/task_failure.hpp"

#include <algorithm>
#include <array>
#include <exception>

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
// While Sluice reads a backend's settings back (start_settings_readback()).
const pr::StreamScanner::InspectSet kBackendInspectReadback = pr::make_inspect_set(
    pr::be::kReadyForQuery, pr::be::kParameterStatus, pr::be::kDataRow, pr::be::kErrorResponse);

// Backend messages the pump inspects are held whole up to this size; a longer one (a hostile
// server's ErrorResponse) is forwarded as it streams.
constexpr std::size_t kBackendInspectMax = 64 * 1024;

std::string_view text_of(pr::ByteView v) {
  return {reinterpret_cast<const char*>(v.data()), v.size()};
}

}  // namespace

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
  if (scram_keys_) {
    c.scram_client_key = scram_keys_->first;
    c.scram_server_key = scram_keys_->second;
  }
  return c;
}

awaitable<bool> ClientSession::login_attach() {
  auto cfg = rt_.config();
  const config::Database* db = cfg->find_database(database_);
  if (db == nullptr) {
    log::session().info("login_failed reason=unknown_database peer={} user={} db={}", peer_,
                        log::value(user_), log::value(database_));
    co_await send_fatal("3D000", "database \"" + database_ + "\" does not exist");
    co_return false;
  }
  tx_mode_ = db->pool_mode == config::PoolMode::Transaction;
  BackendCredentials creds = backend_credentials();
  pool_ = &rt_.pools().pool_for(*db, creds.user);
  bool can_login =
      creds.password || creds.md5_secret || (creds.scram_client_key && creds.scram_server_key);
  if (can_login) rt_.pools().learn_credentials(*pool_, creds);
  scram_keys_.reset();  // the pool has them now; nothing else needs them

  // Both pooling modes (issue 13): the pool knows what the server reports, so the client is
  // welcomed without a backend and takes one with its first message (its settings reach that
  // backend first). Logging in never waits for, or is refused by, a saturated bulkhead: clients
  // that open their connections before using any cannot deadlock the pool.
  if (auto defaults = rt_.pools().server_defaults(*pool_)) co_return co_await welcome(*defaults);
  // Otherwise (the pool's first backend has not connected yet) a backend for the welcome: the
  // client must see the server's ParameterStatus values, with its own settings applied, before
  // its first ReadyForQuery. It goes back at once, as after a welcome from the pool's values.
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
  detach_backend();
  co_return true;
}

// The pool's server parameters known: the client's expected settings are the server's defaults
// overlaid with its startup parameters, as sync_parameters(login) would settle them; they reach a
// backend at the client's first message (transaction pooling: of each transaction).
awaitable<bool> ClientSession::welcome(const std::map<std::string, std::string>& defaults) {
  Params desired;
  for (const auto& [name, value] : defaults) {
    if (!pr::is_fixed_parameter(name)) desired.emplace_back(name, value);
  }
  for (const auto& [name, value] : *params_) set_param(desired, name, value);
  pr::Buffer out;
  for (const auto& [name, value] : defaults) {
    const std::string* mine = params_->find(name);
    pr::build_parameter_status(out, name,
                               mine != nullptr && !pr::is_fixed_parameter(name) ? *mine : value);
  }
  params_ = ParamSetTable::process().intern(std::move(desired));
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
  // The common case without a coroutine or a wait: a slot, and an idle backend, at once.
  const auto wait_start = std::chrono::steady_clock::now();
  PoolManager::Immediate ready =
      rt_.pools().try_acquire_now(*pool_, *class_, client_.get_executor());
  if (ready.lease) {
    lease_ = std::move(ready.lease);
    if (series_ != nullptr)
      series_->observe_queue_wait(std::chrono::steady_clock::now() - wait_start);
  } else {
    // Nothing else reads the client's socket now: acquire() may watch it for a disconnect.
    wait_since_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                         std::memory_order_relaxed);
    set_state(ClientState::Waiting);
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
  }

  if (ready.backend) {
    backend_ = std::move(ready.backend);
  } else {
    // Within the bulkhead's max_wait counted from wait_start: the wait for a slot and for a
    // backend share one budget.
    auto checked = co_await rt_.pools().checkout(*pool_, *class_, lease_, wait_start, {},
                                                 cfg->max_message_size);
    if (auto* err = std::get_if<BackendError>(&checked)) {
      lease_.reset(pools::LeaseOutcome::Failed);
      co_return Refusal{.sqlstate = err->sqlstate, .message = err->message, .detail = err->detail};
    }
    if (auto* refusal = std::get_if<AdmissionRefusal>(&checked)) {  // the lease went back unused
      co_return Refusal{.sqlstate = refusal->sqlstate,
                        .message = refusal->message,
                        .detail = refusal->detail,
                        .hint = refusal->hint};
    }
    backend_ = std::move(std::get<std::shared_ptr<Backend>>(checked));
  }
  max_message_ = cfg->max_message_size;  // for the backend pump
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
  if (cancel_slot_ != nullptr) rt_.cancels().set_target(*cancel_slot_, *backend_);
  co_return std::nullopt;
}

void ClientSession::detach_backend() {
  if (cancel_slot_ != nullptr) CancelRegistry::clear_target(*cancel_slot_);
  set_state(ClientState::Idle);
  backend_pid_.store(0, std::memory_order_relaxed);
  backend_->buf.release_memory();
  retry_.release();
  pr::Buffer().swap(retry_out_);
  // The backend and the slot go back under one lock.
  rt_.pools().checkin(*pool_, std::move(backend_), true, lease_,
                      std::exchange(statement_timed_out_, false) ? pools::LeaseOutcome::TimedOut
                                                                 : pools::LeaseOutcome::Completed);
  backend_.reset();
  const auto held = std::chrono::steady_clock::now() - attached_at_;
  pool_->traffic.transactions.fetch_add(1, std::memory_order_relaxed);
  pool_->traffic.transaction_ns.fetch_add(
      static_cast<std::uint64_t>(std::chrono::nanoseconds(held).count()),
      std::memory_order_relaxed);
  if (series_ != nullptr) series_->observe_transaction(held);
}

void ClientSession::set_terminate_reason(std::string_view sqlstate, std::string_view message) {
  if (!terminate_reason_) {
    terminate_reason_ = std::make_unique<std::pair<std::string, std::string>>(sqlstate, message);
  }
}

void ClientSession::pin(pr::SessionFeature why) {
  if (!tx_mode_ || pinned_) return;
  pinned_ = true;
  log::session().info("client_pinned session={} reason={} db={} user={}", key_pid_,
                      pr::to_string(why), log::value(database_), log::value(user_));
}

bool ClientSession::inspect_client_message(pr::ByteView msg, bool complete) {
  if (!tx_mode_) return false;
  char type = static_cast<char>(msg[0]);
  std::string_view sql;
  if (type == pr::fe::kQuery) {
    // A partial Query (longer than kInspectMaxTransaction) is checked on the bytes present.
    sql = complete ? pr::read_query(msg).value_or("") : text_of(msg.subspan(5));
  } else if (type == pr::fe::kParse) {
    auto parse = complete ? pr::read_parse(msg) : std::nullopt;
    if (!parse) {
      // Too long to inspect (a named one is refused by rewrite_client_message()).
      if (!complete) pin(pr::SessionFeature::Uninspected);
      return false;
    }
    sql = parse->query;
  } else {
    return false;
  }
  const pr::SessionUse use = pr::inspect_session_use(sql);
  if (use.reserved_name && complete) return true;  // refused: refuse_client_message()
  if (use.pin != pr::SessionFeature::None) {
    pin(use.pin);
  } else if (!complete) {
    pin(pr::SessionFeature::Uninspected);  // the rest of the text was never looked at
  } else if (use.settings && !pinned_) {
    note_settings_change(sql);  // a pinned client's settings stay on its backend
  }
  if (use.drops_statements) {
    // DISCARD ALL or DEALLOCATE ALL wherever it stands in the text: the backend will hold none of
    // this client's statements, nor any other (protocol::StatementMapper handles the plain forms
    // the same way when it rewrites the message).
    statements_.forget_all();
    backend_->statements.clear();
  }
  return false;
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
         !unsynced_extended_ && !client_mid_message_ && !writing_to_backend_ && !retry_writing_ &&
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
    // A few names at most: each costs a lookup among the client's statements, and an error
    // naming thousands (a hostile server's) must not cost minutes of CPU.
    int renames = 0;
    for (std::size_t pos = text.find("\"sluice_"); pos != std::string::npos && renames++ < 8;
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
  if (!idle_tx_timer_) {
    idle_tx_timer_ = std::make_unique<asio::steady_timer>(client_.get_executor());
  }
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
  if (!statement_timer_) {
    statement_timer_ = std::make_unique<asio::steady_timer>(client_.get_executor());
  }
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
                     on_task_exit(Task::CancelRequest));
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

// ---- per-thread scratch of a batch -----------------------------------------------------------

struct ClientSession::ClientBatch {
  // The output assembled from input bytes and rewritten messages.
  struct Piece {
    bool scratch = false;  // bytes of `scratch` (else of the input buffer)
    std::size_t offset = 0;
    std::size_t size = 0;
  };
  std::vector<Piece> pieces;
  pr::Buffer scratch;
  std::vector<asio::const_buffer> gather;
  pr::Buffer client_out;  // Sluice's own answers to the client

  bool reusable() const {
    return scratch.capacity() <= kMaxKept && client_out.capacity() <= kMaxKept &&
           pieces.capacity() <= kMaxKeptEntries && gather.capacity() <= kMaxKeptEntries;
  }
  void clear() {
    pieces.clear();
    scratch.clear();
    gather.clear();
    client_out.clear();
  }
  static constexpr std::size_t kMaxKept = 64 * 1024;
  static constexpr std::size_t kMaxKeptEntries = 1024;
};

struct ClientSession::BackendBatch {
  std::vector<asio::const_buffer> out;  // the gather list written to the client
  // Rewritten messages (a vector: moving a Buffer keeps its bytes in place).
  std::vector<pr::Buffer> replacements;
  std::vector<std::string> not_prepared;
  std::vector<std::string> not_defined;

  bool reusable() const {
    return out.capacity() <= ClientBatch::kMaxKeptEntries &&
           replacements.capacity() <= ClientBatch::kMaxKeptEntries;
  }
  void clear() {
    out.clear();
    replacements.clear();
    not_prepared.clear();
    not_defined.clear();
  }
};

namespace {

// A few batches per thread are kept for reuse: a batch starts and ends within one relay step, so
// a thread needs about as many as it has sessions in the middle of one (e.g. waiting in a queue).
template <typename T>
struct FreeList {
  static constexpr std::size_t kMax = 32;
  std::array<T*, kMax> items{};
  std::size_t size = 0;
  bool closed = false;  // the thread is ending: no more caching
};

template <typename T>
thread_local FreeList<T> t_free_list{};

// Frees a thread's cached batches when the thread ends.
template <typename T>
struct FreeListCloser {
  FreeListCloser() = default;
  FreeListCloser(const FreeListCloser&) = delete;
  FreeListCloser& operator=(const FreeListCloser&) = delete;
  ~FreeListCloser() {
    FreeList<T>& list = t_free_list<T>;
    while (list.size > 0) delete list.items[--list.size];
    list.closed = true;
  }
};

template <typename T>
void register_closer() {
  thread_local FreeListCloser<T> closer;
  (void)closer;
}

template <typename T>
T* take_batch() {
  FreeList<T>& list = t_free_list<T>;
  if (list.size > 0) return list.items[--list.size];
  register_closer<T>();
  return new T;
}

template <typename T>
void give_batch(T* batch) {
  FreeList<T>& list = t_free_list<T>;
  if (list.closed || list.size == FreeList<T>::kMax || !batch->reusable()) {
    delete batch;
    return;
  }
  if (list.size == 0) register_closer<T>();
  batch->clear();
  list.items[list.size++] = batch;
}

}  // namespace

void ClientSession::BatchReturn::operator()(ClientBatch* b) const { give_batch(b); }
void ClientSession::BatchReturn::operator()(BackendBatch* b) const { give_batch(b); }

// ---- backend to client -----------------------------------------------------------------------

// The pump: completion handlers bound to the session's executor (the backend's socket may belong
// to another thread's io_context), each holding the session. It starts when a backend is attached
// and stops when it is handed back (the client's transaction is over) or the session cannot go on.
void ClientSession::start_backend_pump() {
  backend_pump_running_ = true;
  woken_for_detach_ = false;
  backend_need_ = 0;
  use_relay_backend_scanner();
  // A backend of another thread's io_context completes there: its handlers are then bound to
  // this session's executor.
  backend_same_thread_ = backend_->socket.get_executor() == client_.get_executor();
  read_backend();
}

void ClientSession::use_relay_backend_scanner() {
  backend_scanner_ = pr::StreamScanner(pr::Direction::Backend, max_message_,
                                       tx_mode_ ? kBackendInspectTransaction : kBackendInspect,
                                       kBackendInspectMax);
}

void ClientSession::read_backend() {
  if (pump_done_ != nullptr) {
    // The relay has ended and waits for the pump (end_relay()): no further read.
    end_backend_pump(asio::error::operation_aborted, false);
    return;
  }
  ReadBuffer& in = backend_->buf;
  in.reserve_tail(std::max(kRelayChunk, backend_need_));
  backend_need_ = 0;
  auto on_read = [self = shared_from_this()](error_code ec, std::size_t n) {
    self->on_backend_read(ec, n);
  };
  if (backend_same_thread_) {
    backend_->socket.async_read_some(in.tail(), std::move(on_read));
  } else {
    backend_->socket.async_read_some(
        in.tail(), asio::bind_executor(client_.get_executor(), std::move(on_read)));
  }
}

void ClientSession::on_backend_read(error_code ec, std::size_t n) {
  try {
    if (ec == asio::error::operation_aborted && woken_for_detach_) {
      // Woken by relay() after its write (see there). By now relay() may have sent the client's
      // next message to this backend: then there is nothing to hand back; read on.
      woken_for_detach_ = false;
      if (!can_detach() || hand_back()) read_backend();
      return;
    }
    if (ec) {
      end_backend_pump(ec, false);
      return;
    }
    backend_->buf.commit(n);
    if (forward_backend_batch()) read_backend();
  } catch (...) {
    backend_pump_failed();
  }
}

void ClientSession::backend_pump_failed() {
  log::session().error("session_exception session={} where=backend_to_client", key_pid_);
  backend_batch_.reset();
  backend_failed_ = true;
  error_code ignored;
  client_.cancel(ignored);
  backend_pump_stopped();
}

// Forwards what the backend sent (one read's worth). Returns true when the pump reads on at once;
// false when it stopped, or when a write to the client is still under way (its completion goes
// on).
bool ClientSession::forward_backend_batch() {
  Backend& b = *backend_;
  pr::StreamScanner& scanner = backend_scanner_;
  backend_batch_.reset(take_batch<BackendBatch>());
  BackendBatch& batch = *backend_batch_;
  std::vector<asio::const_buffer>& out = batch.out;
  pr::ByteView view = b.buf.view();
  std::size_t fwd = 0;
  std::size_t run_start = 0;
  bool framing_lost = false;
  for (;;) {
    // A run of streamed messages (a result's DataRows) is one step.
    pr::ScanStep step = scanner.next_run(view.subspan(fwd));
    if (step.kind == pr::ScanStep::Kind::NeedMore) {
      // See relay(): grow only after consuming, and only as bytes arrive.
      backend_need_ = room_for_rest(step.frame.size(), view.size() - fwd);
      break;
    }
    if (step.kind == pr::ScanStep::Kind::Error) {
      log::session().error("backend_protocol_error session={} error={}", key_pid_,
                           pr::to_string(step.error));
      framing_lost = true;
      break;
    }
    if (readback_) {
      // The answer to Sluice's own query: none of it reaches the client.
      if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
      run_start = fwd + step.n;
      if (step.kind == pr::ScanStep::Kind::Message) {
        on_readback_message(view.subspan(fwd, step.n));
      } else if (step.kind == pr::ScanStep::Kind::Header && must_see(step.frame.type)) {
        readback_->failed = true;  // a row too long to hold: the settings stay unknown
      }
      fwd += step.n;
      continue;
    }
    if (step.kind == pr::ScanStep::Kind::Header && must_see(step.frame.type)) {
      // Too long to hold whole (over kBackendInspectMax): only a long ErrorResponse may be,
      // forwarded as it streams but still accounted for; anything else is a broken server.
      if (step.frame.type != pr::be::kErrorResponse) {
        log::session().error("backend_protocol_error session={} error=oversized type={}", key_pid_,
                             step.frame.type);
        framing_lost = true;
        break;
      }
      apply_response_edits(step.frame.type);
    }
    if (step.kind == pr::ScanStep::Kind::Message) {
      pr::ByteView msg = view.subspan(fwd, step.n);
      const char type = step.frame.type;
      if (type == pr::be::kReadyForQuery) {
        b.tx = pr::read_ready_for_query(msg).value_or(pr::TxStatus::Failed);
      }
      // A ReadyForQuery that answers a Sync of Sluice's own (dropped by the response edits below)
      // ends none of the client's statements.
      if (type == pr::be::kReadyForQuery && !(tx_mode_ && edits_.next_ready_is_private())) {
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
          if (!pr::is_fixed_parameter(p->name)) {
            // The client and its backend change together: they stay in line.
            params_ = ParamSetTable::process().with(params_, p->name, p->value);
            b.synced_params = params_;
          }
        }
      }
      if (tx_mode_) {
        // Sluice's own answer to a message it refused (taken before the error ends the group).
        std::optional<pr::Buffer> refused;
        if (type == pr::be::kErrorResponse) refused = edits_.take_refusal(msg);
        auto edit = apply_response_edits(type);
        const bool ours = edit == pr::ResponseEdits::Edit::Drop &&
                          (type == pr::be::kErrorResponse || type == pr::be::kReadyForQuery);
        if (type == pr::be::kErrorResponse && !ours) {
          const bool lost = forget_lost_statements(msg);
          std::optional<pr::Buffer> renamed =
              refused ? std::move(refused) : rename_statements_in_error(msg);
          if (lost && hold_for_retry(renamed ? *renamed : msg)) {
            edit = pr::ResponseEdits::Edit::Drop;  // held back: the group is sent again
          } else if (renamed) {
            // The client must read its own statement names, not Sluice's backend names.
            if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
            batch.replacements.push_back(std::move(*renamed));
            out.emplace_back(asio::buffer(batch.replacements.back()));
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
        if (type == pr::be::kReadyForQuery && !ours) {
          const auto at = at_ready_for_retry();
          if (at != pr::GroupRetry::AtReady::Forward) {
            if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
            // Retry: this ReadyForQuery ends the failed first run (Drop: it answers Sluice's own
            // Sync); the client sees the retry's.
            run_start = at == pr::GroupRetry::AtReady::ForwardHeldError ? fwd : fwd + step.n;
            if (at == pr::GroupRetry::AtReady::ForwardHeldError) {
              out.emplace_back(
                  asio::buffer(retry_.held_error().data(), retry_.held_error().size()));
            }
          }
        } else if (edit == pr::ResponseEdits::Edit::AsParseComplete ||
                   (type == pr::be::kParseComplete && edit == pr::ResponseEdits::Edit::Keep)) {
          retry_.on_parse_answered();
        } else if (edit != pr::ResponseEdits::Edit::Drop && type != pr::be::kParameterStatus &&
                   type != pr::be::kNoticeResponse && type != pr::be::kNotificationResponse) {
          retry_.on_answer_forwarded();
        }
      }
    } else if (tx_mode_) {
      retry_.on_answer_forwarded();  // a streamed message (a result's rows, say)
    }
    fwd += step.n;
  }
  if (fwd > run_start) out.emplace_back(view.data() + run_start, fwd - run_start);
  error_code ec;
  if (!out.empty()) {
    const std::size_t total = asio::buffer_size(out);
    pool_->traffic.bytes_out.fetch_add(total, std::memory_order_relaxed);
    // A non-blocking send first; the rest (rare: a full socket buffer) asynchronously.
    const std::size_t sent = send_now(client_, out, ec);
    if (!ec || ec == asio::error::would_block) {
      ec.clear();
      if (sent < total) {
        drop_front(out, sent);
        pump_writing_ = true;
        asio::async_write(
            client_, out,
            [self = shared_from_this(), fwd, framing_lost](error_code e, std::size_t) {
              self->pump_writing_ = false;
              try {
                if (self->finish_backend_batch(fwd, framing_lost, e)) {
                  self->read_backend();
                }
              } catch (...) {
                self->backend_pump_failed();
              }
            });
        return false;
      }
    }
  }
  return finish_backend_batch(fwd, framing_lost, ec);
}

// Whether the backend pump must see messages of `type`: its current scanner (the relay's, or the
// settings read-back's) inspects them.
bool ClientSession::must_see(char type) const { return backend_scanner_.inspects(type); }

// Transaction pooling: what ResponseEdits says of a backend message of `type`; statements whose
// Parse was skipped after an error are forgotten by the backend's cache and the client's names.
pr::ResponseEdits::Edit ClientSession::apply_response_edits(char type) {
  BackendBatch& batch = *backend_batch_;
  batch.not_prepared.clear();
  batch.not_defined.clear();
  const auto edit = edits_.on_backend_message(type, batch.not_prepared, batch.not_defined);
  if (std::string parsed = edits_.take_confirmed(); !parsed.empty()) {
    pool_->known_statements.confirmed(parsed);
  }
  for (const auto& name : batch.not_prepared) backend_->statements.erase(name);
  for (const auto& name : batch.not_defined) statements_.forget(name);
  // Queries the backend skipped after an extended-protocol error get no ReadyForQuery.
  pending_syncs_ -= std::min(pending_syncs_, edits_.take_skipped_groups());
  return edit;
}

// After the batch's `fwd` bytes were written to the client (or failed to be: `write_ec`).
bool ClientSession::finish_backend_batch(std::size_t fwd, bool framing_lost, error_code write_ec) {
  backend_batch_.reset();
  Backend& b = *backend_;
  b.buf.consume(fwd);
  if (write_ec) {
    end_backend_pump(write_ec, true);  // the client is gone
    return false;
  }
  backend_mid_message_ = backend_scanner_.in_body() || !b.buf.empty();
  if (framing_lost) {
    backend_failed_ = true;
    end_backend_pump({}, false);
    return false;
  }
  if (can_detach()) return hand_back();  // `b` may no longer be ours: do not touch it
  if (b.tx != pr::TxStatus::Idle && pending_syncs_ == 0 && !unsynced_extended_ &&
      !writing_to_backend_ && !backend_mid_message_) {
    arm_idle_transaction_timer();
  }
  return true;
}

// The client's transaction is over and nothing is outstanding: the backend goes back to the pool,
// unless the transaction may have changed session settings; those are read back first, and the
// backend is handed back once they are known. Returns whether the pump reads on.
bool ClientSession::hand_back() {
  if (settings_changed_) return start_settings_readback();
  detach_backend();
  backend_pump_stopped();
  return false;
}

// The pump stops with the backend still attached: an error on either side, or the relay's end.
void ClientSession::end_backend_pump(error_code ec, bool client_gone) {
  backend_batch_.reset();
  backend_mid_message_ =
      backend_mid_message_ || backend_scanner_.in_body() || !backend_->buf.empty();
  if (ec && ec != asio::error::operation_aborted && !client_gone) {
    backend_failed_ = true;  // EOF or reset: the server ended the connection
  }
  if (backend_failed_ || client_gone) {
    // Wake the relay: the session cannot go on.
    error_code ignored;
    client_.cancel(ignored);
  }
  backend_pump_stopped();
}

void ClientSession::backend_pump_stopped() {
  backend_pump_running_ = false;
  if (pump_done_ != nullptr) pump_done_->cancel();
}

void ClientSession::skip_client_message(const pr::ScanStep& step, std::size_t at,
                                        std::size_t& run_start, bool body_follows) {
  add_input_piece(run_start, at);
  run_start = at + step.n;
  skip_body_ = step.kind == pr::ScanStep::Kind::Header && body_follows;
}

void ClientSession::add_input_piece(std::size_t from, std::size_t to) {
  if (to > from) {
    client_batch_->pieces.push_back(
        ClientBatch::Piece{.scratch = false, .offset = from, .size = to - from});
  }
}

const std::vector<asio::const_buffer>& ClientSession::gather(pr::ByteView input) {
  ClientBatch& batch = *client_batch_;
  batch.gather.clear();
  for (const ClientBatch::Piece& p : batch.pieces) {
    const std::byte* base = p.scratch ? batch.scratch.data() : input.data();
    batch.gather.emplace_back(base + p.offset, p.size);
  }
  return batch.gather;
}

// A Query or Parse whose SQL runs or drops a statement by one of Sluice's own backend names
// ("EXECUTE sluice_…", "DEALLOCATE sluice_…"): it is replaced by one the backend refuses, answered
// to the client as 26000 in order with the rest (protocol::append_refusal).
void ClientSession::refuse_client_message(const pr::ScanStep& step, std::size_t at,
                                          std::size_t& run_start) {
  ClientBatch& batch = *client_batch_;
  const std::size_t before = batch.scratch.size();
  const char type = step.frame.type;
  pr::append_refusal(batch.scratch, edits_, type == pr::fe::kQuery,
                     pr::ErrorInfo{.sqlstate = "26000",
                                   .message = "sluice: prepared statement names starting with "
                                              "\"sluice_\" are reserved by the pooler"});
  add_input_piece(run_start, at);
  batch.pieces.push_back(
      ClientBatch::Piece{.scratch = true, .offset = before, .size = batch.scratch.size() - before});
  run_start = at + step.n;
  log::session().info("client_refused session={} reason=reserved_statement_name", key_pid_);
}

// Transaction pooling: Parse, Bind, Describe, Close and DEALLOCATE are rewritten for the attached
// backend (statement names). Returns false on a malformed message. Adds the output pieces for
// the message at `at` and moves `run_start` past it when it was replaced.
bool ClientSession::rewrite_client_message(pr::ByteView view, const pr::ScanStep& step,
                                           std::size_t at, std::size_t& run_start) {
  ClientBatch& batch = *client_batch_;
  const char type = step.frame.type;
  const std::size_t before = batch.scratch.size();
  pr::StatementMapper::Outcome outcome;
  std::size_t replaced = step.n;
  if (step.kind == pr::ScanStep::Kind::Message) {
    outcome =
        statements_.rewrite(view.subspan(at, step.n), backend_->statements, edits_, batch.scratch);
  } else if (type == pr::fe::kBind) {
    outcome =
        statements_.rewrite_bind_prefix(view.subspan(at, step.n), step.frame.length,
                                        backend_->statements, edits_, batch.scratch, replaced);
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
    batch.pieces.push_back(ClientBatch::Piece{
        .scratch = true, .offset = before, .size = batch.scratch.size() - before});
    run_start = at + replaced;
  }
  return true;
}

// ---- client to backend -----------------------------------------------------------------------

namespace {

// Allocates exactly what is asked for. Asio would otherwise give the operation the block its
// per-thread cache last held if that is large enough (an accepted connection's, for one), which a
// parked client would keep for as long as it stays idle.
template <typename T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <typename U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}  // NOLINT: rebinding is implicit
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }
  template <typename U>
  bool operator==(const ExactAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace

// The completion handler of a parked client's wait: it holds the session.
struct ClientSession::ParkedWait {
  std::shared_ptr<ClientSession> self;
  using allocator_type = ExactAllocator<void>;
  allocator_type get_allocator() const noexcept { return {}; }
  void operator()(error_code ec) const { self->resume(ec); }
};

// A transaction-pooling client that has waited a sweep period for its next bytes waits for them
// without a coroutine: this wait's handler holds the session and starts relay() again.
void ClientSession::park() {
  client_.async_wait(Socket::wait_read, ParkedWait{shared_from_this()});
}

void ClientSession::resume(error_code ec) {
  try {
    asio::co_spawn(client_.get_executor(), relay(true, ec),
                   [self = shared_from_this()](std::exception_ptr e) {
                     if (e) self->relay_failed(e);
                   });
  } catch (...) {
    relay_failed(std::current_exception());
  }
}

namespace {

// How long a transaction-pooling client waits in relay() before it parks: one to two periods. A
// client between the statements of a busy application resumes its waiting relay() (cheap); one
// that stays idle gives its coroutine frames back (a resumption from the parked state costs a
// co_spawn: about 2,800 instructions and 4 allocations, measured with bench/profile/relay.sh).
constexpr std::chrono::milliseconds kParkAfter{100};

struct IdleClients {
  std::vector<ClientSession*> sessions;  // waiting in relay() for their client
  bool sweeping = false;                 // the sweep timer is running
};

thread_local IdleClients t_idle;

}  // namespace

void ClientSession::list_idle() {
  IdleClients& idle = t_idle;
  idle_index_ = static_cast<std::uint32_t>(idle.sessions.size());
  idle.sessions.push_back(this);
  idle_listed_ = true;
  idle_seen_ = false;
  if (!idle.sweeping) {
    idle.sweeping = true;
    sweep_idle(std::make_shared<asio::steady_timer>(client_.get_executor()));
  }
}

void ClientSession::unlist_idle() {
  if (!idle_listed_) return;
  idle_listed_ = false;
  std::vector<ClientSession*>& list = t_idle.sessions;
  // Only this thread's list holds it (a session is listed and unlisted on its own thread).
  if (idle_index_ >= list.size() || list[idle_index_] != this) return;
  ClientSession* last = list.back();
  list[idle_index_] = last;
  last->idle_index_ = idle_index_;
  list.pop_back();
}

// Every kParkAfter while clients wait: those seen waiting by the previous sweep are woken to park
// (their wait is cancelled with park_requested_ set; relay() then parks). The timer belongs to the
// sweep's handler and stops when no client waits.
void ClientSession::sweep_idle(std::shared_ptr<asio::steady_timer> timer) {
  timer->expires_after(kParkAfter);
  timer->async_wait([timer](error_code ec) mutable {
    IdleClients& idle = t_idle;
    if (ec) {
      idle.sweeping = false;
      return;
    }
    // Backwards: unlisting moves the last entry (already visited) into the current place.
    for (std::size_t i = idle.sessions.size(); i-- > 0;) {
      ClientSession* s = idle.sessions[i];
      if (!s->idle_seen_) {
        s->idle_seen_ = true;
        continue;
      }
      if (s->pump_writing_) continue;  // a cancel would abort that write too
      s->unlist_idle();
      s->park_requested_ = true;
      error_code ignored;
      s->client_.cancel(ignored);
    }
    if (idle.sessions.empty()) {
      idle.sweeping = false;
      return;
    }
    sweep_idle(std::move(timer));
  });
}

// An exception escaped the relay: the session is over (what it holds is released with it).
void ClientSession::relay_failed(std::exception_ptr e) {
  report_task_failure(Task::ClientSession, e);
  error_code ignored;
  client_.close(ignored);
}

// `resumed`: started by a parked wait's completion (`wake`, its result), else by run() after login.
awaitable<void> ClientSession::relay(bool resumed, error_code wake) {
  if (!resumed) {
    auto cfg = rt_.config();
    max_message_ = cfg->max_message_size;
    statements_.set_limits(cfg->max_client_statements, cfg->max_client_statement_bytes);
    in_.release_memory();  // the small login-phase buffer; the relay takes a recycled one
    client_scanner_ = pr::StreamScanner(
        pr::Direction::Frontend, max_message_,
        tx_mode_ ? kClientInspectTransaction : kClientInspectSession,
        tx_mode_ ? kInspectMaxTransaction : kInspectMax, tx_mode_ ? kMinPrefix : 0);
    if (backend_) start_backend_pump();
  } else if (wake) {
    co_await end_relay();  // cancelled (terminate(), the pump's failure) or a socket error
    co_return;
  }
  pr::StreamScanner& scanner = client_scanner_;
  error_code ec;
  bool readable = resumed;  // a parked wait has just seen the client readable
  // A client that has just logged in parks at once: its login's coroutine frames (run()) are the
  // largest, and an application often opens connections well before it uses them.
  bool park_now = !resumed;
  std::size_t need = 0;  // size of a message whose start is buffered and that must be whole
  for (;;) {
    // The session is to end (terminate(): its cancel may have found the relay busy rather than
    // waiting) or cannot go on (the pump's failure).
    if (terminate_reason_ || backend_failed_) break;
    if (!readable && in_.empty()) {
      // Nothing buffered: wait for the client without holding a buffer, then read what is there
      // without another trip through the reactor (bench/PROFILE.md, C1).
      in_.release_memory();
      if (std::exchange(park_now, false) && !backend_) {
        park();
        co_return;
      }
      if (tx_mode_) list_idle();  // for the sweep: parks after kParkAfter
      co_await client_.async_wait(Socket::wait_read, ec_token(ec));
      unlist_idle();
      if (std::exchange(park_requested_, false) && ec == asio::error::operation_aborted &&
          !terminate_reason_ && !backend_failed_) {
        park();
        co_return;
      }
      if (ec) break;
    }
    readable = false;
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
    client_batch_.reset(take_batch<ClientBatch>());
    pr::ByteView view = in_.view();
    std::size_t fwd = 0;        // bytes of `view` dealt with
    std::size_t run_start = 0;  // start of the input bytes not yet added to the batch's pieces
    bool stop = false;
    bool framing_lost = false;
    while (!stop) {
      pr::ScanStep step = scanner.next(view.subspan(fwd));
      if (step.kind == pr::ScanStep::Kind::NeedMore) {
        // Room is made after the forwarded bytes are consumed: growing the buffer now would
        // move the bytes `view` points at.
        // And only as bytes arrive: a declared length alone allocates nothing large.
        need = room_for_rest(std::min<std::size_t>(step.frame.size(), kInspectMaxTransaction),
                             view.size() - fwd);
        break;
      }
      if (step.kind == pr::ScanStep::Kind::Error) {
        log::session().info("client_protocol_error session={} error={}", key_pid_,
                            pr::to_string(step.error));
        rt_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
        set_terminate_reason("08P01", "invalid message framing");
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
          pr::build_ready_for_query(client_batch_->client_out, pr::TxStatus::Idle);
        }
        fwd += step.n;
        continue;
      }
      if (!backend_ && type == pr::fe::kParse && prepare_without_backend(view, step, fwd)) {
        skip_client_message(step, fwd, run_start, false);
        pr::build_parse_complete(client_batch_->client_out);
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
          pr::Buffer& answer = client_batch_->client_out;
          pr::build_error_response(answer, pr::ErrorInfo{.severity = pr::Severity::Error,
                                                         .sqlstate = refusal->sqlstate,
                                                         .message = refusal->message,
                                                         .detail = refusal->detail,
                                                         .hint = refusal->hint});
          skip_client_message(step, fwd, run_start, scanner.in_body());
          if (type == pr::fe::kQuery || type == pr::fe::kFunctionCall) {
            pr::build_ready_for_query(answer, pr::TxStatus::Idle);
          } else {
            discard_until_sync_ = true;
          }
          fwd += step.n;
          continue;
        }
        start_backend_pump();
      }
      if (tx_mode_ && unsynced_extended_ &&
          (type == pr::fe::kQuery || type == pr::fe::kFunctionCall)) {
        // Whether it gets a ReadyForQuery depends on the messages before it (append_series_marker).
        add_input_piece(run_start, fwd);
        run_start = fwd;
        ClientBatch& batch = *client_batch_;
        const std::size_t before = batch.scratch.size();
        pr::append_series_marker(batch.scratch, edits_);
        batch.pieces.push_back(ClientBatch::Piece{
            .scratch = true, .offset = before, .size = batch.scratch.size() - before});
      }
      const bool whole = step.kind == pr::ScanStep::Kind::Message;
      const bool refused = inspect_client_message(view.subspan(fwd, step.n), whole);
      if (refused) {
        refuse_client_message(step, fwd, run_start);
      } else if (tx_mode_ && !rewrite_client_message(view, step, fwd, run_start)) {
        set_terminate_reason("08P01", "invalid message format");
        framing_lost = true;
        break;
      }
      if (type == pr::fe::kBind && tx_mode_ && !pinned_) {
        // Its statement may change settings: read back at the end of the transaction.
        const std::string_view query = statements_.last_bind_settings_query();
        if (!query.empty()) note_settings_change(query);
      }
      if (tx_mode_) {
        // A message not inspected comes as a header step, whole when all of it is at hand.
        const bool at_hand =
            whole || (step.kind == pr::ScanStep::Kind::Header && step.n == step.frame.size());
        record_for_retry(type, at_hand ? view.subspan(fwd, step.n) : pr::ByteView(), refused);
      }
      count_client_message(step.frame.type);
      fwd += step.n;
    }
    add_input_piece(run_start, fwd);
    // Bytes of a message are forwarded but not all of it: the backend is waiting for the rest.
    client_mid_message_ = framing_lost || (scanner.in_body() && !skip_body_);
    if (!client_batch_->client_out.empty()) {
      // Sluice's own answers (refusals, a Sync without a backend) precede anything the backend
      // will say about later messages of this batch, which it has not been sent yet.
      co_await asio::async_write(client_, asio::buffer(client_batch_->client_out), ec_token(ec));
      if (ec) break;
    }
    if (!client_batch_->pieces.empty() && backend_) {
      if (retry_writing_) co_await wait_for_retry_write();  // a retry it answers goes first
      writing_to_backend_ = true;
      // A non-blocking send first; the rest (rare: a full socket buffer) asynchronously.
      std::vector<asio::const_buffer>& out = client_batch_->gather;
      gather(view);
      const std::size_t total = asio::buffer_size(out);
      const std::size_t sent = send_now(backend_->socket, out, ec);
      if (!ec || ec == asio::error::would_block) {
        ec.clear();
        if (sent < total) {
          drop_front(out, sent);
          co_await asio::async_write(backend_->socket, out, ec_token(ec));
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
    client_batch_.reset();
    if (stop || framing_lost || client_terminated_ || backend_failed_) break;
  }
  co_await end_relay();
}

// The client is done (Terminate, EOF or error) or the session cannot go on: stops the backend
// pump and cleans up.
awaitable<void> ClientSession::end_relay() {
  client_batch_.reset();
  client_mid_message_ =
      client_mid_message_ || client_scanner_.in_body() || (!client_terminated_ && !in_.empty());
  if (backend_pump_running_) {
    // Stop reading from the backend and wait for the pump to notice. This cancel is not a
    // hand-back wake-up (a stale one would make the pump read on).
    asio::steady_timer done(client_.get_executor(), asio::steady_timer::time_point::max());
    pump_done_ = &done;
    woken_for_detach_ = false;
    error_code ec;
    if (backend_) backend_->socket.cancel(ec);
    while (backend_pump_running_) co_await done.async_wait(ec_token(ec));
    pump_done_ = nullptr;
  }
  co_await cleanup();
  log::session().debug("session_ended session={}", key_pid_);
}

// ---- 6. cleanup ------------------------------------------------------------------------------

awaitable<void> ClientSession::cleanup() {
  auto cfg = rt_.config();
  auto ex = co_await asio::this_coro::executor;
  if (cancel_slot_ != nullptr) CancelRegistry::clear_target(*cancel_slot_);
  disarm_idle_transaction_timer();
  if (statement_timer_) statement_timer_->cancel();
  if (backend_ && !tx_mode_ && series_ != nullptr) {
    series_->observe_transaction(std::chrono::steady_clock::now() - attached_at_);  // the session
  }
  if (backend_) {
    bool reusable = !backend_failed_ && !backend_mid_message_ && !client_mid_message_ &&
                    pending_syncs_ == 0 && !unsynced_extended_ &&
                    backend_->tx == pr::TxStatus::Idle && backend_->socket.is_open();
    // Transaction pooling without a reset: settings the client may have changed but Sluice has
    // not read back would reach the next client. Such a backend is closed.
    if (tx_mode_ && !pinned_ && (settings_changed_ || readback_)) reusable = false;
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
      // The reset (DISCARD ALL by default) may have dropped every prepared statement and
      // setting: nothing of what Sluice knew of them holds any more.
      backend_->applied.clear();
      backend_->synced_params.reset();
      backend_->statements.clear();
    }
    if (pending_syncs_ > 0 && !backend_failed_ && backend_->remote) {
      // The client left with a query still running: cancel it so the server stops working for
      // nobody (closing the socket alone is noticed only when the server next writes).
      asio::co_spawn(ex,
                     send_cancel_request(ex, *backend_->remote, backend_->pid, backend_->secret),
                     on_task_exit(Task::CancelRequest));
    }
    backend_->buf.release_memory();
    rt_.pools().checkin(*pool_, std::move(backend_), reusable, lease_,
                        statement_timed_out_ ? pools::LeaseOutcome::TimedOut
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
