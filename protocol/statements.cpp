#include "protocol/statements.hpp"

#include "protocol/builders.hpp"
#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "protocol/text.hpp"

#include <cctype>

namespace sluice::protocol {

// ---- BackendStatementCache -------------------------------------------------------------------

const std::string* BackendStatementCache::find(std::string_view name) {
  auto it = map_.find(std::string(name));
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.body.get();
}

void BackendStatementCache::add(const std::string& name, std::shared_ptr<const std::string> body,
                                std::vector<std::string>& evicted) {
  if (auto it = map_.find(name); it != map_.end()) {
    it->second.body = std::move(body);
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return;
  }
  lru_.push_front(name);
  map_.emplace(name, Entry{std::move(body), lru_.begin()});
  while (capacity_ > 0 && map_.size() > capacity_) {
    evicted.push_back(lru_.back());
    map_.erase(lru_.back());
    lru_.pop_back();
  }
}

void BackendStatementCache::erase(std::string_view name) {
  auto it = map_.find(std::string(name));
  if (it == map_.end()) return;
  lru_.erase(it->second.lru);
  map_.erase(it);
}

void BackendStatementCache::clear() {
  map_.clear();
  lru_.clear();
}

// ---- ResponseEdits ---------------------------------------------------------------------------

void ResponseEdits::expect(Edit edit, std::string prepared, std::string client_name) {
  pending_.push_back(Pending{edit, sent_groups_, std::move(prepared), std::move(client_name)});
}

bool ResponseEdits::drop_group(std::uint64_t group, std::vector<std::string>& not_prepared,
                               std::vector<std::string>& not_defined) {
  bool marker = false;
  while (!empty() && front().group == group) {
    Pending& p = front();
    marker = marker || p.edit == Edit::SeriesMarker;
    if (!p.prepared.empty()) not_prepared.push_back(std::move(p.prepared));
    if (!p.client_name.empty()) not_defined.push_back(std::move(p.client_name));
    pop_front();
  }
  return marker;
}

bool ResponseEdits::group_has_marker(std::uint64_t group) const {
  for (std::size_t i = head_; i < pending_.size() && pending_[i].group <= group; ++i) {
    if (pending_[i].group == group && pending_[i].edit == Edit::SeriesMarker) return true;
  }
  return false;
}

ResponseEdits::Edit ResponseEdits::on_backend_message(char type,
                                                      std::vector<std::string>& not_prepared,
                                                      std::vector<std::string>& not_defined) {
  if (!next_ready_is_private()) return on_message(type, not_prepared, not_defined);
  // Sluice's own group: its statements are accounted for as any, and nothing reaches the client.
  const Edit edit = on_message(type, not_prepared, not_defined);
  if (type == 'Z' && ++private_head_ == private_groups_.size()) {
    private_groups_.clear();
    private_head_ = 0;
  }
  return type == '1' || type == '3' || type == 'E' || type == 'Z' ? Edit::Drop : edit;
}

ResponseEdits::Edit ResponseEdits::on_message(char type, std::vector<std::string>& not_prepared,
                                              std::vector<std::string>& not_defined) {
  switch (type) {
    case '1':    // ParseComplete
    case '3': {  // CloseComplete
      if (empty()) return Edit::Keep;
      Edit e = front().edit;
      // A ParseComplete for a Parse that created a backend statement: parsed without error.
      if (type == '1' && !front().prepared.empty()) confirmed_ = std::move(front().prepared);
      pop_front();
      return e == Edit::SeriesMarker ? Edit::Drop : e;
    }
    case 'E': {  // ErrorResponse: the backend now skips to the end of the current group
      // A group not yet ended by a Query, Sync or FunctionCall is an extended-protocol series:
      // the backend skips to its Sync, past any Query the client sends before it (whose marker
      // is then found pending when that Sync is answered).
      const bool open_group = received_groups_ == sent_groups_;
      if (drop_group(received_groups_, not_prepared, not_defined)) {
        // An extended-protocol error before this group's Query: the backend skips to the Sync,
        // past that Query (this group gets no ReadyForQuery) and any later one.
        ++received_groups_;
        ++skipped_groups_;
        skipping_to_sync_ = true;
      } else if (open_group) {
        skipping_to_sync_ = true;
      }
      return Edit::Keep;
    }
    case 'Z':  // ReadyForQuery ends a group; entries still pending were skipped after an error
      if (std::exchange(skipping_to_sync_, false)) {
        // The Sync's: every group before it was sent by now, and those ended by a Query (each
        // has its marker) were skipped.
        while (received_groups_ < sent_groups_ && group_has_marker(received_groups_)) {
          drop_group(received_groups_, not_prepared, not_defined);
          ++received_groups_;
          ++skipped_groups_;
        }
      }
      drop_group(received_groups_, not_prepared, not_defined);
      ++received_groups_;
      return Edit::Keep;
    default:
      return Edit::Keep;
  }
}

void ResponseEdits::expect_refusal(Buffer error) {
  pending_.push_back(Pending{Edit::Refusal, sent_groups_, {}, {}, std::move(error)});
}

std::optional<Buffer> ResponseEdits::take_refusal(ByteView error_response) {
  if (empty() || front().edit != Edit::Refusal || front().group != received_groups_) {
    return std::nullopt;
  }
  auto fields = read_error_fields(error_response);
  if (!fields || fields->message().find(kRefusalMarker) == std::string_view::npos) {
    return std::nullopt;  // an earlier message of the group failed: the backend never saw ours
  }
  return std::move(front().refusal);
}

void ResponseEdits::pop_front() {
  if (++head_ == pending_.size()) {
    pending_.clear();  // keeps the capacity: no allocation on the next transaction
    head_ = 0;
  }
}

void ResponseEdits::clear() {
  pending_.clear();
  head_ = 0;
  sent_groups_ = received_groups_ = 0;
  skipped_groups_ = 0;
  private_groups_.clear();
  private_head_ = 0;
  skipping_to_sync_ = false;
  confirmed_.clear();
}

// ---- StatementMapper -------------------------------------------------------------------------

namespace {

void append_close_statement(Buffer& out, std::string_view name) {
  MessageWriter(out).begin('C').add_u8('S').add_cstring(name).finish();
}

// Closes `name` ahead of a Parse of it. The cache can lack a name the backend still holds: an
// eviction Close or a DEALLOCATE skipped or failed after an error (the backend skips to Sync, or
// the transaction is aborted), and a Parse of an existing name fails (42P05) every time after.
// Closing a statement that does not exist is a no-op answered with CloseComplete.
void append_close_before_parse(Buffer& out, std::string_view name, ResponseEdits& edits) {
  append_close_statement(out, name);
  edits.expect(ResponseEdits::Edit::Drop);
}

}  // namespace

void append_series_marker(Buffer& out, ResponseEdits& edits) {
  append_close_statement(out, kNoopStatement);
  edits.expect(ResponseEdits::Edit::SeriesMarker);
}

namespace {

void append_parse(Buffer& out, std::string_view name, const std::string& body) {
  MessageWriter(out).begin('P').add_cstring(name).add_bytes(body).finish();
}

// Splits "DEALLOCATE [PREPARE] name" (optionally ';'-terminated, name optionally double-quoted)
// into its words; anything more complex yields an empty list.
std::vector<std::string> simple_words(std::string_view sql) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c)) != 0) {
      ++i;
    } else if (c == ';') {
      ++i;
      for (; i < sql.size(); ++i) {
        if (std::isspace(static_cast<unsigned char>(sql[i])) == 0) return {};
      }
    } else if (c == '"') {
      std::string w;
      ++i;
      for (; i < sql.size(); ++i) {
        if (sql[i] == '"') {
          if (i + 1 < sql.size() && sql[i + 1] == '"') {
            w += '"';
            ++i;
          } else {
            break;
          }
        } else {
          w += sql[i];
        }
      }
      if (i >= sql.size()) return {};
      ++i;
      words.push_back("\"" + w);  // marks a quoted (case-preserved) identifier
    } else if (std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_') {
      std::size_t start = i;
      while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) != 0 ||
                                sql[i] == '_' || sql[i] == '$')) {
        ++i;
      }
      words.emplace_back(sql.substr(start, i - start));
    } else {
      return {};
    }
  }
  return words;
}

