#include "src/admin/admin_command.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace sluice::admin {
namespace {

using namespace std::string_view_literals;
using Kind = AdminParseErrorKind;

// A readable form of a parse result for failure messages.
std::string describe(const AdminParseResult& r) {
  std::ostringstream os;
  if (const auto* e = std::get_if<AdminParseError>(&r)) {
    os << "error " << static_cast<int>(e->kind) << ": " << e->message;
    return os.str();
  }
  const AdminCommand& c = std::get<AdminCommand>(r);
  os << command_name(c);
  if (const auto* s = std::get_if<ShowCommand>(&c)) os << ' ' << to_string(s->item);
  if (const auto* s = std::get_if<SetBulkheadCommand>(&c)) {
    os << " server=[" << s->server << "] bulkhead=[" << s->bulkhead << "] key=[" << s->key
       << "] value=[" << s->value << ']';
  }
  if (const auto* p = std::get_if<PauseCommand>(&c)) os << " [" << p->database << ']';
  if (const auto* p = std::get_if<ResumeCommand>(&c)) os << " [" << p->database << ']';
  if (const auto* k = std::get_if<KillClientCommand>(&c)) os << ' ' << k->id;
  if (const auto* s = std::get_if<ShutdownCommand>(&c)) os << ' ' << s->wait_for_clients;
  return os.str();
}

// Error messages go to clients as they are: short, printable ASCII, no NUL.
bool is_clean_message(std::string_view m) {
  return !m.empty() && m.size() <= 400 && std::all_of(m.begin(), m.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f;
  });
}

using Parsed = std::tuple<std::string, AdminCommand>;

void check_parses(const Parsed& row) {
  const auto& [text, expected] = row;
  CAPTURE(text);
  const AdminParseResult r = parse_admin_command(text);
  INFO("got " << describe(r) << ", expected " << describe(expected));
  REQUIRE(std::holds_alternative<AdminCommand>(r));
  CHECK(std::get<AdminCommand>(r) == expected);
}

SetBulkheadCommand set(std::string server, std::string bulkhead, std::string key,
                       std::string value) {
  return SetBulkheadCommand{std::move(server), std::move(bulkhead), std::move(key),
                            std::move(value)};
}

// ---- commands -------------------------------------------------------------------------------

TEST_CASE("every SHOW item parses, in any case, with blanks, comments and one ';'", "[admin]") {
  const ShowItem item = GENERATE(from_range(show_items().begin(), show_items().end()));
  const std::string word(to_string(item));
  std::string lower = word;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  const std::string text = GENERATE_COPY(
      "SHOW " + word, "show " + lower, "  Show\t" + lower + " ; ", "SHOW\n" + word + ";",
      "/* a /* nested */ comment */ SHOW " + word + " -- trailing",
      "SHOW -- one\n" + word + "/**/;");
  check_parses({text, ShowCommand{item}});
}

TEST_CASE("SET BULKHEAD takes a plain, qualified or quoted name and any value form", "[admin]") {
  check_parses(GENERATE(
      Parsed{"SET BULKHEAD batch max = 4", set("", "batch", "max", "4")},
      Parsed{"set bulkhead main.batch MAX_WAIT to 250ms",
             set("main", "batch", "max_wait", "250ms")},
      Parsed{"SET BULKHEAD b max=4;", set("", "b", "max", "4")},
      Parsed{"SET BULKHEAD \"a.b\" reserved = 2", set("", "a.b", "reserved", "2")},
      Parsed{"SET BULKHEAD \"main\".\"a.b\" priority = '1'", set("main", "a.b", "priority", "1")},
      Parsed{"SET BULKHEAD \"Ma\"\"in\".Batch statement_timeout = '2 s'",
             set("Ma\"in", "Batch", "statement_timeout", "2 s")},
      Parsed{"SET BULKHEAD main.\"x y\" queue_depth = 0", set("main", "x y", "queue_depth", "0")},
      Parsed{"SET BULKHEAD \"main\".batch max_clients TO 10",
             set("main", "batch", "max_clients", "10")},
      Parsed{"SET BULKHEAD b idle_transaction_timeout = 30 s",
             set("", "b", "idle_transaction_timeout", "30 s")},
      Parsed{"SET BULKHEAD b queue_depth = 'it''s'", set("", "b", "queue_depth", "it's")},
      Parsed{"SET BULKHEAD b max = \"10\"", set("", "b", "max", "10")},
      Parsed{"SET BULKHEAD b max = ''", set("", "b", "max", "")},
      Parsed{"SET BULKHEAD b max = 'a;b'", set("", "b", "max", "a;b")},
      Parsed{"SET BULKHEAD b max = -1", set("", "b", "max", "-1")},
      Parsed{"SET BULKHEAD b max = 1.5s", set("", "b", "max", "1.5s")},
      Parsed{"SET BULKHEAD Üñï max = 1", set("", "Üñï", "max", "1")},
      Parsed{"  SET /* x */ BULKHEAD b -- y\n max\n=\n4 ;", set("", "b", "max", "4")}));
}

