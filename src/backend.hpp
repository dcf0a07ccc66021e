// Backend: one physical connection from Sluice to a PostgreSQL server, and the coroutines that
// open it (startup and authentication as a client: trust, cleartext, md5, SCRAM-SHA-256 with a
// password or with keys passed through from the client's own SCRAM exchange) and that run
// Sluice's own queries on it (parameter sync, reset query).
//
// A Backend is owned through std::shared_ptr: by the session using it, or by the pool while idle.
// Only one session uses it at a time; its socket may belong to another thread's io_context, which
// Asio allows (completions run on the using coroutine's executor).
#pragma once

#include "config/config.hpp"
#include "pools/backend_book.hpp"
#include "protocol/messages.hpp"
#include "protocol/statements.hpp"
#include "protocol/text.hpp"
#include "src/asio_prelude.hpp"
#include "src/auth/scram.hpp"
#include "src/wire.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sluice {

struct BackendCredentials {
  std::string user;
  std::optional<std::string> password;        // plain text
  std::optional<std::string> md5_secret;      // "md5..." (md5 method only)
  std::optional<auth::Key> scram_client_key;  // SCRAM passthrough
  std::optional<auth::Key> scram_server_key;
};

// Why a backend could not be used, in the terms the client will be told.
struct BackendError {
  std::string sqlstate = "08006";
  std::string message;
  std::string detail;
  bool from_server = false;  // the server sent this ErrorResponse itself
};

using Params = std::vector<std::pair<std::string, std::string>>;

struct LoopTurns;  // pool_manager.cpp: the event-loop turn counter of one io_context
class ParamSet;    // src/param_set.hpp: a client's expected settings, interned

class Backend {
 public:
  explicit Backend(const asio::any_io_executor& ex) : socket(ex) {}

  Socket socket;
  ReadBuffer buf{0};
  pools::BackendId id = 0;
  std::string server;              // server name, for logs and stats
  std::optional<Endpoint> remote;  // where it is connected (also the cancel target)
  std::uint32_t pid = 0;
  std::uint32_t secret = 0;
  std::map<std::string, std::string> reported;  // latest ParameterStatus values
  std::map<std::string, std::string> defaults;  // ParameterStatus values right after login
  Params startup;                               // parameters it was started with
  Params applied;  // unreported parameters Sluice has SET on it since its last reset
  // The client settings (an interned ParamSet: equal sets are the same object) it was last
  // brought in line with; null when unknown (new, or reset).
  std::shared_ptr<const ParamSet> synced_params;
  // Named statements prepared on it (transaction pooling); bound set by the session using it.
  protocol::BackendStatementCache statements{0};
  protocol::TxStatus tx = protocol::TxStatus::Idle;
  std::chrono::steady_clock::time_point created{};
  // Pool bookkeeping (PoolManager): the io_context that opened it (null if the executor was not
  // an io_context's) and that loop's turn counter; the loop turn in which it was last checked in
  // on that loop's thread (0: elsewhere, or not yet). Touched only by its current owner.
  asio::io_context* loop = nullptr;
  LoopTurns* loop_turns = nullptr;
  std::uint64_t checkin_turn = 0;
  // CancelRegistry: which registry interned its endpoint (high half) and where (low half).
  std::uint64_t cancel_endpoint = 0;

  // The value a parameter has on this backend now, as far as Sluice can know: the reported value,
  // else the value Sluice applied or started it with, else nullopt. Names are case-insensitive.
  std::optional<std::string> known_value(std::string_view name) const;
  // True if the connection is idle and silent: no unread bytes and no EOF (one MSG_PEEK recv).
  bool idle_and_quiet();
  void close();
};

// Opens `b` to `server`, logs in as creds.user to `dbname` with `startup` parameters, and reads
// up to the first ReadyForQuery. On failure `b` is closed.
awaitable<std::optional<BackendError>> connect_backend(Backend& b, const config::Server& server,
                                                       const std::string& dbname,
                                                       const BackendCredentials& creds,
                                                       const Params& startup,
                                                       std::uint32_t max_message_size);

// Sends `sql` as a simple Query and reads every response up to ReadyForQuery, recording
// ParameterStatus values. Returns the first ErrorResponse (the backend stays usable: it ends with
// ReadyForQuery), or an 08006 error when the connection failed.
awaitable<std::optional<BackendError>> run_internal_query(Backend& b, const std::string& sql,
                                                          std::uint32_t max_message_size);
// The same for messages already built (`out`, ending with a Query or a Sync).
awaitable<std::optional<BackendError>> run_internal_messages(Backend& b,
                                                             const protocol::Buffer& out,
                                                             std::uint32_t max_message_size);

// Writes a CancelRequest for (pid, secret) to `target` on a fresh connection and closes it.
awaitable<void> send_cancel_request(asio::any_io_executor ex, Endpoint target, std::uint32_t pid,
                                    std::uint32_t secret);

// Case-insensitive lookup and update of a parameter list (GUC names are case-insensitive).
std::string* find_param(Params& params, std::string_view name);
const std::string* find_param(const Params& params, std::string_view name);
void set_param(Params& params, std::string_view name, std::string_view value);
using protocol::iequals;

}  // namespace sluice