// True if the first word of `sql` (after white space) is `word`, case-insensitively: a cheap
// test before simple_words(), which allocates.
bool starts_with_word(std::string_view sql, std::string_view word) {
  std::size_t i = 0;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i])) != 0) ++i;
  if (sql.size() - i < word.size() || !iequals(sql.substr(i, word.size()), word)) return false;
  const std::size_t end = i + word.size();
  return end == sql.size() || std::isalnum(static_cast<unsigned char>(sql[end])) == 0;
}

std::string identifier_value(const std::string& word) {
  if (!word.empty() && word.front() == '"') return word.substr(1);
  std::string lower = word;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return lower;
}

void append_does_not_exist(Buffer& out, ResponseEdits& edits, std::string_view name) {
  const std::string message = "prepared statement \"" + std::string(name) + "\" does not exist";
  append_refusal(out, edits, false, ErrorInfo{.sqlstate = "26000", .message = message});
}

}  // namespace

bool is_reserved_statement_name(std::string_view name) {
  return name.size() >= kReservedPrefix.size() &&
         name.substr(0, kReservedPrefix.size()) == kReservedPrefix;
}

void append_refusal(Buffer& out, ResponseEdits& edits, bool as_query, const ErrorInfo& error) {
  if (as_query) {
    MessageWriter(out).begin('Q').add_cstring(kRefusalMarker).finish();
  } else {
    MessageWriter(out).begin('P').add_cstring("").add_cstring(kRefusalMarker).add_u16(0).finish();
  }
  Buffer answer;
  build_error_response(answer, error);
  edits.expect_refusal(std::move(answer));
}

