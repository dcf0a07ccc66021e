#include "src/admin/console.hpp"

#include "src/admin/admin_command.hpp"
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

std::string_view sqlstate_of(admin::AdminParseErrorKind kind) {
  switch (kind) {
    case admin::AdminParseErrorKind::UnknownShowItem:
    case admin::AdminParseErrorKind::UnknownSetting:
      return "42704";  // undefined_object
    case admin::AdminParseErrorKind::Syntax:
    case admin::AdminParseErrorKind::UnknownCommand:
      break;
  }
  return "42601";  // syntax_error
}

// Runs one parsed command; one overload per command. Returns the action's error, if any; SHOW
// cannot fail.
class Runner {
 public:
  Runner(AdminActions& actions, pr::Buffer& out) : actions_(actions), out_(out) {}

  std::optional<AdminError> operator()(const admin::ShowCommand& c) {
    const Snapshot snapshot = show_needs_snapshot(c.item)
                                  ? actions_.snapshot(c.item == admin::ShowItem::Clients)
                                  : Snapshot{};
    render_show(c.item, snapshot, out_);
    return std::nullopt;
  }
  std::optional<AdminError> operator()(const admin::SetBulkheadCommand& c) {
    return actions_.set_bulkhead(c.server, c.bulkhead, c.key, c.value);
  }
  std::optional<AdminError> operator()(const admin::ReloadCommand&) { return actions_.reload(); }
  std::optional<AdminError> operator()(const admin::PauseCommand& c) {
    return actions_.pause(c.database);
  }
  std::optional<AdminError> operator()(const admin::ResumeCommand& c) {
    return actions_.resume(c.database);
  }
  std::optional<AdminError> operator()(const admin::KillClientCommand& c) {
    return actions_.kill_client(c.id);
  }
  std::optional<AdminError> operator()(const admin::ShutdownCommand& c) {
    return actions_.shutdown(c.wait_for_clients);
  }

 private:
  AdminActions& actions_;
  pr::Buffer& out_;
};

// False when the command failed (its ErrorResponse is in `out`).
bool run(const admin::AdminCommand& command, AdminRole role, AdminActions& actions,
         pr::Buffer& out) {
  if (role != AdminRole::Admin && !admin::is_read_only(command)) {
    write_error(out, "42501",
                "permission denied: " + std::string(admin::command_name(command)) +
                    " requires an admin user (stats_users may only run SHOW)");
    return false;
  }
  if (auto err = std::visit(Runner(actions, out), command)) {
    write_error(out, err->sqlstate, err->message);
    return false;
  }
  if (!admin::is_read_only(command)) pr::build_command_complete(out, admin::command_tag(command));
  return true;
}

}  // namespace

protocol::Buffer execute_admin_query(std::string_view sql, AdminRole role, AdminActions& actions,
                                     std::vector<std::string>* paused) {
  pr::Buffer out;
  const admin::StatementSplit split = admin::split_statements(sql);
  if (split.too_many) {
    write_error(out, "54000",
                "too many statements in one query (at most " +
                    std::to_string(admin::kMaxAdminStatements) + ")");
    return out;
  }
  if (split.statements.empty()) {
    pr::build_empty_query_response(out);
    return out;
  }
  // Parse everything first, as PostgreSQL does: a syntax error anywhere runs nothing.
  std::vector<admin::AdminCommand> commands;
  commands.reserve(split.statements.size());
  for (std::string_view statement : split.statements) {
    admin::AdminParseResult parsed = admin::parse_admin_command(statement);
    if (const auto* err = std::get_if<admin::AdminParseError>(&parsed)) {
      write_error(out, sqlstate_of(err->kind), err->message);
      return out;
    }
    commands.push_back(std::get<admin::AdminCommand>(std::move(parsed)));
  }
  for (const admin::AdminCommand& command : commands) {
    if (!run(command, role, actions, out)) break;
    if (const auto* pause = std::get_if<admin::PauseCommand>(&command); pause && paused) {
      paused->push_back(pause->database);
    }
  }
  return out;
}

}  // namespace sluice
