// Admin console commands: the text an operator types in psql connected to the virtual database
// "sluice" (`psql -U sluice_admin sluice`), parsed into values.
//
//   SHOW BULKHEADS|POOLS|CLIENTS|SERVERS|STATS|CONFIG|VERSION|DATABASES|LISTS|HELP
//   SET BULKHEAD [server.]name key = value      (TO instead of =)
//   RELOAD
//   PAUSE [database]        RESUME [database]
//   KILL_CLIENT id
//   SHUTDOWN [WAIT_FOR_CLIENTS]
//
// Keywords and setting names are case-insensitive; names (bulkheads, servers, databases) are
// taken as written, because configured names are case-sensitive. A name may be double-quoted
// ("a.b" keeps its dot, "" inside stands for one "); a value may be a bare word, several bare words
// ("30 s", joined by one space), a double-quoted name or a single-quoted string ('' stands for ').
// Comments (-- to the end of the line, /* nested */) count as blanks. A query text may hold several
// statements separated by ';' outside quotes and comments (split_statements).
//
// Only the syntax is checked here: whether a bulkhead, database or client exists and whether a
// value is valid is for whoever carries the command out. Pure: no exceptions on any input (memory
// exhaustion aside), no reads past it, work linear in its length; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sluice::admin {

enum class ShowItem {
  Bulkheads,
  Pools,
  Clients,
  Servers,
  Stats,
  Config,
  Version,
  Databases,
  Lists,
  Help
};
// The keyword in upper case ("BULKHEADS").
std::string_view to_string(ShowItem item);
// Every item, in the order SHOW HELP lists them.
std::span<const ShowItem> show_items();

struct ShowCommand {
  ShowItem item = ShowItem::Help;
  friend bool operator==(const ShowCommand&, const ShowCommand&) = default;
};
struct SetBulkheadCommand {
  std::string server;    // empty when the name was not qualified ("server.name")
  std::string bulkhead;  // never empty
  std::string key;       // one of bulkhead_setting_keys(), lower case
  std::string value;     // unquoted (may be empty: '')
  friend bool operator==(const SetBulkheadCommand&, const SetBulkheadCommand&) = default;
};
struct ReloadCommand {
  friend bool operator==(const ReloadCommand&, const ReloadCommand&) = default;
};
struct PauseCommand {
  std::string database;  // empty: every database
  friend bool operator==(const PauseCommand&, const PauseCommand&) = default;
};
struct ResumeCommand {
  std::string database;  // empty: every database
  friend bool operator==(const ResumeCommand&, const ResumeCommand&) = default;
};
struct KillClientCommand {
  std::uint32_t id = 0;  // the BackendKeyData process id Sluice issued to the client
  friend bool operator==(const KillClientCommand&, const KillClientCommand&) = default;
};
struct ShutdownCommand {
  bool wait_for_clients = false;
  friend bool operator==(const ShutdownCommand&, const ShutdownCommand&) = default;
};

using AdminCommand = std::variant<ShowCommand, SetBulkheadCommand, ReloadCommand, PauseCommand,
                                  ResumeCommand, KillClientCommand, ShutdownCommand>;

// The settings SET BULKHEAD accepts, lower case: reserved, max, queue_depth, max_wait,
// statement_timeout, idle_transaction_timeout, priority, max_clients.
std::span<const std::string_view> bulkhead_setting_keys();

// Why a statement was not understood; the console maps the kind to a SQLSTATE.
enum class AdminParseErrorKind {
  Syntax,           // malformed or incomplete (42601 syntax_error)
  UnknownCommand,   // the first word is not a command (42601)
  UnknownShowItem,  // SHOW of something that does not exist (42704 undefined_object)
  UnknownSetting,   // SET BULKHEAD of a key that is not a bulkhead setting (42704)
};
struct AdminParseError {
  AdminParseErrorKind kind = AdminParseErrorKind::Syntax;
  // One line for the client. Words quoted from the input are cut to a few dozen characters and
  // bytes outside printable ASCII are written as \xNN, so the message is always short, valid
  // UTF-8 and free of NULs.
  std::string message;
  friend bool operator==(const AdminParseError&, const AdminParseError&) = default;
};

using AdminParseResult = std::variant<AdminCommand, AdminParseError>;

// Parses one statement; surrounding blanks, comments and one trailing ';' are allowed. A blank
// statement is a Syntax error (split_statements never yields one).
AdminParseResult parse_admin_command(std::string_view statement);

// True for the commands that only read (SHOW); the others change something and need an admin.
bool is_read_only(const AdminCommand& command);
// The CommandComplete tag: "SHOW", "SET", "RELOAD", "PAUSE", "RESUME", "KILL_CLIENT", "SHUTDOWN".
std::string_view command_tag(const AdminCommand& command);
// The command as a user would name it in a message: as command_tag, but "SET BULKHEAD".
std::string_view command_name(const AdminCommand& command);

// The statements of a query text: split at each ';' outside single quotes, double quotes and
// comments, without the ';'. Statements holding nothing but blanks and comments are left out (an
// unterminated comment or quote is kept, so that parsing reports it). More than
// kMaxAdminStatements statements: `too_many` is set and the list stops there.
inline constexpr std::size_t kMaxAdminStatements = 64;
struct StatementSplit {
  std::vector<std::string_view> statements;  // views into the query text
  bool too_many = false;
};
StatementSplit split_statements(std::string_view sql);

}  // namespace sluice::admin