std::optional<std::string> StatementMapper::over_limits(std::string_view name,
                                                        std::size_t body_size) const {
  if (max_statements_ > 0 && statements_.size() >= max_statements_) {
    return "sluice: prepared statement \"" + std::string(name) +
           "\" would exceed max_client_statements (" + std::to_string(max_statements_) +
           ") on this connection";
  }
  if (max_bytes_ > 0 && bytes_ + name.size() + body_size > max_bytes_) {
    return "sluice: prepared statement \"" + std::string(name) +
           "\" would exceed max_client_statement_bytes (" + std::to_string(max_bytes_) +
           " bytes of statement text) on this connection";
  }
  return std::nullopt;
}

void StatementMapper::add(std::string_view name, StatementDef def) {
  bytes_ += name.size() + def.body->size();
  statements_.emplace(std::string(name), std::move(def));
}

void StatementMapper::erase(std::unordered_map<std::string, StatementDef>::iterator it) {
  bytes_ -= it->first.size() + it->second.body->size();
  statements_.erase(it);
}

void StatementMapper::forget(const std::string& client_name) {
  if (auto it = statements_.find(client_name); it != statements_.end()) erase(it);
}

void StatementMapper::forget_all() {
  statements_.clear();
  bytes_ = 0;
}

std::string_view StatementMapper::client_name_of(std::string_view backend_name) const {
  for (const auto& [client_name, def] : statements_) {
    if (def.backend_name == backend_name) return client_name;
  }
  return {};
}

StatementDef StatementMapper::make_def(std::string_view body) const {
  StatementDef def{name_fn_(body), body_fn_ != nullptr ? body_fn_(body)
                                                       : std::make_shared<const std::string>(body)};
  // The body starts with the query as a C string.
  def.sets_settings = inspect_session_use(def.body->c_str()).settings;
  return def;
}

const StatementDef* StatementMapper::find(std::string_view client_name) const {
  auto it = statements_.find(std::string(client_name));
  return it == statements_.end() ? nullptr : &it->second;
}

