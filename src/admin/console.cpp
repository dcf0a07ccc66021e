#include "src/admin/console.hpp"

#include "protocol/admin_command.hpp"
#include "src/admin/show.hpp"

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace sluice {
namespace {

namespace pr = protocol;

void write_error(pr::Buffer& out, std::string_view sqlstate, std::string_view message) {
  // An action's code is passed on as given; one that is not a SQLSTATE would confuse clients.
  if (sqlstate.size() != 5) sqlstate = "XX000";
  pr::build_error_response(
      out,
      pr::ErrorInfo{.severity = pr::Severity::Error, .sqlstate = sqlstate, .message = message});
}

std::string_view sqlstate_of(pr::AdminParseErrorKind kind) {
  switch (kind) {
    case pr::AdminParseErrorKind::UnknownShowItem:
    case pr::AdminParseErrorKind::UnknownSetting:
      return "42704";  // undefined_object
    case pr::AdminParseErrorKind::Syntax:
    case pr::AdminParseErrorKind::UnknownCommand:
      break;
  }
  return "42601";  // syntax_error
}

// Runs one parsed command; one overload per command. Returns the action's error, if any; SHOW
// cannot fail.
class Runner {
 public:
  Runner(AdminActions& actions, pr::Buffer& out) : actions_(actions), out_(out) {}

  std::optional<AdminError> operator()(const pr::ShowCommand& c) {
    const Snapshot snapshot = show_needs_snapshot(c.item)
                                  ? actions_.snapshot(c.item == pr::ShowItem::Clients)
                                  : Snapshot{};
    render_show(c.item, snapshot, out_);
    return std::nullopt;
  }
  std::optional<AdminError> operator()(const pr::SetBulkheadCommand& c) {
    return actions_.set_bulkhead(c.server, c.bulkhead, c.key, c.value);
  }
  std::optional<AdminError> operator()(const pr::ReloadCommand&) { return actions_.reload(); }
  std::optional<AdminError> operator()(const pr::PauseCommand& c) {
    return actions_.pause(c.database);
  }
  std::optional<AdminError> operator()(const pr::ResumeCommand& c) {
    return actions_.resume(c.database);
  }
  std::optional<AdminError> operator()(const pr::KillClientCommand& c) {
    return actions_.kill_client(c.id);
  }
  std::optional<AdminError> operator()(const pr::ShutdownCommand& c) {
    return actions_.shutdown(c.wait_for_clients);
  }

 private:
  AdminActions& actions_;
  pr::Buffer& out_;
};

// False when the command failed (its ErrorResponse is in `out`).
bool run(const pr::AdminCommand& command, AdminRole role, AdminActions& actions, pr::Buffer& out) {
  if (role != AdminRole::Admin && !pr::is_read_only(command)) {
    write_error(out, "42501",
                "permission denied: " + std::string(pr::command_name(command)) +
                    " requires an admin user (stats_users may only run SHOW)");
    return false;
  }
  if (auto err = std::visit(Runner(actions, out), command)) {
    write_error(out, err->sqlstate, err->message);
    return false;
  }
  if (!pr::is_read_only(command)) pr::build_command_complete(out, pr::command_tag(command));
  return true;
}

}  // namespace

protocol::Buffer execute_admin_query(std::string_view sql, AdminRole role, AdminActions& actions,
                                     std::vector<std::string>* paused) {
  pr::Buffer out;
  const pr::StatementSplit split = pr::split_statements(sql);
  if (split.too_many) {
    write_error(out, "54000",
                "too many statements in one query (at most " +
                    std::to_string(pr::kMaxAdminStatements) + ")");
    return out;
  }
  if (split.statements.empty()) {
    pr::build_empty_query_response(out);
    return out;
  }
  // Parse everything first, as PostgreSQL does: a syntax error anywhere runs nothing.
  std::vector<pr::AdminCommand> commands;
  commands.reserve(split.statements.size());
  for (std::string_view statement : split.statements) {
    pr::AdminParseResult parsed = pr::parse_admin_command(statement);
    if (const auto* err = std::get_if<pr::AdminParseError>(&parsed)) {
      write_error(out, sqlstate_of(err->kind), err->message);
      return out;
    }
    commands.push_back(std::get<pr::AdminCommand>(std::move(parsed)));
  }
  for (const pr::AdminCommand& command : commands) {
    if (!run(command, role, actions, out)) break;
    if (const auto* pause = std::get_if<pr::PauseCommand>(&command); pause && paused) {
      paused->push_back(pause->database);
    }
  }
  return out;
}

}  // namespace sluice
