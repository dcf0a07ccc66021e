// ClientSession: one client connection, from its first byte to its close.
//
// run() reads like a numbered lifecycle (Odyssey's client routine):
//   1. startup: SSLRequest/GSSENCRequest answered 'N', CancelRequest forwarded, StartupMessage read
//   2. admission of the connection: max_client_conn (counted since accept: ConnectionGate),
//      shutdown, the bulkhead's early refusal (nothing charged yet)
//   3. authentication (trust, md5, SCRAM-SHA-256) against the auth file; then the bulkhead's
//      max_clients and connection rate are charged
//   4. database lookup, pool; welcome (ParameterStatus from the pool's known server values,
//      BackendKeyData issued by Sluice, ReadyForQuery) without a backend; only a pool that has
//      never connected one lends a backend (slot, backend, parameter sync) to the welcome
//   5. relay: the first message takes a slot and a backend (transaction pooling: the first of
//      each transaction), kept until the client leaves or the backend fails (session pooling)
//   6. cleanup: reset query, backend back to the pool or closed, slot released
//
// The session lives on the executor of the thread that accepted it; terminate() may be called
// from any thread and posts to that executor.
#pragma once

#include "protocol/builders.hpp"
#include "protocol/session_features.hpp"
#include "protocol/statement_retry.hpp"
#include "protocol/statements.hpp"
#include "protocol/stream_scanner.hpp"
#include "src/asio_prelude.hpp"
#include "src/backend.hpp"
#include "src/cancel_registry.hpp"
#include "src/connection_gate.hpp"
#include "src/param_set.hpp"
#include "src/pool_manager.hpp"
#include "src/snapshot.hpp"
#include "src/wire.hpp"

#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace sluice {