bool StatementMapper::ensure_prepared(const StatementDef& def, BackendStatementCache& cache,
                                      ResponseEdits& edits, Buffer& out) {
  const std::string* have = cache.find(def.backend_name);
  if (have != nullptr && *have == *def.body) return false;
  // Same name, other text: only a hash collision could do this. Replace it.
  if (have != nullptr) cache.erase(def.backend_name);
  std::vector<std::string> evicted;
  cache.add(def.backend_name, def.body, evicted);
  for (const std::string& name : evicted) {
    append_close_statement(out, name);
    edits.expect(ResponseEdits::Edit::Drop);
  }
  append_close_before_parse(out, def.backend_name, edits);
  append_parse(out, def.backend_name, *def.body);
  edits.expect(ResponseEdits::Edit::Drop, def.backend_name);
  return true;
}

StatementMapper::Outcome StatementMapper::rewrite_parse(ByteView msg, BackendStatementCache& cache,
                                                        ResponseEdits& edits, Buffer& out) {
  auto parse = read_parse(msg);
  if (!parse) return Outcome::Malformed;
  if (parse->statement.empty()) {
    // DEALLOCATE / DISCARD ALL sent through the extended protocol are handled as in a Query.
    auto replacement = rewrite_deallocate(parse->query, cache, edits, out, false);
    edits.expect(ResponseEdits::Edit::Keep);
    if (!replacement) return Outcome::Forward;
    MessageWriter(out)
        .begin('P')
        .add_cstring("")
        .add_cstring(*replacement)
        .add_u16(parse->param_type_count)
        .add_bytes(parse->param_types)
        .finish();
    return Outcome::Rewritten;
  }
  const std::size_t body_offset = 5 + parse->statement.size() + 1;
  const std::string_view body_text(reinterpret_cast<const char*>(msg.data()) + body_offset,
                                   msg.size() - body_offset);
  if (const StatementDef* existing = find(parse->statement)) {
    // PostgreSQL refuses to redefine a name (42P05) and keeps the first definition: have the
    // backend refuse a Parse under the existing statement's backend name.
    ensure_prepared(*existing, cache, edits, out);
    MessageWriter(out).begin('P').add_cstring(existing->backend_name).add_bytes(body_text).finish();
    edits.expect(ResponseEdits::Edit::Keep);
    return Outcome::Rewritten;
  }
  if (auto why = over_limits(parse->statement, body_text.size())) {
    append_refusal(out, edits, false,
                   ErrorInfo{.sqlstate = "53400",
                             .message = *why,
                             .hint = "Close or DEALLOCATE prepared statements that are no longer "
                                     "used, or raise the setting."});
    return Outcome::Rewritten;
  }
  StatementDef def = make_def(body_text);
  const std::shared_ptr<const std::string> body = def.body;
  add(parse->statement, def);
  const std::string* have = cache.find(def.backend_name);
  if (have != nullptr && *have == *body) {
    // Already prepared on this backend: a no-op Close answers in the Parse's place.
    append_close_statement(out, kNoopStatement);
    edits.expect(ResponseEdits::Edit::AsParseComplete, {}, std::string(parse->statement));
    return Outcome::Rewritten;
  }
  if (have != nullptr) cache.erase(def.backend_name);
  std::vector<std::string> evicted;
  cache.add(def.backend_name, body, evicted);
  for (const std::string& name : evicted) {
    append_close_statement(out, name);
    edits.expect(ResponseEdits::Edit::Drop);
  }
  append_close_before_parse(out, def.backend_name, edits);
  append_parse(out, def.backend_name, *body);
  edits.expect(ResponseEdits::Edit::Keep, def.backend_name, std::string(parse->statement));
  return Outcome::Rewritten;
}

bool StatementMapper::define(ByteView parse_msg) {
  auto parse = read_parse(parse_msg);
  if (!parse || parse->statement.empty() || find(parse->statement) != nullptr) return false;
  const std::size_t body_offset = 5 + parse->statement.size() + 1;
  const std::string_view body(reinterpret_cast<const char*>(parse_msg.data()) + body_offset,
                              parse_msg.size() - body_offset);
  // Over a limit, the Parse goes to a backend, where it is refused in order.
  if (over_limits(parse->statement, body.size())) return false;
  add(parse->statement, make_def(body));
  return true;
}

