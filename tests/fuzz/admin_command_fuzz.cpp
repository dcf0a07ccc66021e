// Fuzzes the admin console's command parser: splits the input into statements and parses the
// whole input and each statement. Properties: nothing is read outside the input, the statements
// are disjoint pieces of it in order, error messages are short printable ASCII, and a parsed
// command written back in canonical form parses to the same value.
#include "tests/fuzz/fuzz_support.hpp"

#include "src/admin/admin_command.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace sluice::protocol::fuzz {
namespace {

using namespace sluice::admin;

std::string quoted(std::string_view s, char q) {
  std::string out(1, q);
  for (char c : s) {
    out.push_back(c);
    if (c == q) out.push_back(q);
  }
  out.push_back(q);
  return out;
}

// The command in a form parse_admin_command must read back as the same value.
std::string canonical(const AdminCommand& command) {
  if (const auto* c = std::get_if<ShowCommand>(&command)) {
    return "SHOW " + std::string(to_string(c->item));
  }
  if (const auto* c = std::get_if<SetBulkheadCommand>(&command)) {
    std::string name = quoted(c->bulkhead, '"');
    if (!c->server.empty()) name = quoted(c->server, '"') + "." + name;
    return "SET BULKHEAD " + name + " " + c->key + " = " + quoted(c->value, '\'');
  }
  if (const auto* c = std::get_if<PauseCommand>(&command)) {
    return c->database.empty() ? "PAUSE" : "PAUSE " + quoted(c->database, '"');
  }
  if (const auto* c = std::get_if<ResumeCommand>(&command)) {
    return c->database.empty() ? "RESUME" : "RESUME " + quoted(c->database, '"');
  }
  if (const auto* c = std::get_if<KillClientCommand>(&command)) {
    return "KILL_CLIENT " + std::to_string(c->id);
  }
  if (const auto* c = std::get_if<ShutdownCommand>(&command)) {
    return c->wait_for_clients ? "SHUTDOWN WAIT_FOR_CLIENTS" : "SHUTDOWN";
  }
  return "RELOAD";
}

bool clean(std::string_view message) {
  return !message.empty() && message.size() <= 400 &&
         std::all_of(message.begin(), message.end(), [](char c) {
           const auto u = static_cast<unsigned char>(c);
           return u >= 0x20 && u < 0x7f;
         });
}

void check_statement(std::string_view text) {
  const AdminParseResult r = parse_admin_command(text);
  if (const auto* e = std::get_if<AdminParseError>(&r)) {
    SLUICE_FUZZ_CHECK(clean(e->message));
    return;
  }
  const AdminCommand& command = std::get<AdminCommand>(r);
  SLUICE_FUZZ_CHECK(!command_tag(command).empty() && !command_name(command).empty());
  SLUICE_FUZZ_CHECK(is_read_only(command) == std::holds_alternative<ShowCommand>(command));
  if (const auto* c = std::get_if<SetBulkheadCommand>(&command)) {
    SLUICE_FUZZ_CHECK(!c->bulkhead.empty());
    const auto keys = bulkhead_setting_keys();
    SLUICE_FUZZ_CHECK(std::find(keys.begin(), keys.end(), c->key) != keys.end());
  }
  const AdminParseResult again = parse_admin_command(canonical(command));
  SLUICE_FUZZ_CHECK(std::holds_alternative<AdminCommand>(again));
  SLUICE_FUZZ_CHECK(std::get<AdminCommand>(again) == command);
}

}  // namespace
}  // namespace sluice::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::protocol;
  using namespace sluice::admin;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const StatementSplit split = split_statements(input);
  SLUICE_FUZZ_CHECK(split.statements.size() <= kMaxAdminStatements);
  SLUICE_FUZZ_CHECK(!split.too_many || split.statements.size() == kMaxAdminStatements);
  const ByteView whole(reinterpret_cast<const std::byte*>(data), size);
  const char* last_end = input.data();
  for (std::string_view statement : split.statements) {
    SLUICE_FUZZ_CHECK(!statement.empty() && fuzz::inside(statement, whole));
    SLUICE_FUZZ_CHECK(statement.data() >= last_end);
    last_end = statement.data() + statement.size();
    fuzz::check_statement(statement);
  }
  fuzz::check_statement(input);
  return 0;
}
