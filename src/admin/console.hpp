// The admin console: what a user connected to the virtual database "sluice" gets for the SQL text
// of one Query message. Commands are parsed by src/admin/admin_command.hpp; SHOW renders a Snapshot
// (src/snapshot.hpp, the same numbers as /metrics); every other command is handed to an
// AdminActions, which the Runtime implements and tests fake.
//
// No sockets and no state: execute_admin_query is a function of its arguments (and of what the
// actions do). It runs on the admin session's thread; AdminActions implementations must therefore
// be callable from any event-loop thread.
#pragma once

#include "protocol/builders.hpp"
#include "src/snapshot.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

// admin_users may run every command; stats_users only the read-only SHOW commands.
enum class AdminRole { Admin, Stats };

// Why an action failed, as sent to the client in an ErrorResponse.
struct AdminError {
  std::string sqlstate;  // five characters: 22023 invalid_parameter_value for a bad value, 42704
                         // undefined_object for an unknown bulkhead, database or client, ...
  std::string message;
};

// What the console can do to the running pooler. Each action returns nullopt on success.
class AdminActions {
 public:
  virtual ~AdminActions() = default;
  // One consistent reading; clients are listed only when `with_clients` (SHOW CLIENTS).
  virtual Snapshot snapshot(bool with_clients) = 0;
  // `server` is empty when the command did not name one; `key` is one of
  // admin::bulkhead_setting_keys(); `value` is unvalidated text ("250ms", "4").
  virtual std::optional<AdminError> set_bulkhead(std::string_view server, std::string_view name,
                                                 std::string_view key, std::string_view value) = 0;
  virtual std::optional<AdminError> reload() = 0;
  virtual std::optional<AdminError> pause(std::string_view database) = 0;  // empty: every one
  // After a PAUSE: true once the database ("" = every one) has no backend in use or being
  // connected, or has been resumed since; the console answers PAUSE only then.
  virtual bool pause_settled(std::string_view database) = 0;
  virtual std::optional<AdminError> resume(std::string_view database) = 0;  // empty: every one
  virtual std::optional<AdminError> kill_client(std::uint32_t id) = 0;  // the BackendKeyData pid
  virtual std::optional<AdminError> shutdown(bool wait_for_clients) = 0;
};

// Runs the statements of `sql` (a simple Query's text) in order and returns the messages to send
// back, without the final ReadyForQuery (the caller appends it). As PostgreSQL does for a
// multi-statement Query: the whole text is parsed first (a syntax error anywhere runs nothing),
// then the statements run in order and the first error (ErrorResponse) ends the list. Empty text:
// EmptyQueryResponse. A stats user running a changing command gets 42501.
// Databases paused by a successful PAUSE are appended to `paused` when given ("" = every one).
protocol::Buffer execute_admin_query(std::string_view sql, AdminRole role, AdminActions& actions,
                                     std::vector<std::string>* paused = nullptr);

}  // namespace sluice