class Runtime;
struct UserSecret;

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  // `ticket` counts the connection (and its peer's login) from accept on (src/connection_gate.hpp).
  ClientSession(Runtime& rt, Socket socket, std::string peer, ConnectionGate::Ticket ticket);
  ~ClientSession();

  awaitable<void> run();
  // Ends the session with a FATAL error (sent when the client is at a message boundary).
  void terminate(std::string sqlstate, std::string message);
  // A CancelRequest for this session arrived while it waits in a bulkhead's queue: it leaves the
  // queue and its work is answered with 57014. Any thread.
  void cancel_wait();
  std::uint32_t id() const { return key_pid_; }
  // For SHOW CLIENTS: safe from any thread once the session is registered (its strings no longer
  // change then; the changing parts are atomics).
  ClientSnapshot describe() const;

 private:
  struct LoginResult;
  awaitable<bool> read_startup();
  awaitable<bool> classify(const config::Config& cfg);
  awaitable<bool> charge_bulkhead();
  awaitable<void> refuse_client(const AdmissionRefusal& refusal);
  awaitable<void> handle_cancel_request(protocol::ByteView msg);
  awaitable<bool> authenticate();
  awaitable<bool> auth_password(const UserSecret* secret);
  awaitable<bool> auth_scram(const UserSecret* secret);
  awaitable<std::optional<std::size_t>> read_client_message(char expected_type);
  awaitable<bool> login_attach();
  awaitable<bool> welcome(const std::map<std::string, std::string>& defaults);
  awaitable<void> run_admin();
  void set_state(ClientState s);
  // Why a backend could not be attached; fatal ones end the session.
  struct Refusal {
    std::string sqlstate;
    std::string message;
    std::string detail;
    std::string hint;
    bool fatal = false;
  };
  awaitable<std::optional<Refusal>> acquire_backend(bool login);
  void skip_client_message(const protocol::ScanStep& step, std::size_t at, std::size_t& run_start,
                           bool body_follows);
  void detach_backend();
  // Session settings (session_settings.cpp).
  awaitable<std::optional<BackendError>> sync_parameters(bool login);
  void pin(protocol::SessionFeature why);
  void set_terminate_reason(std::string_view sqlstate, std::string_view message);
  // Pins, notes settings changes, forgets dropped statements; true when the message is refused.
  bool inspect_client_message(protocol::ByteView msg, bool complete);
  void refuse_client_message(const protocol::ScanStep& step, std::size_t at,
                             std::size_t& run_start);
  void count_client_message(char type);
  bool rewrite_client_message(protocol::ByteView view, const protocol::ScanStep& step,
                              std::size_t at, std::size_t& run_start);
  bool prepare_without_backend(protocol::ByteView view, const protocol::ScanStep& step,
                               std::size_t at);
  void add_input_piece(std::size_t from, std::size_t to);
  const std::vector<asio::const_buffer>& gather(protocol::ByteView input);
  bool can_detach() const;
  std::optional<protocol::Buffer> rename_statements_in_error(protocol::ByteView msg) const;
  void statement_started();
  void arm_statement_timer(std::chrono::steady_clock::time_point at);
  void on_statement_timer();
  void arm_idle_transaction_timer();
  void disarm_idle_transaction_timer();
  // Client to backend (session_relay.cpp). A transaction-pooling client that stays idle parks:
  // relay() returns, leaving a plain wait for the client's next bytes (which holds the session),
  // and that wait's completion starts relay() again: an idle client holds no coroutine frame.
  // relay() ends the session (cleanup()) unless it parks.
  awaitable<void> relay(bool resumed, error_code wake);
  struct ParkedWait;
  void park();
  void resume(error_code ec);
  // The per-thread list of transaction-pooling clients waiting in relay() for their next bytes;
  // a periodic sweep makes those that waited a whole period park.
  void list_idle();
  void unlist_idle();
  static void sweep_idle(std::shared_ptr<asio::steady_timer> timer);
  void relay_failed(std::exception_ptr e);
  awaitable<void> end_relay();
  // Backend to client: completion handlers, not a coroutine, from the backend's attach until its
  // detach (or the session's end); backend_pump_running_ says whether it is running.
  void start_backend_pump();
  void use_relay_backend_scanner();  // the backend scanner of the relay (after a read-back)
  void read_backend();
  void on_backend_read(error_code ec, std::size_t n);
  bool forward_backend_batch();
  bool finish_backend_batch(std::size_t fwd, bool framing_lost, error_code write_ec);
  bool must_see(char type) const;
  protocol::ResponseEdits::Edit apply_response_edits(char type);
  void note_settings_change(std::string_view sql);
  bool hand_back();
  bool start_settings_readback();
  void on_readback_message(protocol::ByteView msg);
  bool forget_lost_statements(protocol::ByteView msg);
  // Transaction pooling: a group that lost its statement is sent again (session_retry.cpp).
  void record_for_retry(char type, protocol::ByteView whole_message, bool refused);
  bool hold_for_retry(protocol::ByteView to_client);
  protocol::GroupRetry::AtReady at_ready_for_retry();
  void send_retry(bool sync_first);
  awaitable<void> wait_for_retry_write();
  void end_backend_pump(error_code ec, bool client_gone);
  void backend_pump_failed();
  void backend_pump_stopped();
  awaitable<void> cleanup();

  awaitable<void> send_fatal(std::string_view sqlstate, std::string_view message,
                             std::string_view detail = {}, std::string_view hint = {});
  awaitable<void> auth_failed();
  BackendCredentials backend_credentials() const;
  // The client's IP address (none for a Unix-socket client), also behind the TLS bridge.
  std::optional<asio::ip::address> client_address() const;

  Runtime& rt_;
  Socket client_;
  std::string peer_;
  // A TLS client's address: client_ is then one end of the TLS bridge's socketpair (src/tls.hpp).
  std::unique_ptr<const asio::ip::address> tls_peer_;
  std::chrono::system_clock::time_point connected_at_ = std::chrono::system_clock::now();
  std::atomic<ClientState> state_{ClientState::Login};
  std::atomic<std::uint32_t> backend_pid_{0};
  std::atomic<std::int64_t> wait_since_ns_{0};  // steady_clock, while Waiting
  ReadBuffer in_;                               // client bytes (startup phase and relay)
  std::uint32_t key_pid_ = 0;
  std::uint32_t key_secret_ = 0;
  CancelRegistry::Slot* cancel_slot_ = nullptr;  // key_pid_'s, until ~ClientSession
  ConnectionGate::Ticket ticket_;  // this connection in max_client_conn and its peer's logins
  bool class_counted_ = false;     // counted in its bulkhead's clients (after authentication)
  bool tx_mode_ = false;           // transaction pooling for this client's database
  bool pinned_ = false;            // uses session state: keeps its backend until it leaves
  // Transaction pooling: the transaction under way may have changed an unreported setting, to be
  // read back from the backend before it is handed back (hand_back()).
  bool settings_changed_ = false;
  bool idle_listed_ = false;      // in this thread's list of idle clients (list_idle())
  bool idle_seen_ = false;        // a sweep has seen it listed
  bool park_requested_ = false;   // the sweep cancelled its wait so that it parks
  std::uint32_t idle_index_ = 0;  // its place in that list

  // From the StartupMessage.
  std::string user_;
  std::string database_;
  // Parameters the client expects: its startup values until login, then every settable
  // parameter as the server spells it, kept up to date from ParameterStatus. Interned: the
  // clients of a pool mostly expect the same settings and share one set (bench/PROFILE.md, M2).
  ParamSetPtr params_ = ParamSet::empty_set();
  std::string app_name_;

  // Learned during authentication (SCRAM passthrough): the client key and the server key, until
  // login has handed them to the pool.
  std::unique_ptr<std::pair<auth::Key, auth::Key>> scram_keys_;
  // auth_query: the secret found on the server for a user missing from auth_file (or null);
  // used for the client's authentication and by backend_credentials().
  std::shared_ptr<const UserSecret> queried_secret_;

  Pool* pool_ = nullptr;
  std::optional<ClientClass> class_;  // its bulkhead (none for the admin console)
  BulkheadSeries* series_ = nullptr;  // its bulkhead's metrics
  PoolManager::WaitHandle waiting_;   // set while queued for a slot
  Lease lease_;
  std::shared_ptr<Backend> backend_;  // attached backend, if any
  // Transaction pooling: this client's named statements, and the edits to the attached backend's
  // ParseComplete/CloseComplete responses that rewriting them requires.
  protocol::StatementMapper statements_;
  protocol::ResponseEdits edits_;
  // The group outstanding on the backend, kept for a retry; and a retry's bytes while they are
  // written (session_retry.cpp).
  protocol::GroupRetry retry_;
  protocol::Buffer retry_out_;
  // Scratch space of one batch of relayed bytes, taken from a per-thread free list when a batch
  // starts and given back when it ends (session_relay.cpp): an idle session holds none.
  struct ClientBatch;   // client to backend: output pieces, rewritten messages, Sluice's answers
  struct BackendBatch;  // backend to client: the gather list and rewritten messages
  struct BatchReturn {
    void operator()(ClientBatch* b) const;
    void operator()(BackendBatch* b) const;
  };
  std::unique_ptr<ClientBatch, BatchReturn> client_batch_;
  std::unique_ptr<BackendBatch, BatchReturn> backend_batch_;
  protocol::StreamScanner client_scanner_;
  protocol::StreamScanner backend_scanner_;
  std::size_t backend_need_ = 0;     // the backend's next read must have room for this much
  std::uint32_t max_message_ = 0;    // max_message_size (config) for the scanners
  bool discard_until_sync_ = false;  // a refused extended-protocol batch is being skipped
  bool skip_body_ = false;           // the rest of a skipped message is still arriving

  // Relay state (this executor only).
  std::uint32_t pending_syncs_ = 0;   // Query/Sync/FunctionCall sent, ReadyForQuery not yet seen
  bool unsynced_extended_ = false;    // extended-protocol messages sent since the last Sync
  bool backend_mid_message_ = false;  // backend->client stopped inside a message
  bool client_mid_message_ = false;   // client->backend stopped inside a message
  bool backend_failed_ = false;
  bool client_terminated_ = false;  // client sent Terminate
  bool writing_to_backend_ = false;
  bool retry_writing_ = false;     // the pump's asynchronous write of a retry is under way
  bool woken_for_detach_ = false;  // relay() cancelled the backend read to hand the backend back
  bool backend_pump_running_ = false;
  bool pump_writing_ = false;           // the pump's asynchronous write to the client is under way
  bool backend_same_thread_ = false;    // the backend's socket is on this session's io_context
  bool statement_timer_armed_ = false;  // (statement timeout backstop, below)
  bool statement_cancel_sent_ = false;
  bool statement_timed_out_ = false;  // the lease ends as TimedOut
  // While end_relay() waits for the backend pump to stop: its timer, cancelled by the pump.
  asio::steady_timer* pump_done_ = nullptr;
  // While relay() waits for a retry's write to finish (wait_for_retry_write()).
  asio::steady_timer* retry_write_done_ = nullptr;
  std::unique_ptr<asio::steady_timer> idle_tx_timer_;  // idle_transaction_timeout, once armed
  // Statement timeout backstop: a statement (Query or Sync sent, its ReadyForQuery not yet seen)
  // that runs past its bulkhead's statement_timeout plus the grace is cancelled; one that then
  // runs a further grace ends the session and its backend is closed.
  std::chrono::milliseconds statement_limit_{0};  // 0 = off
  std::chrono::milliseconds statement_grace_{0};
  std::chrono::steady_clock::time_point statement_started_{};
  std::chrono::steady_clock::time_point statement_cancelled_at_{};
  std::unique_ptr<asio::steady_timer> statement_timer_;  // once a statement was timed
  std::chrono::steady_clock::time_point attached_at_{};  // when backend_ was attached
  std::uint64_t idle_tx_generation_ = 0;                 // bumped on every disarm
  std::unique_ptr<std::pair<std::string, std::string>> terminate_reason_;  // SQLSTATE, message
  // While the backend answers Sluice's read-back of its settings (start_settings_readback()).
  struct SettingsReadback {
    Params rows;  // (name, setting)
    bool failed = false;
  };
  std::unique_ptr<SettingsReadback> readback_;
  // Custom parameter names ("myapp.tenant") the transaction's SQL may set, for the read-back.
  std::unique_ptr<std::vector<std::string>> custom_names_;
};

}  // namespace sluice
