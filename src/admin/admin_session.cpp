#include "src/admin/admin_session.hpp"

#include "protocol/builders.hpp"
#include "protocol/messages.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace sluice {
namespace {

namespace pr = protocol;

void build_error(pr::Buffer& out, pr::Severity severity, std::string_view sqlstate,
                 std::string_view message) {
  pr::build_error_response(
      out, pr::ErrorInfo{.severity = severity, .sqlstate = sqlstate, .message = message});
}

// What one client message leads to: the bytes in `out` are sent, then the loop goes on or ends.
enum class Next { Continue, End };

Next handle_message(pr::ByteView msg, AdminRole role, AdminActions& actions, bool& skip_to_sync,
                    std::vector<std::string>& paused, pr::Buffer& out) {
  const char type = static_cast<char>(msg[0]);
  if (type == pr::fe::kTerminate) return Next::End;
  if (type == pr::fe::kSync) {
    skip_to_sync = false;
    pr::build_ready_for_query(out, pr::TxStatus::Idle);
    return Next::Continue;
  }
  if (skip_to_sync) return Next::Continue;  // after an error, everything up to Sync is skipped
  switch (type) {
    case pr::fe::kQuery: {
      const auto sql = pr::read_query(msg);
      if (!sql) {
        build_error(out, pr::Severity::Fatal, "08P01", "invalid Query message");
        return Next::End;
      }
      out = execute_admin_query(*sql, role, actions, &paused);
      pr::build_ready_for_query(out, pr::TxStatus::Idle);
      return Next::Continue;
    }
    case pr::fe::kParse:
    case pr::fe::kBind:
    case pr::fe::kDescribe:
    case pr::fe::kExecute:
    case pr::fe::kClose:
    case pr::fe::kFlush:
      build_error(out, pr::Severity::Error, "0A000",
                  "the admin console supports only the simple query protocol");
      skip_to_sync = true;
      return Next::Continue;
    case pr::fe::kFunctionCall:  // not part of the extended protocol: answered at once
      build_error(out, pr::Severity::Error, "0A000",
                  "the admin console supports only the simple query protocol");
      pr::build_ready_for_query(out, pr::TxStatus::Idle);
      return Next::Continue;
    case pr::fe::kCopyData:
    case pr::fe::kCopyDone:
    case pr::fe::kCopyFail:
      return Next::Continue;  // ignored outside COPY, as PostgreSQL does
    default:
      build_error(out, pr::Severity::Fatal, "08P01",
                  std::string("unexpected message type '") + type + "'");
      return Next::End;
  }
}

// As PgBouncer's: PAUSE is answered once the paused databases' running transactions (and, in
// session pooling, sessions) are over, so that what a script does next meets a quiet database.
// It stops waiting if the database is resumed meanwhile or the session is closed (shutdown).
awaitable<void> wait_for_pause(Socket& client, AdminActions& actions,
                               const std::vector<std::string>& paused) {
  asio::steady_timer poll(client.get_executor());
  for (const std::string& database : paused) {
    while (!actions.pause_settled(database)) {
      if (!client.is_open()) co_return;
      poll.expires_after(std::chrono::milliseconds(20));
      error_code ec;
      co_await poll.async_wait(ec_token(ec));
    }
  }
}

}  // namespace

awaitable<void> serve_admin(Socket& client, ReadBuffer& in, AdminRole role, AdminActions& actions,
                            std::uint32_t max_message_size) {
  bool skip_to_sync = false;
  std::vector<std::string> paused;  // by the current Query
  for (;;) {
    pr::FrameError err = pr::FrameError::None;
    error_code ec;
    const auto size =
        co_await read_message(client, in, pr::Direction::Frontend, max_message_size, err, ec);
    pr::Buffer out;
    if (!size) {
      if (err == pr::FrameError::None) co_return;  // EOF or I/O error
      build_error(out, pr::Severity::Fatal, "08P01",
                  "invalid message framing: " + std::string(pr::to_string(err)));
      co_await write_all(client, out, ec);
      co_return;
    }
    const Next next =
        handle_message(in.view().first(*size), role, actions, skip_to_sync, paused, out);
    in.consume(*size);
    in.release_memory();
    if (!paused.empty()) {
      co_await wait_for_pause(client, actions, paused);
      paused.clear();
    }
    if (!out.empty() && !co_await write_all(client, out, ec)) co_return;
    if (next == Next::End) co_return;
  }
}

}  // namespace sluice