// DEALLOCATE, DEALLOCATE ALL and DISCARD ALL in SQL text (a Query, or an unnamed Parse: psycopg
// 3.1 deallocates that way). Returns the SQL to run instead, or nullopt to run `sql` unchanged.
// `DEALLOCATE name` of a client's protocol-level statement becomes DEALLOCATE of its backend
// statement, made sure to exist first, so the command tag and the outcome match PostgreSQL's.
std::optional<std::string> StatementMapper::rewrite_deallocate(std::string_view sql,
                                                               BackendStatementCache& cache,
                                                               ResponseEdits& edits, Buffer& out,
                                                               bool in_query) {
  if (!starts_with_word(sql, "DISCARD") && !starts_with_word(sql, "DEALLOCATE")) {
    return std::nullopt;
  }
  auto words = simple_words(sql);
  if (words.size() == 2 && iequals(words[0], "DISCARD") && iequals(words[1], "ALL")) {
    forget_all();
    cache.clear();
    return std::nullopt;
  }
  if (words.empty() || !iequals(words[0], "DEALLOCATE")) return std::nullopt;
  std::size_t i = 1;
  if (i < words.size() && iequals(words[i], "PREPARE")) ++i;
  if (i + 1 != words.size()) return std::nullopt;
  if (iequals(words[i], "ALL")) {
    forget_all();
    cache.clear();
    return std::nullopt;
  }
  auto it = statements_.find(identifier_value(words[i]));
  if (it == statements_.end()) return std::nullopt;  // an SQL-level statement, or an error
  StatementDef def = it->second;
  erase(it);
  if (ensure_prepared(def, cache, edits, out) && in_query) {
    // That Parse can fail (in an aborted transaction, or for a definition no longer valid on
    // this backend), and PostgreSQL then skips to the next Sync, the Query included. (An
    // unnamed Parse is skipped with it, up to the client's own Sync.) Inside the client's open
    // series its own Sync comes, and a second marker shows whether the Query was skipped.
    // Otherwise a Sync of Sluice's own ends the skipping, and the Query gets the answer
    // PostgreSQL gives it (in an aborted transaction, 25P02).
    if (edits.series_open()) {
      append_series_marker(out, edits);
    } else {
      build_sync(out);
      edits.private_sync_sent();
    }
  }
  cache.erase(def.backend_name);  // the DEALLOCATE removes it from the backend
  return "DEALLOCATE " + def.backend_name;
}

StatementMapper::Outcome StatementMapper::rewrite_query(ByteView msg, BackendStatementCache& cache,
                                                        ResponseEdits& edits, Buffer& out) {
  auto sql = read_query(msg);
  if (!sql) return Outcome::Malformed;
  auto replacement = rewrite_deallocate(*sql, cache, edits, out, true);
  if (!replacement) return Outcome::Forward;
  MessageWriter(out).begin('Q').add_cstring(*replacement).finish();
  return Outcome::Rewritten;
}