TEST_CASE("every settable bulkhead key is accepted and returned in lower case", "[admin]") {
  const std::string_view key =
      GENERATE(from_range(bulkhead_setting_keys().begin(), bulkhead_setting_keys().end()));
  std::string upper(key);
  std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) {
    return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  });
  check_parses({"SET BULKHEAD b " + upper + " = 1", set("", "b", std::string(key), "1")});
  check_parses(
      {"SET BULKHEAD b " + std::string(key) + " TO 1", set("", "b", std::string(key), "1")});
}

TEST_CASE("RELOAD, PAUSE, RESUME, KILL_CLIENT and SHUTDOWN parse with their arguments", "[admin]") {
  check_parses(GENERATE(
      Parsed{"RELOAD", ReloadCommand{}}, Parsed{"reload;", ReloadCommand{}},
      Parsed{"PAUSE", PauseCommand{""}}, Parsed{"pause app", PauseCommand{"app"}},
      Parsed{"PAUSE \"My DB\";", PauseCommand{"My DB"}}, Parsed{"PAUSE App", PauseCommand{"App"}},
      Parsed{"PAUSE shop.eu", PauseCommand{"shop.eu"}}, Parsed{"RESUME", ResumeCommand{""}},
      Parsed{"Resume App", ResumeCommand{"App"}}, Parsed{"KILL_CLIENT 42", KillClientCommand{42}},
      Parsed{"kill_client 4294967295", KillClientCommand{4294967295U}},
      Parsed{"KILL_CLIENT 0007;", KillClientCommand{7}},
      Parsed{"KILL_CLIENT 0", KillClientCommand{0}}, Parsed{"SHUTDOWN", ShutdownCommand{false}},
      Parsed{"shutdown wait_for_clients;", ShutdownCommand{true}},
      Parsed{"Shutdown Wait_For_Clients", ShutdownCommand{true}}));
}

TEST_CASE("only SHOW is read-only; tags and names follow the command", "[admin]") {
  using Row = std::tuple<AdminCommand, bool, std::string_view, std::string_view>;
  const auto [command, read_only, tag, name] = GENERATE(
      Row{ShowCommand{ShowItem::Pools}, true, "SHOW", "SHOW"},
      Row{set("", "b", "max", "1"), false, "SET", "SET BULKHEAD"},
      Row{ReloadCommand{}, false, "RELOAD", "RELOAD"}, Row{PauseCommand{}, false, "PAUSE", "PAUSE"},
      Row{ResumeCommand{}, false, "RESUME", "RESUME"},
      Row{KillClientCommand{1}, false, "KILL_CLIENT", "KILL_CLIENT"},
      Row{ShutdownCommand{}, false, "SHUTDOWN", "SHUTDOWN"});
  CHECK(is_read_only(command) == read_only);
  CHECK(command_tag(command) == tag);
  CHECK(command_name(command) == name);
}

// ---- errors ---------------------------------------------------------------------------------

using Failed = std::tuple<std::string, Kind, std::string>;  // input, kind, part of the message

