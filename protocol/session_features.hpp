// Detects SQL that depends on backend session state, which transaction pooling cannot carry from
// one backend to the next: LISTEN, SQL-level PREPARE, WITH HOLD cursors, temporary objects,
// session-level advisory locks, and SET of a parameter the server does not report back in
// ParameterStatus. A client that uses one is pinned to its backend for the rest of its session.
//
// A small lexer, not a parser: it skips comments and quoted text ('…', E'…', "…", $tag$…$tag$),
// splits statements at ';' and looks at keywords. It errs towards pinning. A fast scan first
// skips the lexer for text in which none of those keywords occurs (most SQL). Pure; any thread.
#pragma once

#include <string_view>

namespace sluice::protocol {

enum class SessionFeature {
  None,
  Listen,          // LISTEN (notifications arrive on that backend only)
  Prepare,         // SQL-level PREPARE
  HoldCursor,      // DECLARE ... WITH HOLD
  TempObject,      // CREATE TEMP/TEMPORARY ...
  AdvisoryLock,    // pg_advisory_lock and friends (session level; the _xact_ ones are safe)
  SetUnreported,   // SET/RESET of a parameter that is not reported in ParameterStatus
  NamedStatement,  // protocol-level named prepared statement (Parse with a name)
};

const char* to_string(SessionFeature f);

// The first session-state feature `sql` uses, or None.
SessionFeature detect_session_feature(std::string_view sql);

// True for the parameters PostgreSQL 15 reports with ParameterStatus (GUC_REPORT), whose value
// Sluice therefore always knows and can restore on another backend. Case-insensitive.
bool is_reported_parameter(std::string_view name);

// The two halves of detect_session_feature(), for tests.
namespace detail {
// False when `sql` cannot contain a session-state feature: none of the words the lexer looks for
// occurs in it (a fast scan; true may be a false alarm).
bool may_use_session_state(std::string_view sql);
// detect_session_feature() without that prefilter: the statement lexer on the whole text.
SessionFeature detect_session_feature_lexer(std::string_view sql);
}  // namespace detail

}  // namespace sluice::protocol