StatementMapper::Outcome StatementMapper::rewrite(ByteView msg, BackendStatementCache& cache,
                                                  ResponseEdits& edits, Buffer& out) {
  if (msg.empty()) return Outcome::Malformed;
  last_bind_settings_ = nullptr;
  switch (static_cast<char>(msg[0])) {
    case 'P':
      return rewrite_parse(msg, cache, edits, out);
    case 'B': {
      auto bind = read_bind_names(msg);
      if (!bind) return Outcome::Malformed;
      if (bind->statement.empty()) return Outcome::Forward;
      const StatementDef* def = find(bind->statement);
      if (def == nullptr) {
        // The server reports that it does not exist; Sluice does for its own names.
        if (!is_reserved_statement_name(bind->statement)) return Outcome::Forward;
        append_does_not_exist(out, edits, bind->statement);
        return Outcome::Rewritten;
      }
      if (def->sets_settings) last_bind_settings_ = def->body.get();
      ensure_prepared(*def, cache, edits, out);
      MessageWriter(out)
          .begin('B')
          .add_cstring(bind->portal)
          .add_cstring(def->backend_name)
          .add_bytes(msg.subspan(bind->rest_offset))
          .finish();
      return Outcome::Rewritten;
    }
    case 'D': {
      auto target = read_describe(msg);
      if (!target) return Outcome::Malformed;
      if (target->kind != 'S' || target->name.empty()) return Outcome::Forward;
      const StatementDef* def = find(target->name);
      if (def == nullptr) {
        if (!is_reserved_statement_name(target->name)) return Outcome::Forward;
        append_does_not_exist(out, edits, target->name);
        return Outcome::Rewritten;
      }
      ensure_prepared(*def, cache, edits, out);
      MessageWriter(out).begin('D').add_u8('S').add_cstring(def->backend_name).finish();
      return Outcome::Rewritten;
    }
    case 'C': {
      auto target = read_close(msg);
      if (!target) return Outcome::Malformed;
      edits.expect(ResponseEdits::Edit::Keep);
      if (target->kind != 'S' || target->name.empty()) return Outcome::Forward;
      // The backend statement may serve other clients: forget the client's name only, and let
      // a no-op Close produce the CloseComplete the client waits for.
      forget(std::string(target->name));
      append_close_statement(out, kNoopStatement);
      return Outcome::Rewritten;
    }
    case 'Q':
      return rewrite_query(msg, cache, edits, out);
    default:
      return Outcome::Forward;
  }
}

StatementMapper::Outcome StatementMapper::rewrite_bind_prefix(ByteView prefix, std::uint32_t total,
                                                              BackendStatementCache& cache,
                                                              ResponseEdits& edits, Buffer& out,
                                                              std::size_t& consumed) {
  last_bind_settings_ = nullptr;
  // 'B', int32 length, portal\0, statement\0, ...
  if (prefix.size() < 5 || static_cast<char>(prefix[0]) != 'B') return Outcome::Malformed;
  auto cstring_end = [&](std::size_t from) -> std::size_t {
    for (std::size_t i = from; i < prefix.size(); ++i) {
      if (prefix[i] == std::byte{0}) return i;
    }
    return SIZE_MAX;
  };
  std::size_t portal_end = cstring_end(5);
  if (portal_end == SIZE_MAX) return Outcome::Malformed;
  std::size_t stmt_end = cstring_end(portal_end + 1);
  if (stmt_end == SIZE_MAX) return Outcome::Malformed;
  std::string_view portal(reinterpret_cast<const char*>(prefix.data()) + 5, portal_end - 5);
  std::string_view stmt(reinterpret_cast<const char*>(prefix.data()) + portal_end + 1,
                        stmt_end - portal_end - 1);
  if (stmt.empty()) return Outcome::Forward;
  const StatementDef* def = find(stmt);
  if (def == nullptr) {
    if (!is_reserved_statement_name(stmt)) return Outcome::Forward;
    // A Bind too long to hold whole cannot be replaced: one naming a statement of Sluice's that
    // this client never defined is treated as malformed (the session ends with 08P01).
    return Outcome::Malformed;
  }
  if (def->sets_settings) last_bind_settings_ = def->body.get();
  ensure_prepared(*def, cache, edits, out);
  consumed = stmt_end + 1;
  const std::size_t rest = std::size_t{total} + 1 - consumed;  // bytes after the names
  const std::size_t new_length = 4 + portal.size() + 1 + def->backend_name.size() + 1 + rest;
  if (new_length > UINT32_MAX) return Outcome::Malformed;
  out.push_back(std::byte{'B'});
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::byte>((new_length >> shift) & 0xff));
  }
  append(out, portal);
  out.push_back(std::byte{0});
  append(out, def->backend_name);
  out.push_back(std::byte{0});
  return Outcome::Rewritten;
}

}  // namespace sluice::protocol