TEST_CASE("malformed commands are errors that say what is wrong", "[admin]") {
  const auto [text, kind, part] = GENERATE(
      Failed{"FOO", Kind::UnknownCommand, "unknown command \"FOO\"; try SHOW HELP"},
      Failed{"SELECT 1", Kind::UnknownCommand, "unknown command \"SELECT\""},
      Failed{"'SHOW' POOLS", Kind::UnknownCommand, "unknown command \"'SHOW'\""},
      Failed{"", Kind::Syntax, "empty command"},
      Failed{" -- only a comment", Kind::Syntax, "empty"},
      Failed{";", Kind::Syntax, "empty command"},
      Failed{"SHOW", Kind::Syntax, "SHOW needs one of BULKHEADS, POOLS"},
      Failed{"SHOW;", Kind::Syntax, "SHOW needs one of"},
      Failed{"SHOW FOO", Kind::UnknownShowItem, "unknown SHOW item \"FOO\"; try SHOW HELP"},
      Failed{"SHOW \"POOLS\"", Kind::UnknownShowItem, "unknown SHOW item"},
      Failed{"SHOW POOLS extra", Kind::Syntax, "syntax error at or near \"extra\""},
      Failed{"SHOW POOLS;;", Kind::Syntax, "syntax error at or near \";\""},
      Failed{"SHOW POOLS; SHOW STATS", Kind::Syntax, "syntax error at or near \"SHOW\""},
      Failed{"SET x = 1", Kind::Syntax, "only SET BULKHEAD"},
      Failed{"SET", Kind::Syntax, "syntax error at end of input (only SET BULKHEAD"},
      Failed{"SET BULKHEAD", Kind::Syntax, "(expected a bulkhead name)"},
      Failed{"SET BULKHEAD = 1", Kind::Syntax, "(expected a bulkhead name)"},
      Failed{"SET BULKHEAD b", Kind::Syntax, "(expected a bulkhead setting: reserved, max,"},
      Failed{"SET BULKHEAD b 'max' = 1", Kind::Syntax, "expected a bulkhead setting"},
      Failed{"SET BULKHEAD b color = red", Kind::UnknownSetting,
             "unknown bulkhead setting \"color\""},
      Failed{"SET BULKHEAD b max 4", Kind::Syntax, "near \"4\" (expected = or TO after max)"},
      Failed{"SET BULKHEAD b max", Kind::Syntax, "end of input (expected = or TO after max)"},
      Failed{"SET BULKHEAD b max =", Kind::Syntax, "(expected a value for max)"},
      Failed{"SET BULKHEAD b max = ;", Kind::Syntax, "(expected a value for max)"},
      Failed{"SET BULKHEAD b max = 1 'x'", Kind::Syntax, "syntax error at or near \"'x'\""},
      Failed{"SET BULKHEAD a.b.c max = 1", Kind::Syntax, "invalid bulkhead name \"a.b.c\""},
      Failed{"SET BULKHEAD .b max = 1", Kind::Syntax, "invalid bulkhead name \".b\""},
      Failed{"SET BULKHEAD a. max = 1", Kind::Syntax, "invalid bulkhead name \"a.\""},
      Failed{"SET BULKHEAD \"a\".\"b\".c max = 1", Kind::Syntax, "invalid bulkhead name"},
      Failed{"SET BULKHEAD b max = 'x", Kind::Syntax, "unterminated quoted string"},
      Failed{"SET BULKHEAD \"b max = 1", Kind::Syntax, "unterminated quoted identifier"},
      Failed{"SET BULKHEAD \"\" max = 1", Kind::Syntax, "zero-length delimited identifier"},
      Failed{"KILL_CLIENT", Kind::Syntax, "KILL_CLIENT needs a client id"},
      Failed{"KILL_CLIENT 4294967296", Kind::Syntax,
             "client id must be a number from 0 to 4294967295"},
      Failed{"KILL_CLIENT 99999999999999999999999", Kind::Syntax, "client id must be"},
      Failed{"KILL_CLIENT -1", Kind::Syntax, "not \"-1\""},
      Failed{"KILL_CLIENT abc", Kind::Syntax, "not \"abc\""},
      Failed{"KILL_CLIENT '5'", Kind::Syntax, "not \"'5'\""},
      Failed{"KILL_CLIENT 5 6", Kind::Syntax, "near \"6\""},
      Failed{"SHUTDOWN NOW", Kind::Syntax, "syntax error at or near \"NOW\""},
      Failed{"RELOAD now", Kind::Syntax, "near \"now\""},
      Failed{"RELOAD /* unterminated", Kind::Syntax, "unterminated /* comment"},
      Failed{"PAUSE a b", Kind::Syntax, "near \"b\""},
      Failed{"PAUSE = 1", Kind::Syntax, "near \"=\""},
      Failed{"SHOW\tPOOLS \x01", Kind::Syntax, "near \"\\x01\""},
      Failed{std::string("SHOW\0POOLS", 10), Kind::UnknownCommand,
             "unknown command \"SHOW\\x00POOLS\""},
      Failed{"\x01\xff", Kind::UnknownCommand, "unknown command \"\\x01\\xFF\""},
      Failed{"ÉTAT", Kind::UnknownCommand, "\"\\xC3\\x89TAT\""});
  CAPTURE(text);
  const AdminParseResult r = parse_admin_command(text);
  INFO("got " << describe(r));
  REQUIRE(std::holds_alternative<AdminParseError>(r));
  const AdminParseError& e = std::get<AdminParseError>(r);
  CHECK(e.kind == kind);
  CHECK_THAT(e.message, Catch::Contains(part));
  CHECK(is_clean_message(e.message));
}

