// ClientSession: one client connection, from its first byte to its close.
//
// run() reads like a numbered lifecycle (Odyssey's client routine):
//   1. startup: SSLRequest/GSSENCRequest answered 'N', CancelRequest forwarded, StartupMessage read
//   2. admission of the connection: max_client_conn, shutdown
//   3. authentication (trust, md5, SCRAM-SHA-256) against the auth file
//   4. database lookup, pool, slot, backend; parameter sync; welcome (ParameterStatus,
//      BackendKeyData issued by Sluice, ReadyForQuery)
//   5. relay until the client leaves or the backend fails (session pooling)
//   6. cleanup: reset query, backend back to the pool or closed, slot released
//
// The session lives on the executor of the thread that accepted it; terminate() may be called
// from any thread and posts to that executor.
#pragma once

#include "protocol/builders.hpp"
#include "protocol/session_features.hpp"
#include "protocol/statements.hpp"
#include "protocol/stream_scanner.hpp"
#include "src/asio_prelude.hpp"
#include "src/backend.hpp"
#include "src/pool_manager.hpp"
#include "src/snapshot.hpp"
#include "src/wire.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace sluice {

class Runtime;
struct UserSecret;

// The backend name of a prepared-statement definition: "sluice_" and 32 hex digits of its
// SHA-256, so that no client can make its statement collide with another's.
std::string statement_backend_name(std::string_view body);

class ClientSession : public std::enable_shared_from_this<ClientSession> {
 public:
  ClientSession(Runtime& rt, Socket socket, std::string peer);
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
  awaitable<std::optional<BackendError>> sync_parameters(bool login);
  void pin(protocol::SessionFeature why);
  void inspect_client_message(protocol::ByteView msg, bool complete);
  void count_client_message(char type);
  bool rewrite_client_message(protocol::ByteView view, const protocol::ScanStep& step,
                              std::size_t at, std::size_t& run_start);
  void add_input_piece(std::size_t from, std::size_t to);
  const std::vector<asio::const_buffer>& gather(protocol::ByteView input);
  bool can_detach() const;
  void refresh_params_key();
  std::optional<protocol::Buffer> rename_statements_in_error(protocol::ByteView msg) const;
  void start_backend_pump();
  void statement_started();
  void arm_statement_timer(std::chrono::steady_clock::time_point at);
  void on_statement_timer();
  void arm_idle_transaction_timer();
  void disarm_idle_transaction_timer();
  awaitable<void> relay();
  awaitable<void> backend_to_client();
  awaitable<void> cleanup();

  awaitable<void> send_fatal(std::string_view sqlstate, std::string_view message,
                             std::string_view detail = {}, std::string_view hint = {});
  awaitable<void> auth_failed();
  BackendCredentials backend_credentials() const;

  Runtime& rt_;
  Socket client_;
  std::string peer_;
  std::chrono::system_clock::time_point connected_at_ = std::chrono::system_clock::now();
  std::atomic<ClientState> state_{ClientState::Login};
  std::atomic<std::uint32_t> backend_pid_{0};
  std::atomic<std::int64_t> wait_since_ns_{0};  // steady_clock, while Waiting
  ReadBuffer in_;                               // client bytes (startup phase and relay)
  protocol::Buffer out_;
  std::uint32_t key_pid_ = 0;
  std::uint32_t key_secret_ = 0;
  bool counted_ = false;

  // From the StartupMessage.
  std::string user_;
  std::string database_;
  // Parameters the client expects: its startup values until login, then every settable
  // parameter as the server spells it, kept up to date from ParameterStatus.
  Params client_params_;
  std::string params_key_;  // client_params_ as one string (refresh_params_key())
  std::string app_name_;

  // Learned during authentication (SCRAM passthrough).
  std::optional<auth::Key> scram_client_key_;
  std::optional<auth::Key> scram_server_key_;
  // auth_query: the secret found on the server for a user missing from auth_file (or null);
  // used for the client's authentication and by backend_credentials().
  std::shared_ptr<const UserSecret> queried_secret_;

  Pool* pool_ = nullptr;
  std::optional<ClientClass> class_;  // its bulkhead (none for the admin console)
  BulkheadSeries* series_ = nullptr;  // its bulkhead's metrics
  PoolManager::WaitHandle waiting_;   // set while queued for a slot
  bool tx_mode_ = false;              // transaction pooling for this client's database
  bool pinned_ = false;               // uses session state: keeps its backend until it leaves
  Lease lease_;
  std::shared_ptr<Backend> backend_;  // attached backend, if any
  // Transaction pooling: this client's named statements, and the edits to the attached backend's
  // ParseComplete/CloseComplete responses that rewriting them requires.
  protocol::StatementMapper statements_;
  protocol::ResponseEdits edits_;
  // One batch of output assembled from input bytes and rewritten messages.
  struct Piece {
    bool scratch = false;  // bytes of scratch_ (else of the input buffer)
    std::size_t offset = 0;
    std::size_t size = 0;
  };
  std::vector<Piece> pieces_;
  protocol::Buffer scratch_;
  std::vector<asio::const_buffer> gather_;
  std::vector<asio::const_buffer> backend_out_;  // the backend pump's gather list
  // Rewritten backend messages of a batch (a vector: moving a Buffer keeps its bytes in place).
  std::vector<protocol::Buffer> backend_replacements_;
  protocol::Buffer client_out_;      // Sluice's own answers to the client, written by relay()
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
  bool woken_for_detach_ = false;  // relay() cancelled the backend read to hand the backend back
  bool backend_pump_running_ = false;
  std::optional<asio::steady_timer> pump_done_;      // cancelled when the backend pump ends
  std::optional<asio::steady_timer> idle_tx_timer_;  // idle_transaction_timeout
  // Statement timeout backstop: a statement (Query or Sync sent, its ReadyForQuery not yet seen)
  // that runs past its bulkhead's statement_timeout plus the grace is cancelled; one that then
  // runs a further grace ends the session and its backend is closed.
  std::chrono::milliseconds statement_limit_{0};  // 0 = off
  std::chrono::milliseconds statement_grace_{0};
  std::chrono::steady_clock::time_point statement_started_{};
  std::chrono::steady_clock::time_point statement_cancelled_at_{};
  std::optional<asio::steady_timer> statement_timer_;
  bool statement_timer_armed_ = false;
  bool statement_cancel_sent_ = false;
  bool statement_timed_out_ = false;                     // the lease ends as TimedOut
  std::chrono::steady_clock::time_point attached_at_{};  // when backend_ was attached
  std::uint64_t idle_tx_generation_ = 0;                 // bumped on every disarm
  std::optional<std::pair<std::string, std::string>> terminate_reason_;
};

}  // namespace sluice
