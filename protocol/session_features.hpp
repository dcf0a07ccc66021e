// Looks at SQL for what transaction pooling must know about the backend session it runs in:
//   - state that cannot be carried from one backend to the next: LISTEN, SQL-level PREPARE, WITH
//     HOLD cursors, temporary objects, session-level advisory locks, SET ROLE and SET SESSION
//     AUTHORIZATION. A client that uses one is pinned to its backend for the rest of its session;
//   - settings changes that can: session-level SET and RESET of a parameter the server does not
//     report in ParameterStatus, RESET ALL, SET SESSION CHARACTERISTICS, set_config() and DISCARD
//     ALL. Sluice reads the resulting settings back from the server and replays them on the
//     client's next backend (src/session_relay.cpp);
//   - DISCARD ALL and DEALLOCATE ALL, which drop every prepared statement of the backend;
//   - EXECUTE or DEALLOCATE of a name starting with "sluice_", which only Sluice's own backend
//     statements have (refused).
// SET LOCAL, SET TRANSACTION and SET CONSTRAINTS end with the transaction: none of these.
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
  SetRole,         // SET ROLE, SET SESSION AUTHORIZATION (privileges: never handed on)
  NamedStatement,  // protocol-level named prepared statement (Parse with a name)
  SettingsUnread,  // Sluice could not read the session's settings back from the server
  Uninspected,     // SQL too long to inspect whole (over 1 MiB): it might use anything
};

const char* to_string(SessionFeature f);

struct SessionUse {
  SessionFeature pin = SessionFeature::None;  // the first feature that pins, or None
  bool settings = false;                      // may change session-level settings
  bool drops_statements = false;              // DISCARD ALL or DEALLOCATE [PREPARE] ALL
  bool reserved_name = false;  // EXECUTE or DEALLOCATE of a name starting with "sluice_"
  bool operator==(const SessionUse&) const = default;
};

// What `sql` (one or more statements) does to the backend session.
SessionUse inspect_session_use(std::string_view sql);
// The first session-state feature `sql` uses, or None.
inline SessionFeature detect_session_feature(std::string_view sql) {
  return inspect_session_use(sql).pin;
}

// True for the parameters PostgreSQL 15 reports with ParameterStatus (GUC_REPORT), whose value
// Sluice therefore always knows and can restore on another backend. Case-insensitive.
bool is_reported_parameter(std::string_view name);

// The two halves of inspect_session_use(), for tests.
namespace detail {
// False when `sql` cannot use session state: none of the words the lexer looks for occurs in it
// (a fast scan; true may be a false alarm).
bool may_use_session_state(std::string_view sql);
// inspect_session_use() without that prefilter: the statement lexer on the whole text.
SessionUse inspect_session_use_lexer(std::string_view sql);
}  // namespace detail

}  // namespace sluice::protocol