TEST_CASE("words quoted in error messages are cut short", "[admin]") {
  const std::string huge(1 << 20, 'A');
  // A loop, not GENERATE: the generator would keep five 1 MB strings per run of the test case.
  for (const std::string& text : {huge, "SHOW " + huge, "SET BULKHEAD " + huge + ".b.c",
                                  "KILL_CLIENT " + huge, "SHOW POOLS " + huge}) {
    const AdminParseResult r = parse_admin_command(text);
    REQUIRE(std::holds_alternative<AdminParseError>(r));
    const std::string& m = std::get<AdminParseError>(r).message;
    CHECK(is_clean_message(m));
    CHECK_THAT(m, Catch::Contains("AAA..."));
  }
}

TEST_CASE("huge inputs parse in one pass without blowing up", "[admin]") {
  const std::string dots(1 << 20, '.');
  const std::string quoted = "'" + std::string(1 << 20, 'x') + "'";
  const std::string comments = [] {
    std::string s;
    for (int i = 0; i < 50000; ++i) s += "/* c */ -- d\n";
    return s;
  }();
  CHECK(std::holds_alternative<AdminParseError>(
      parse_admin_command("SET BULKHEAD a" + dots + " max = 1")));
  const AdminParseResult big_value = parse_admin_command("SET BULKHEAD a max = " + quoted);
  REQUIRE(std::holds_alternative<AdminCommand>(big_value));
  CHECK(std::get<SetBulkheadCommand>(std::get<AdminCommand>(big_value)).value.size() == 1u << 20);
  check_parses({comments + "RELOAD" + comments, ReloadCommand{}});
  CHECK(std::holds_alternative<AdminParseError>(parse_admin_command("SHOW '" + dots)));
}

// ---- split_statements -----------------------------------------------------------------------

using Split = std::tuple<std::string, std::vector<std::string>>;

TEST_CASE("statements split at ';' outside quotes and comments; blank ones are dropped",
          "[admin]") {
  const auto [text, expected] = GENERATE(
      Split{"", {}}, Split{"  ;; ; \n", {}}, Split{"/* ; */ -- ;\n ;", {}},
      Split{"SHOW POOLS", {"SHOW POOLS"}}, Split{"SHOW POOLS;", {"SHOW POOLS"}},
      Split{"SHOW POOLS; SHOW STATS;", {"SHOW POOLS", " SHOW STATS"}},
      Split{"RELOAD;;PAUSE", {"RELOAD", "PAUSE"}},
      Split{"SET BULKHEAD b max = ';'; RELOAD", {"SET BULKHEAD b max = ';'", " RELOAD"}},
      Split{"SET BULKHEAD b max = 'it''s;'", {"SET BULKHEAD b max = 'it''s;'"}},
      Split{"PAUSE \"a;b\"; RESUME", {"PAUSE \"a;b\"", " RESUME"}},
      Split{"-- c; x\nRELOAD", {"-- c; x\nRELOAD"}},
      Split{"/* a /* b */ ; */ RELOAD", {"/* a /* b */ ; */ RELOAD"}},
      Split{"RELOAD; /* ; ", {"RELOAD", " /* ; "}},  // unterminated: kept for the parser
      Split{"SHOW 'a;b", {"SHOW 'a;b"}}, Split{"SHOW \"a;b", {"SHOW \"a;b"}},
      Split{"RELOAD -- ;", {"RELOAD -- ;"}},  // the comment hides the ';'
      Split{"a-;-b;/", {"a-", "-b", "/"}}, Split{std::string("\0;\0", 3), {{"\0", 1}, {"\0", 1}}});
  CAPTURE(text);
  const StatementSplit s = split_statements(text);
  CHECK_FALSE(s.too_many);
  CHECK(std::vector<std::string>(s.statements.begin(), s.statements.end()) == expected);
}

