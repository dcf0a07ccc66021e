// Named prepared statements under transaction pooling.
//
// A client's statement must work on whichever backend runs its next Bind, so Sluice keeps the
// client's names to itself and gives every statement definition (query text and parameter types)
// a backend name derived from the definition, e.g. "sluice_3f9a…": clients preparing the same
// query share one backend statement. Three pieces:
//   - BackendStatementCache: which backend names one backend connection has prepared (LRU with a
//     bound; evicted statements are closed on the backend);
//   - ResponseEdits: per attached backend, which ParseComplete/CloseComplete responses belong to
//     messages Sluice injected (dropped) or substituted (retyped), kept right through pipelines
//     and the skip-to-Sync that follows an error;
//   - StatementMapper: per client, its names -> definitions, and the rewriting of Parse, Bind,
//     Describe, Close and DEALLOCATE into what the current backend must receive.
// Pure and single-threaded: one mapper per client session, one cache and one ResponseEdits per
// backend connection; callers serialise.
#pragma once

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sluice::protocol {

// Name of a backend statement that never exists: closing it is a no-op with a CloseComplete.
inline constexpr std::string_view kNoopStatement = "sluice_noop";

// Backend statement names start with this; a client may not reach one it did not define.
inline constexpr std::string_view kReservedPrefix = "sluice_";
bool is_reserved_statement_name(std::string_view name);

// The SQL of a Parse (or Query) that Sluice sends in place of a client message it refuses: the
// backend answers it with a syntax error naming this word, which Sluice replaces with its own
// error (ResponseEdits::take_refusal), and then skips to the Sync as after any error, so the
// refusal reaches the client in order with the backend's other answers.
inline constexpr std::string_view kRefusalMarker = "sluice_refusal";

class BackendStatementCache {
 public:
  explicit BackendStatementCache(std::size_t capacity) : capacity_(capacity) {}
  // The definition prepared under `name`, or nullptr; marks it most recently used.
  const std::string* find(std::string_view name);
  // Records `name` as prepared; appends the least recently used names pushed out to `evicted`.
  void add(const std::string& name, std::shared_ptr<const std::string> body,
           std::vector<std::string>& evicted);
  void erase(std::string_view name);
  void clear();
  std::size_t size() const { return map_.size(); }
  std::size_t capacity() const { return capacity_; }
  // A new bound applies from the next add() on (0: none).
  void set_capacity(std::size_t capacity) { capacity_ = capacity; }

 private:
  struct Entry {
    std::shared_ptr<const std::string> body;
    std::list<std::string>::iterator lru;
  };
  std::size_t capacity_;
  std::list<std::string> lru_;  // most recently used at the front
  std::unordered_map<std::string, Entry> map_;
};

class ResponseEdits {
 public:
  enum class Edit {
    Keep,             // forward as is
    Drop,             // response to a message Sluice injected: the client never sees it
    AsParseComplete,  // a no-op Close stood in for a Parse: forward it as ParseComplete
    Refusal,          // a refused message (append_refusal): its error is replaced
    SeriesMarker,     // append_series_marker(): dropped like Drop; see there
  };
  // A Parse or Close was sent; `prepared` names the backend statement a Parse creates (erased
  // from the cache again if the Parse never completes), `client_name` the client's statement it
  // defines (forgotten again if the Parse never completes, as PostgreSQL forgets it).
  void expect(Edit edit, std::string prepared = {}, std::string client_name = {});
  // A Query, Sync or FunctionCall was sent: the end of a group (it is answered by ReadyForQuery).
  void group_sent() { ++sent_groups_; }
  // A Sync of Sluice's own ended the group being sent: every answer to that group, its
  // ReadyForQuery included, is Sluice's and is dropped (next_ready_is_private()).
  void private_sync_sent() {
    private_groups_.push_back(sent_groups_);
    ++sent_groups_;
  }
  // Whether the next ReadyForQuery ends a group of Sluice's own, not one the client sent.
  bool next_ready_is_private() const {
    return private_head_ < private_groups_.size() &&
           private_groups_[private_head_] == received_groups_;
  }
  // Whether the group being sent holds a series marker: the client's extended-protocol series is
  // open and its own Sync will come (append_series_marker()).
  bool series_open() const { return group_has_marker(sent_groups_); }
  // What to do with a backend message of `type`. On an ErrorResponse inside an extended-protocol
  // group, the backend skips the rest of the group: its pending entries are dropped (so are any
  // still pending when the group's ReadyForQuery arrives: they were sent after the error), the
  // backend names their Parses would have created are appended to `not_prepared`, and the client
  // names they would have defined to `not_defined`.
  Edit on_backend_message(char type, std::vector<std::string>& not_prepared,
                          std::vector<std::string>& not_defined);
  // Groups the backend will never answer, found since the last call: those ended by a Query or
  // FunctionCall that it skipped to the Sync after an extended-protocol error
  // (append_series_marker()). Each had been counted as sent.
  std::uint32_t take_skipped_groups() { return std::exchange(skipped_groups_, 0); }
  // The backend statement whose ParseComplete on_backend_message() last saw (a Parse that
  // created one: the client's, rewritten, or one Sluice sent ahead of a Bind), or "" if none
  // since the last call. That definition parsed without error on this backend.
  std::string take_confirmed() { return std::exchange(confirmed_, std::string()); }
  bool empty() const { return head_ == pending_.size(); }
  void clear();
  // Records a refusal sent in place of a client message: `error` is the ErrorResponse the client
  // gets instead of the backend's answer to it.
  void expect_refusal(Buffer error);
  // Called for a backend ErrorResponse before on_backend_message(): when it answers a refusal
  // (the oldest entry of the current group is one, and the error names kRefusalMarker), the
  // ErrorResponse to send instead.
  std::optional<Buffer> take_refusal(ByteView error_response);

 private:
  struct Pending {
    Edit edit;
    std::uint64_t group;
    std::string prepared;
    std::string client_name;
    Buffer refusal;  // Edit::Refusal: the ErrorResponse to send
  };
  Edit on_message(char type, std::vector<std::string>& not_prepared,
                  std::vector<std::string>& not_defined);
  // Returns whether a SeriesMarker was among the dropped entries.
  bool drop_group(std::uint64_t group, std::vector<std::string>& not_prepared,
                  std::vector<std::string>& not_defined);
  bool group_has_marker(std::uint64_t group) const;
  // A queue as a vector and a head index: an empty std::deque already allocates about 600 bytes,
  // and every client session has one of these.
  std::vector<Pending> pending_;
  std::size_t head_ = 0;
  Pending& front() { return pending_[head_]; }
  void pop_front();
  std::uint64_t sent_groups_ = 0;
  std::uint64_t received_groups_ = 0;
  std::uint32_t skipped_groups_ = 0;
  std::vector<std::uint64_t> private_groups_;  // from private_head_ on: not yet answered
  std::size_t private_head_ = 0;
  bool skipping_to_sync_ = false;  // after an extended-protocol error, until the Sync's answer
  std::string confirmed_;          // take_confirmed()
};

// Goes before a Query or FunctionCall that follows extended-protocol messages not yet closed by
// a Sync. After an error in those messages, PostgreSQL skips everything up to the Sync, that Query
// included, so the Query gets no ReadyForQuery; without an error it runs and gets one. Both
// answers start the same way, so Sluice sends a Close of kNoopStatement first: its CloseComplete
// (dropped) comes only when the messages before it succeeded. An error while it is still pending
// means the backend now skips to the Sync, and ResponseEdits counts the groups it will not
// answer (take_skipped_groups()).
void append_series_marker(Buffer& out, ResponseEdits& edits);

// Replaces a client message by one the backend refuses (kRefusalMarker) and records `error` as the
// answer the client gets for it.
void append_refusal(Buffer& out, ResponseEdits& edits, bool as_query, const ErrorInfo& error);

struct StatementDef {
  std::string backend_name;
  std::shared_ptr<const std::string> body;  // Parse body after the name: query, types
  bool sets_settings = false;  // its query may change session settings (inspect_session_use)
};

class StatementMapper {
 public:
  // Derives a backend name from a definition's bytes (src/ uses a cryptographic hash, so that a
  // client cannot make its definition collide with another client's).
  using NameFn = std::string (*)(std::string_view body);
  // The body a definition keeps; src/ shares equal bodies between clients. Default: a copy.
  using BodyFn = std::shared_ptr<const std::string> (*)(std::string_view body);
  explicit StatementMapper(NameFn name_fn, BodyFn body_fn = nullptr)
      : name_fn_(name_fn), body_fn_(body_fn) {}

  // Bounds on this client's statements (0: none): how many, and their bodies' bytes in all. A
  // Parse beyond them is refused with 53400 naming the setting.
  void set_limits(std::size_t max_statements, std::size_t max_bytes) {
    max_statements_ = max_statements;
    max_bytes_ = max_bytes;
  }
  std::size_t bytes() const { return bytes_; }

  enum class Outcome {
    Forward,    // send the message unchanged
    Rewritten,  // send `out` instead
    Malformed,  // not a valid message of its type: a protocol violation
  };
  // Handles one complete client message of any type; Parse and Close always record their
  // response edits, so every ParseComplete and CloseComplete stays accounted for.
  Outcome rewrite(ByteView msg, BackendStatementCache& cache, ResponseEdits& edits, Buffer& out);
  // Handles the first bytes of a Bind too long to buffer whole (`total` is its declared length
  // field). On Rewritten, `out` holds a new prefix to send instead of the first `consumed` bytes
  // of `prefix`; the rest of the message is forwarded unchanged. NeedMore-like: returns Malformed
  // if the names are not complete within `prefix`.
  Outcome rewrite_bind_prefix(ByteView prefix, std::uint32_t total, BackendStatementCache& cache,
                              ResponseEdits& edits, Buffer& out, std::size_t& consumed);

  // Records a named Parse's definition without a backend, for a client outside a transaction
  // that is only preparing (Parse then Sync): its Bind or Describe prepares it on whichever
  // backend runs it, as for a backend that lacks it. Returns false, recording nothing, for an
  // unnamed or malformed Parse and for a name already defined (PostgreSQL's 42P05 must come from
  // a backend).
  bool define(ByteView parse_msg);

  std::size_t size() const { return statements_.size(); }
  bool empty() const { return statements_.empty(); }
  // A client Parse failed (or was skipped after an error): the name is not defined after all.
  void forget(const std::string& client_name);
  // The client's DISCARD ALL or DEALLOCATE ALL dropped every statement of its session.
  void forget_all();
  // When the last message rewrite() handled was a Bind of a named statement whose query may
  // change session settings (its execution must be followed by a read-back of them): that query;
  // else "". Valid until the mapper next changes.
  std::string_view last_bind_settings_query() const {
    return last_bind_settings_ == nullptr ? std::string_view() : last_bind_settings_->c_str();
  }
  const StatementDef* find(std::string_view client_name) const;
  // This client's name for a backend statement ("" if none): error texts show the client's names.
  std::string_view client_name_of(std::string_view backend_name) const;

 private:
  Outcome rewrite_parse(ByteView msg, BackendStatementCache& cache, ResponseEdits& edits,
                        Buffer& out);
  Outcome rewrite_query(ByteView msg, BackendStatementCache& cache, ResponseEdits& edits,
                        Buffer& out);
  // `in_query`: `sql` is a simple Query's (else an unnamed Parse's).
  std::optional<std::string> rewrite_deallocate(std::string_view sql, BackendStatementCache& cache,
                                                ResponseEdits& edits, Buffer& out, bool in_query);
  // Appends a Parse of `def` to `out` if `cache` lacks it (its response dropped); returns whether
  // it did.
  bool ensure_prepared(const StatementDef& def, BackendStatementCache& cache, ResponseEdits& edits,
                       Buffer& out);

  StatementDef make_def(std::string_view body) const;
  // Why a new definition of `name` with `body_size` bytes may not be kept, or nullopt.
  std::optional<std::string> over_limits(std::string_view name, std::size_t body_size) const;
  void add(std::string_view name, StatementDef def);
  void erase(std::unordered_map<std::string, StatementDef>::iterator it);

  NameFn name_fn_;
  BodyFn body_fn_;
  std::unordered_map<std::string, StatementDef> statements_;  // client name -> definition
  std::size_t bytes_ = 0;  // of the bodies and names in statements_
  std::size_t max_statements_ = 0;
  std::size_t max_bytes_ = 0;
  const std::string* last_bind_settings_ = nullptr;  // a StatementDef's body
};

}  // namespace sluice::protocol
