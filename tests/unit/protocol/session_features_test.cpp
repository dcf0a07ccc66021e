#include "protocol/session_features.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <tuple>

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