TEST_CASE("more than kMaxAdminStatements statements are flagged, not all listed", "[admin]") {
  std::string at_limit;
  for (std::size_t i = 0; i < kMaxAdminStatements; ++i) at_limit += "RELOAD;";
  const StatementSplit ok = split_statements(at_limit + " ; -- nothing more");
  CHECK_FALSE(ok.too_many);
  CHECK(ok.statements.size() == kMaxAdminStatements);

  std::string many;
  for (int i = 0; i < 100000; ++i) many += "RELOAD;";
  const StatementSplit over = split_statements(at_limit + "SHOW POOLS");
  CHECK(over.too_many);
  CHECK(over.statements.size() == kMaxAdminStatements);
  CHECK(split_statements(many).too_many);
  CHECK(split_statements(many).statements.size() == kMaxAdminStatements);
}

// ---- garbage --------------------------------------------------------------------------------

// Properties that hold on any input: no exception, error messages fit for a client, and the split
// statements are disjoint pieces of the input, in order.
void check_any_input(std::string_view text) {
  AdminParseResult r = ReloadCommand{};
  REQUIRE_NOTHROW(r = parse_admin_command(text));
  if (const auto* e = std::get_if<AdminParseError>(&r)) {
    INFO("message: " << e->message);
    CHECK(is_clean_message(e->message));
  }
  StatementSplit s;
  REQUIRE_NOTHROW(s = split_statements(text));
  CHECK(s.statements.size() <= kMaxAdminStatements);
  const char* last_end = text.data();
  for (std::string_view st : s.statements) {
    CHECK_FALSE(st.empty());
    CHECK(st.data() >= last_end);
    CHECK(st.data() + st.size() <= text.data() + text.size());
    last_end = st.data() + st.size();
    const AdminParseResult one = parse_admin_command(st);
    if (const auto* e = std::get_if<AdminParseError>(&one)) CHECK(is_clean_message(e->message));
  }
}

TEST_CASE("every single byte value, alone and inside a command, is handled", "[admin]") {
  const int b = GENERATE(range(0, 256));
  const char c = static_cast<char>(b);
  CAPTURE(b);
  check_any_input(std::string(1, c));
  for (std::string_view base :
       {"SHOW POOLS"sv, "SET BULKHEAD s.b max = '5'"sv, "KILL_CLIENT 12"sv, "PAUSE \"db\""sv}) {
    for (std::size_t at = 0; at <= base.size(); ++at) {
      std::string text(base);
      text.insert(at, 1, c);
      check_any_input(text);
    }
  }
}

TEST_CASE("random junk built from the syntax's own pieces is handled", "[admin]") {
  static constexpr std::string_view kPieces[] = {
      "SHOW",        "SET",        "BULKHEAD",
      "RELOAD",      "PAUSE",      "RESUME",
      "KILL_CLIENT", "SHUTDOWN",   "WAIT_FOR_CLIENTS",
      "POOLS",       "max",        "TO",
      "=",           ";",          "'",
      "''",          "\"",         "\"\"",
      ".",           "--",         "/*",
      "*/",          "\n",         " ",
      "\t",          "4294967295", "4294967296",
      "250ms",       "a",          "\xff",
      "\0"sv,
  };
  std::mt19937 rng(20240501);  // fixed: the same cases every run
  std::uniform_int_distribution<std::size_t> piece(0, std::size(kPieces) - 1);
  std::uniform_int_distribution<int> length(0, 24);
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    for (int n = length(rng); n > 0; --n) text += kPieces[piece(rng)];
    CAPTURE(text);
    check_any_input(text);
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (int i = 0; i < 1000; ++i) {
    std::string text;
    for (int n = length(rng) * 4; n > 0; --n) text.push_back(static_cast<char>(byte(rng)));
    check_any_input(text);
  }
}

}  // namespace
}  // namespace sluice::admin
