#include "protocol/session_features.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstddef>
#include <random>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace sluice::protocol {
namespace {

using Row = std::tuple<std::string, SessionFeature>;
using F = SessionFeature;

void check_rows(const Row& row) {
  const auto& [sql, expected] = row;
  CAPTURE(sql);
  INFO("expected " << to_string(expected) << ", got " << to_string(detect_session_feature(sql)));
  CHECK(detect_session_feature(sql) == expected);
}

TEST_CASE("session-state statements are detected by their keywords", "[protocol]") {
  check_rows(GENERATE(
      Row{"LISTEN x", F::Listen}, Row{"listen \"Ch\"", F::Listen},
      Row{"PREPARE p AS SELECT 1", F::Prepare}, Row{"prepare p(int) as select $1", F::Prepare},
      Row{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", F::HoldCursor},
      Row{"declare c no scroll cursor with hold for select 1", F::HoldCursor},
      Row{"DECLARE c CURSOR FOR SELECT 1", F::None},
      Row{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", F::None},
      Row{"CREATE TEMP TABLE t (a int)", F::TempObject},
      Row{"CREATE TEMPORARY TABLE t (a int)", F::TempObject},
      Row{"CREATE GLOBAL TEMP TABLE t (a int)", F::TempObject},
      Row{"CREATE LOCAL TEMPORARY VIEW v AS SELECT 1", F::TempObject},
      Row{"create or replace temp view v as select 1", F::TempObject},
      Row{"CREATE TABLE t (a int)", F::None}, Row{"CREATE UNLOGGED TABLE t (a int)", F::None},
      Row{"SELECT 1 AS a INTO TEMP t", F::TempObject},
      Row{"select * into temporary table t from x", F::TempObject},
      Row{"SELECT * INTO t FROM x", F::None}, Row{"SELECT template FROM temps", F::None},
      Row{"SELECT pg_advisory_lock(1)", F::AdvisoryLock},
      Row{"SELECT pg_advisory_lock_shared(1)", F::AdvisoryLock},
      Row{"SELECT pg_try_advisory_lock(1)", F::AdvisoryLock},
      Row{"SELECT PG_TRY_ADVISORY_LOCK_SHARED(1, 2)", F::AdvisoryLock},
      Row{"SELECT pg_advisory_xact_lock(1)", F::None},
      Row{"SELECT pg_try_advisory_xact_lock_shared(1)", F::None},
      Row{"SELECT pg_advisory_unlock(1)", F::None}, Row{"SELECT 1", F::None},
      Row{"NOTIFY x", F::None}, Row{"UNLISTEN *", F::None}));
}

TEST_CASE("SET and RESET pin only for the role; other session settings are replayed",
          "[protocol]") {
  check_rows(GENERATE(
      Row{"SET search_path TO x", F::None}, Row{"set statement_timeout = 0", F::None},
      Row{"SET ROLE app", F::SetRole}, Row{"set role = 'app'", F::SetRole},
      Row{"SET SESSION ROLE app", F::SetRole}, Row{"SET SESSION AUTHORIZATION app", F::SetRole},
      Row{"set session_authorization = 'app'", F::SetRole}, Row{"SET LOCAL ROLE app", F::None},
      Row{"RESET ROLE", F::None}, Row{"RESET SESSION AUTHORIZATION", F::None},
      Row{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", F::None},
      Row{"RESET ALL", F::None}, Row{"RESET search_path", F::None}, Row{"SET", F::None}));
}

// What inspect_session_use() says of one statement: (sql, pin, settings, drops_statements).
using UseRow = std::tuple<std::string, SessionUse>;

void check_use(const UseRow& row) {
  const auto& [sql, expected] = row;
  CAPTURE(sql);
  const SessionUse got = inspect_session_use(sql);
  INFO("got pin " << to_string(got.pin) << " settings " << got.settings << " drops "
                  << got.drops_statements);
  CHECK(got == expected);
  CHECK(detail::inspect_session_use_lexer(sql) == expected);
}

constexpr SessionUse kNothing{};
constexpr SessionUse kSettings{.settings = true};
constexpr SessionUse kDrops{.drops_statements = true};
constexpr SessionUse kDiscardAll{.settings = true, .drops_statements = true};

TEST_CASE("session-level settings changes are seen, whatever their scope or spelling",
          "[protocol]") {
  check_use(GENERATE(
      // Unreported parameters: their new value is read back from the server.
      UseRow{"SET extra_float_digits = 3", kSettings},
      UseRow{"SET search_path TO x, \"Y z\", 'w'", kSettings},
      UseRow{"set SESSION statement_timeout = '5s'", kSettings},
      UseRow{"SET \"search_path\" = x", kSettings}, UseRow{"SeT myapp.tenant = 42", kSettings},
      UseRow{"SET work_mem TO DEFAULT", kSettings}, UseRow{"RESET search_path", kSettings},
      UseRow{"RESET ALL", kSettings}, UseRow{"reset all;", kSettings},
      UseRow{"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", kSettings},
      // set_config, either scope (is_local = true reads back harmlessly), anywhere in a statement.
      UseRow{"SELECT set_config('search_path', 'x', false)", kSettings},
      UseRow{"select pg_catalog.SET_CONFIG('a.b', $1, true)", kSettings},
      UseRow{"SELECT 1 FROM t WHERE set_config('x.y', '1', false) IS NOT NULL", kSettings},
      // Reported parameters come back in ParameterStatus: nothing to read back.
      UseRow{"SET application_name = 'x'", kNothing}, UseRow{"SET TIME ZONE 'UTC'", kNothing},
      UseRow{"SET SESSION application_name TO 'x'", kNothing},
      UseRow{"set timezone = 'UTC'", kNothing}, UseRow{"SET datestyle TO ISO, DMY", kNothing},
      UseRow{"SET NAMES 'UTF8'", kNothing}, UseRow{"RESET TIME ZONE", kNothing},
      UseRow{"RESET application_name", kNothing},
      // Transaction-scoped: gone with the transaction.
      UseRow{"SET LOCAL search_path TO x", kNothing},
      UseRow{"set local statement_timeout = 0", kNothing},
      UseRow{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", kNothing},
      UseRow{"SET CONSTRAINTS ALL DEFERRED", kNothing},
      // Not a SET statement, or hidden from the lexer.
      UseRow{"UPDATE t SET a = 1", kNothing}, UseRow{"SELECT 'SET search_path = x'", kNothing},
      UseRow{"-- SET search_path = x\nSELECT 1", kNothing},
      UseRow{"SELECT \"set_config\"", kSettings},  // a column of that name: a false alarm only
      // Statements that drop every prepared statement of the backend.
      UseRow{"DISCARD ALL", kDiscardAll}, UseRow{"/* c */ discard all", kDiscardAll},
      UseRow{"SELECT 1; DISCARD ALL", kDiscardAll}, UseRow{"DEALLOCATE ALL", kDrops},
      UseRow{"deallocate prepare all", kDrops}, UseRow{"DEALLOCATE x", kNothing},
      UseRow{"DEALLOCATE \"all\"", kDrops},  // the lexer reads quoted words as written
      UseRow{"DISCARD PLANS", kNothing}, UseRow{"DISCARD TEMP", kNothing},
      UseRow{"SELECT 'DISCARD ALL'", kNothing}));
}

constexpr SessionUse kReserved{.reserved_name = true};

TEST_CASE("EXECUTE and DEALLOCATE of Sluice's statement names are seen", "[protocol]") {
  check_use(GENERATE(
      UseRow{"EXECUTE sluice_0123(1)", kReserved}, UseRow{"deallocate SLUICE_abc", kReserved},
      UseRow{"DEALLOCATE PREPARE sluice_abc", kReserved},
      UseRow{"SELECT 1; EXECUTE sluice_x", kReserved}, UseRow{"EXECUTE mine(1)", kNothing},
      UseRow{"DEALLOCATE mine", kNothing}, UseRow{"SELECT 'EXECUTE sluice_x'", kNothing},
      UseRow{"SELECT sluice_x FROM t", kNothing}, UseRow{"EXECUTE sluice_", kNothing}));
}

TEST_CASE("a statement that pins and one that changes settings are both reported", "[protocol]") {
  check_use(GENERATE(
      UseRow{"SET search_path = x; LISTEN ch", SessionUse{.pin = F::Listen, .settings = true}},
      UseRow{"LISTEN ch; DISCARD ALL",
             SessionUse{.pin = F::Listen, .settings = true, .drops_statements = true}},
      UseRow{"SELECT pg_advisory_lock(1), set_config('a.b', '1', false)",
             SessionUse{.pin = F::AdvisoryLock, .settings = true}},
      UseRow{"SET ROLE app; SET work_mem = '8MB'",
             SessionUse{.pin = F::SetRole, .settings = true}}));
}

TEST_CASE("every statement of a multi-statement string is looked at", "[protocol]") {
  check_rows(GENERATE(Row{"SELECT 1; LISTEN x", F::Listen}, Row{"SELECT 1;LISTEN x;", F::Listen},
                      Row{"LISTEN a; PREPARE p AS SELECT 1", F::Listen},
                      Row{"BEGIN; SET LOCAL search_path TO x; COMMIT", F::None},
                      Row{"SET search_path = x; SET ROLE app", F::SetRole},
                      Row{"SELECT 1; SELECT pg_advisory_lock(2); SELECT 3", F::AdvisoryLock},
                      Row{"-- a comment ends at the newline\nLISTEN x", F::Listen},
                      Row{"/* a comment */ LISTEN x", F::Listen},
                      Row{"SELECT 'a\\'; LISTEN x", F::Listen},  // no escapes in plain strings
                      Row{"SELECT $1; LISTEN x", F::Listen}));   // a parameter, not a quote
}

TEST_CASE("keywords in comments, literals and quoted identifiers do not count", "[protocol]") {
  // Each hides ";LISTEN x" (or a lock call) that would count if the lexer got the quoting wrong.
  check_rows(GENERATE(
      Row{"-- LISTEN x", F::None}, Row{"SELECT 1 -- ;LISTEN x", F::None},
      Row{"/* LISTEN x */ SELECT 1", F::None}, Row{"/* nested /* LISTEN */ */ SELECT 1", F::None},
      Row{"/* a /* b */ ;LISTEN x */ SELECT 1", F::None}, Row{"SELECT ';LISTEN x'", F::None},
      Row{"SELECT 'it''s;LISTEN x'", F::None}, Row{"SELECT 'pg_advisory_lock(1)'", F::None},
      Row{"SELECT E'\\';LISTEN x'", F::None}, Row{"SELECT e'\\\\'';LISTEN x'", F::None},
      Row{"SELECT 1 AS \";LISTEN x\"", F::None}, Row{"SELECT 1 AS \"a\"\";LISTEN x\"", F::None},
      Row{"SELECT $$;LISTEN x$$", F::None}, Row{"SELECT $tag$;LISTEN x $$ ;LISTEN y$tag$", F::None},
      Row{"SELECT $a$ $b$;LISTEN x$b$ $a$", F::None},
      Row{"SELECT ';LISTEN x", F::None},  // unterminated: the rest is literal
      Row{"/* ;LISTEN x", F::None}));
}

TEST_CASE("empty and blank SQL uses no session state", "[protocol]") {
  check_rows(GENERATE(Row{"", F::None}, Row{"   \n\t", F::None}, Row{";;;", F::None},
                      Row{"-- only a comment", F::None}));
}

TEST_CASE("reported parameters are recognised case-insensitively", "[protocol]") {
  using P = std::tuple<std::string, bool>;
  const auto [name, reported] =
      GENERATE(P{"TimeZone", true}, P{"timezone", true}, P{"TIMEZONE", true}, P{"DateStyle", true},
               P{"datestyle", true}, P{"IntervalStyle", true}, P{"application_name", true},
               P{"APPLICATION_NAME", true}, P{"client_encoding", true},
               P{"standard_conforming_strings", true}, P{"default_transaction_read_only", true},
               P{"in_hot_standby", true}, P{"is_superuser", true}, P{"session_authorization", true},
               P{"server_version", true}, P{"server_encoding", true}, P{"integer_datetimes", true},
               P{"search_path", false}, P{"statement_timeout", false}, P{"timezon", false},
               P{"timezone ", false}, P{"", false});
  CAPTURE(name);
  CHECK(is_reported_parameter(name) == reported);
}

// ---- the prefilter never changes a result ----------------------------------------------------

// detect_session_feature() skips the lexer when detail::may_use_session_state() says no feature
// can occur: that must never hide one the lexer finds. Returns the first counterexample, if any.
struct PrefilterCheck {
  std::size_t checked = 0;
  std::size_t features = 0;  // the lexer found something
  std::size_t skipped = 0;   // the prefilter let the lexer be skipped
  std::string failure;

  void operator()(const std::string& sql) {
    ++checked;
    const SessionUse lexer = detail::inspect_session_use_lexer(sql);
    const bool maybe = detail::may_use_session_state(sql);
    const SessionUse full = inspect_session_use(sql);
    const bool found = lexer != SessionUse{};
    if (found) ++features;
    if (!maybe) ++skipped;
    if ((found && !maybe) || full != lexer) {
      if (failure.empty()) failure = sql;
    }
  }
};

void check_prefilter(const Row& row) {
  const auto& [sql, expected] = row;
  CAPTURE(sql);
  CHECK(detail::inspect_session_use_lexer(sql).pin == expected);
  CHECK(detect_session_feature(sql) == expected);
  if (expected != F::None) CHECK(detail::may_use_session_state(sql));
  if (inspect_session_use(sql) != SessionUse{}) CHECK(detail::may_use_session_state(sql));
}

TEST_CASE("the prefilter keeps every feature the lexer finds, in tricky places", "[protocol]") {
  check_prefilter(GENERATE(
      // Mixed case, and a keyword right at the start, the end, or alone.
      Row{"LiStEn x", F::Listen}, Row{"sEt role = x", F::SetRole},
      Row{"ReSeT search_path", F::None}, Row{"set", F::None}, Row{"listen", F::Listen},
      Row{"SELECT Pg_Advisory_Lock(1)", F::AdvisoryLock},
      Row{"select pg_try_advisory_lock_SHARED(1)", F::AdvisoryLock},
      // After other statements, blanks, newlines, comments, literals and numbers.
      Row{"SELECT 1;set role = x", F::SetRole}, Row{"SELECT 1 ;\n\t SET ROLE x", F::SetRole},
      Row{"/* x */SET role = x", F::SetRole}, Row{"/*x*/LISTEN x", F::Listen},
      Row{"-- x\nLISTEN x", F::Listen},
      Row{"-- comment text\r\n  \tPREPARE p AS SELECT 1", F::Prepare},
      Row{"SELECT 1; -- c\nCREATE TEMP TABLE t (a int)", F::TempObject},
      Row{"'x'LISTEN y", F::Listen}, Row{"E'x\\''LISTEN y", F::Listen},
      Row{"$$x$$LISTEN y", F::Listen}, Row{"$a$ x $a$ LISTEN y", F::Listen},
      Row{"1LISTEN y", F::Listen}, Row{"12 LISTEN y", F::Listen}, Row{"(LISTEN y", F::Listen},
      // A keyword split by a comment is two words; one glued to a comment is one.
      Row{"LIS/**/TEN x", F::None}, Row{"SE/* */T role = x", F::None},
      Row{"SELECT pg_advisory/**/_lock(1)", F::None},
      Row{"SELECT/**/pg_advisory_lock(1)", F::AdvisoryLock},
      // Quoted identifiers are words, unquoted as written (the lexer's own reading).
      Row{"\"LISTEN\" x", F::Listen}, Row{"\"set\" role = x", F::SetRole},
      Row{"SELECT \"pg_advisory_lock\"(1)", F::AdvisoryLock}, Row{"x; \"listen\" y", F::Listen},
      // An unclosed quoted identifier's word lacks its last character.
      Row{"\"listenx", F::Listen}, Row{"\"listen", F::None}, Row{"SELECT 1; \"setx", F::None},
      Row{"\"sets", F::None},
      // Keywords inside comments, literals and quoted identifiers do not count...
      Row{"SELECT '; LISTEN x'", F::None}, Row{"SELECT E'\\'; LISTEN x'", F::None},
      Row{"SELECT $q$; LISTEN x$q$", F::None}, Row{"SELECT 1 /* ; LISTEN x */", F::None},
      Row{"SELECT 1 -- ; LISTEN x", F::None}, Row{"SELECT \"; LISTEN x\"", F::None},
      Row{"SELECT 'pg_advisory_lock(1)'", F::None},
      // ... nor keywords inside longer words or after another word of the statement.
      Row{"UPDATE t SET a = 1", F::None}, Row{"SELECT offset FROM settings", F::None},
      Row{"UNLISTEN x", F::None}, Row{"SELECT * FROM listener", F::None},
      Row{"SELECT created, prepared FROM t", F::None}, Row{"SELECT a reset", F::None},
      Row{"SELECT _set", F::None}, Row{"x\xc3\xa9 SET role = x", F::None},
      Row{"SELECT pg_advisory_unlock(1)", F::None},
      // But a second statement may start with one.
      Row{"UPDATE t SET a = 1; SET role = x", F::SetRole}, Row{"UPDATE t\nSET a = 1", F::None}));
}

TEST_CASE("the prefilter lets plain SQL skip the lexer", "[protocol]") {
  for (std::string_view sql : {"SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
                               "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
                               "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1",
                               "INSERT INTO t (a, b) VALUES (1, 'x')", "BEGIN", "COMMIT", "", "S",
                               "SELECT 1", "SELECT offset, settings FROM dataset"}) {
    CAPTURE(sql);
    CHECK_FALSE(detail::may_use_session_state(sql));
  }
}

TEST_CASE("the prefilter finds a trigger at every offset", "[protocol]") {
  // The scan goes 16 positions at a time with an overlapping last block: try every alignment.
  PrefilterCheck check;
  const std::array<std::string, 13> statements = {"SET search_path TO x",
                                                  "SELECT 1 INTO TEMP t",
                                                  "reset statement_timeout",
                                                  "SELECT set_config('a', 'b', false)",
                                                  "DISCARD ALL",
                                                  "deallocate all",
                                                  "SET ROLE x",
                                                  "Listen ch",
                                                  "PREPARE p AS SELECT 1",
                                                  "declare c cursor with hold for select 1",
                                                  "CREATE TEMP TABLE t (a int)",
                                                  "SELECT pg_advisory_lock(1)",
                                                  "SELECT 1 FROM pg_try_advisory_lock_shared(1)"};
  for (const std::string& st : statements) {
    for (std::size_t before = 0; before < 40; ++before) {
      for (std::size_t after : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{23}}) {
        const std::string sql = std::string(before, ' ') + st + std::string(after, ' ');
        check(sql);
        check("SELECT 1;" + sql);
        check("/*" + std::string(before, 'x') + "*/" + st);
      }
    }
  }
  INFO("first failure: " << check.failure);
  CHECK(check.failure.empty());
  CHECK(check.features == check.checked);
}

// Random SQL-ish text from fragments chosen to provoke the lexer: keywords in both cases and in
// longer words, every kind of quote and comment opener and closer, digits, '$', non-ASCII bytes.
std::string random_sql(std::mt19937& rng) {
  static const std::vector<std::string> kFragments = {"SET",
                                                      "set",
                                                      "SeT",
                                                      "RESET",
                                                      "reset",
                                                      "LISTEN",
                                                      "listen",
                                                      "UNLISTEN",
                                                      "PREPARE",
                                                      "prepare",
                                                      "DECLARE",
                                                      "declare",
                                                      "CREATE",
                                                      "create",
                                                      "TEMP",
                                                      "temporary",
                                                      "WITH",
                                                      "HOLD",
                                                      "with hold",
                                                      "SESSION",
                                                      "LOCAL",
                                                      "TRANSACTION",
                                                      "TIME",
                                                      "ZONE",
                                                      "NAMES",
                                                      "ALL",
                                                      "ROLE",
                                                      "DISCARD",
                                                      "deallocate",
                                                      "set_config",
                                                      "CONFIG",
                                                      "search_path",
                                                      "application_name",
                                                      "TimeZone",
                                                      "statement_timeout",
                                                      "pg_advisory_lock",
                                                      "PG_ADVISORY_LOCK_SHARED",
                                                      "pg_try_advisory_lock",
                                                      "pg_try_advisory_lock_shared",
                                                      "pg_advisory_xact_lock",
                                                      "advisory",
                                                      "ADVISORY",
                                                      "SELECT",
                                                      "UPDATE",
                                                      "FROM",
                                                      "x",
                                                      "t",
                                                      "offset",
                                                      "settings",
                                                      "listener",
                                                      "prepared",
                                                      "_",
                                                      "sets",
                                                      "lis",
                                                      "ten",
                                                      "pg_",
                                                      "_lock",
                                                      " ",
                                                      " ",
                                                      " ",
                                                      "  ",
                                                      "\n",
                                                      "\t",
                                                      "\r\n",
                                                      ";",
                                                      ";",
                                                      "(",
                                                      ")",
                                                      ",",
                                                      "=",
                                                      "1",
                                                      "42",
                                                      "$1",
                                                      "$",
                                                      "$$",
                                                      "$a$",
                                                      "$b$",
                                                      "'",
                                                      "''",
                                                      "E'",
                                                      "e'",
                                                      "\\",
                                                      "\\'",
                                                      "\"",
                                                      "\"\"",
                                                      "--",
                                                      "/*",
                                                      "*/",
                                                      "*",
                                                      "/",
                                                      "-",
                                                      "\xc3\xa9",
                                                      "\x80",
                                                      "\xff",
                                                      "E",
                                                      "\0"};
  std::uniform_int_distribution<std::size_t> count(0, 24);
  std::uniform_int_distribution<std::size_t> pick(0, kFragments.size() - 1);
  std::string sql;
  for (std::size_t n = count(rng); n > 0; --n) sql += kFragments[pick(rng)];
  return sql;
}

// A random small edit: insert, delete or replace a byte, or flip a letter's case.
void mutate(std::string& sql, std::mt19937& rng) {
  static constexpr std::string_view kBytes = " \n\t;'\"$-/*\\Eesltaxd_1\x80";
  std::uniform_int_distribution<std::size_t> byte(0, kBytes.size() - 1);
  const std::size_t at = std::uniform_int_distribution<std::size_t>(0, sql.size())(rng);
  switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
    case 0:
      sql.insert(sql.begin() + static_cast<std::ptrdiff_t>(at), kBytes[byte(rng)]);
      break;
    case 1:
      if (at < sql.size()) sql.erase(at, 1);
      break;
    case 2:
      if (at < sql.size()) sql[at] = kBytes[byte(rng)];
      break;
    default:
      if (at < sql.size() &&
          ((sql[at] >= 'a' && sql[at] <= 'z') || (sql[at] >= 'A' && sql[at] <= 'Z'))) {
        sql[at] = static_cast<char>(sql[at] ^ 0x20);
      }
  }
}

TEST_CASE("the prefilter never changes a result: random and mutated SQL", "[protocol]") {
  std::mt19937 rng(20240611);
  PrefilterCheck check;
  for (int i = 0; i < 200000; ++i) check(random_sql(rng));
  // Mutations of statements that do use session state, and of ones that almost do.
  const std::vector<std::string> seeds = {"SET search_path TO x",
                                          "SELECT 1; RESET search_path",
                                          "LISTEN x",
                                          "/* c */ PREPARE p AS SELECT 1",
                                          "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
                                          "CREATE TEMP TABLE t (a int)",
                                          "SELECT pg_advisory_lock(1)",
                                          "SELECT 'a'; -- x\nLISTEN y",
                                          "SELECT $$;$$; SET statement_timeout = 0",
                                          "SELECT E'\\';LISTEN x'; \"set\" search_path = x",
                                          "UPDATE t SET a = 1 WHERE b = 'LISTEN'",
                                          "SELECT abalance FROM pgbench_accounts WHERE aid = 42"};
  for (const std::string& seed : seeds) {
    for (int i = 0; i < 5000; ++i) {
      std::string sql = seed;
      const int edits = std::uniform_int_distribution<int>(1, 4)(rng);
      for (int e = 0; e < edits; ++e) mutate(sql, rng);
      check(sql);
    }
  }
  INFO("first failure: " << check.failure);
  CHECK(check.failure.empty());
  // The generators reach both sides: features found, and text the lexer may skip.
  CHECK(check.features > check.checked / 20);
  CHECK(check.skipped > check.checked / 20);
}

TEST_CASE("session features have stable names", "[protocol]") {
  CHECK(std::string(to_string(F::None)) == "none");
  CHECK(std::string(to_string(F::Listen)) == "listen");
  CHECK(std::string(to_string(F::Prepare)) == "sql_prepare");
  CHECK(std::string(to_string(F::HoldCursor)) == "hold_cursor");
  CHECK(std::string(to_string(F::TempObject)) == "temp_object");
  CHECK(std::string(to_string(F::AdvisoryLock)) == "advisory_lock");
  CHECK(std::string(to_string(F::SetRole)) == "set_role");
  CHECK(std::string(to_string(F::SettingsUnread)) == "settings_unread");
  CHECK(std::string(to_string(F::NamedStatement)) == "named_statement");
}

}  // namespace
}  // namespace sluice::protocol
