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
      Row{"SELECT pg_advisory_lock(1)", F::AdvisoryLock},
      Row{"SELECT pg_advisory_lock_shared(1)", F::AdvisoryLock},
      Row{"SELECT pg_try_advisory_lock(1)", F::AdvisoryLock},
      Row{"SELECT PG_TRY_ADVISORY_LOCK_SHARED(1, 2)", F::AdvisoryLock},
      Row{"SELECT pg_advisory_xact_lock(1)", F::None},
      Row{"SELECT pg_try_advisory_xact_lock_shared(1)", F::None},
      Row{"SELECT pg_advisory_unlock(1)", F::None}, Row{"SELECT 1", F::None},
      Row{"NOTIFY x", F::None}, Row{"UNLISTEN *", F::None}));
}

TEST_CASE("SET and RESET pin only session-level unreported parameters", "[protocol]") {
  check_rows(GENERATE(Row{"SET search_path TO x", F::SetUnreported},
                      Row{"set statement_timeout = 0", F::SetUnreported},
                      Row{"SET SESSION statement_timeout = '5s'", F::SetUnreported},
                      Row{"SET application_name = 'x'", F::None},
                      Row{"SET SESSION application_name TO 'x'", F::None},
                      Row{"SET TIME ZONE 'UTC'", F::None}, Row{"set timezone = 'UTC'", F::None},
                      Row{"SET datestyle TO ISO, DMY", F::None}, Row{"SET NAMES 'UTF8'", F::None},
                      Row{"SET LOCAL search_path TO x", F::None},
                      Row{"set local statement_timeout = 0", F::None},
                      Row{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", F::None},
                      Row{"SET CONSTRAINTS ALL DEFERRED", F::None},
                      Row{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", F::SetUnreported},
                      Row{"RESET ALL", F::None}, Row{"RESET search_path", F::SetUnreported},
                      Row{"RESET application_name", F::None}, Row{"RESET TIME ZONE", F::None},
                      Row{"SET", F::None}));
}

TEST_CASE("every statement of a multi-statement string is looked at", "[protocol]") {
  check_rows(GENERATE(Row{"SELECT 1; LISTEN x", F::Listen}, Row{"SELECT 1;LISTEN x;", F::Listen},
                      Row{"LISTEN a; PREPARE p AS SELECT 1", F::Listen},
                      Row{"BEGIN; SET LOCAL search_path TO x; COMMIT", F::None},
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
  std::size_t features = 0;  // the lexer found one
  std::size_t skipped = 0;   // the prefilter let the lexer be skipped
  std::string failure;

  void operator()(const std::string& sql) {
    ++checked;
    const F lexer = detail::detect_session_feature_lexer(sql);
    const bool maybe = detail::may_use_session_state(sql);
    const F full = detect_session_feature(sql);
    if (lexer != F::None) ++features;
    if (!maybe) ++skipped;
    if ((lexer != F::None && !maybe) || full != lexer) {
      if (failure.empty()) failure = sql;
    }
  }
};

void check_prefilter(const Row& row) {
  const auto& [sql, expected] = row;
  CAPTURE(sql);
  CHECK(detail::detect_session_feature_lexer(sql) == expected);
  CHECK(detect_session_feature(sql) == expected);
  if (expected != F::None) CHECK(detail::may_use_session_state(sql));
}

TEST_CASE("the prefilter keeps every feature the lexer finds, in tricky places", "[protocol]") {
  check_prefilter(GENERATE(
      // Mixed case, and a keyword right at the start, the end, or alone.
      Row{"LiStEn x", F::Listen}, Row{"sEt search_path = x", F::SetUnreported},
      Row{"ReSeT search_path", F::SetUnreported}, Row{"set", F::None}, Row{"listen", F::Listen},
      Row{"SELECT Pg_Advisory_Lock(1)", F::AdvisoryLock},
      Row{"select pg_try_advisory_lock_SHARED(1)", F::AdvisoryLock},
      // After other statements, blanks, newlines, comments, literals and numbers.
      Row{"SELECT 1;set search_path = x", F::SetUnreported},
      Row{"SELECT 1 ;\n\t SET search_path = x", F::SetUnreported},
      Row{"/* x */SET search_path = x", F::SetUnreported}, Row{"/*x*/LISTEN x", F::Listen},
      Row{"-- x\nLISTEN x", F::Listen},
      Row{"-- comment text\r\n  \tPREPARE p AS SELECT 1", F::Prepare},
      Row{"SELECT 1; -- c\nCREATE TEMP TABLE t (a int)", F::TempObject},
      Row{"'x'LISTEN y", F::Listen}, Row{"E'x\\''LISTEN y", F::Listen},
      Row{"$$x$$LISTEN y", F::Listen}, Row{"$a$ x $a$ LISTEN y", F::Listen},
      Row{"1LISTEN y", F::Listen}, Row{"12 LISTEN y", F::Listen}, Row{"(LISTEN y", F::Listen},
      // A keyword split by a comment is two words; one glued to a comment is one.
      Row{"LIS/**/TEN x", F::None}, Row{"SE/* */T search_path = x", F::None},
      Row{"SELECT pg_advisory/**/_lock(1)", F::None},
      Row{"SELECT/**/pg_advisory_lock(1)", F::AdvisoryLock},
      // Quoted identifiers are words, unquoted as written (the lexer's own reading).
      Row{"\"LISTEN\" x", F::Listen}, Row{"\"set\" search_path = x", F::SetUnreported},
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
      Row{"SELECT _set", F::None}, Row{"x\xc3\xa9 SET search_path = x", F::None},
      Row{"SELECT pg_advisory_unlock(1)", F::None},
      // But a second statement may start with one.
      Row{"UPDATE t SET a = 1; SET search_path = x", F::SetUnreported},
      Row{"UPDATE t\nSET a = 1", F::None}));
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
  const std::array<std::string, 8> statements = {"SET search_path TO x",
                                                 "reset statement_timeout",
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
  CHECK(std::string(to_string(F::SetUnreported)) == "set_unreported");
  CHECK(std::string(to_string(F::NamedStatement)) == "named_statement");
}

}  // namespace
}  // namespace sluice::protocol
