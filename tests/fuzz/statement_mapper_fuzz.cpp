// Fuzzes named prepared statements under transaction pooling (protocol/statements.hpp): one
// client's StatementMapper, one backend's BackendStatementCache and ResponseEdits, driven by a
// sequence of client messages decoded from the input and answered by a small model of a
// PostgreSQL backend.
//
// Input: three header bytes (max statements, max bytes, cache capacity), then operations: Parse,
// Bind, Describe, Close, Query, Sync, Execute, Flush of a few names and queries, a raw message of
// arbitrary bytes, define(), a Bind split for rewrite_bind_prefix(), "the next command fails",
// and "deliver N backend answers". The backend model answers what Sluice actually sent: '1', '3',
// '2', 'n', 'C', 'Z', and an ErrorResponse (for a failure, a missing or duplicate statement, and
// for Sluice's refusal marker) after which it skips to the Sync, as PostgreSQL does.
// Properties, checked after every step: the mapper's bytes() is the sum over its statements,
// size() and bytes() stay within the limits, the cache within its capacity, every message sent is
// a well-formed frame, every ParseComplete/CloseComplete has a pending edit of its kind, a
// refusal's error is always replaced (unless the client itself wrote the marker's text: an error
// naming it may then be the client's own, and either error ends the group), every ReadyForQuery
// answers a group Sluice counts as outstanding (a Query the backend skipped after an error is taken
// off: append_series_marker), and once every group got its ReadyForQuery none is outstanding and no
// edit is left.
#include "tests/fuzz/fuzz_support.hpp"

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/statements.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::protocol::fuzz {
namespace {

using Edit = ResponseEdits::Edit;
using Outcome = StatementMapper::Outcome;

// A stand-in for src/'s hash, as in the unit tests.
std::string fake_name(std::string_view body) {
  return "sluice_" + std::to_string(std::hash<std::string_view>{}(body));
}

constexpr std::array<std::string_view, 7> kNames = {
    "", "a", "b", "A", "sluice_a", "sluice_noop", "sluice_refusal"};
constexpr std::array<std::string_view, 12> kQueries = {
    "SELECT 1",     "SELECT $1",        "SET search_path = x", "DEALLOCATE a",
    "DEALLOCATE b", "DEALLOCATE ALL",   "DISCARD ALL",         "deallocate prepare \"a\"",
    "LISTEN x",     "EXECUTE sluice_a", "SELECT 2; SELECT 3",  "DEALLOCATE sluice_a"};

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::string_view take(std::size_t n) {
    n = std::min(n, size_ - std::min(pos_, size_));
    const std::string_view s(reinterpret_cast<const char*>(data_) + pos_, n);
    pos_ += n;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

struct Answer {
  char type;
  bool marker = false;  // an ErrorResponse to Sluice's refusal marker
};

// What a PostgreSQL backend answers to the messages Sluice sends it (only what ResponseEdits
// cares about is modelled faithfully: which messages get '1', '3', 'E' and 'Z').
class Backend {
 public:
  void fail_next() { fail_next_ = true; }
  void receive(ByteView msg) {
    const char type = type_of(msg);
    if (skipping_) {
      if (type == 'S') {
        skipping_ = false;
        answers_.push_back({'Z'});
      }
      return;
    }
    switch (type) {
      case 'P': {
        const auto p = read_parse(msg);
        if (!p) return error(false);
        if (p->query.find(kRefusalMarker) != std::string_view::npos) return error(true);
        if (take_failure()) return error(false);
        if (!p->statement.empty() && statements_.count(std::string(p->statement)) > 0) {
          return error(false);  // 42P05
        }
        statements_.insert(std::string(p->statement));
        answers_.push_back({'1'});
        return;
      }
      case 'B': {
        const auto b = read_bind_names(msg);
        if (!b || statements_.count(std::string(b->statement)) == 0 || take_failure()) {
          return error(false);
        }
        answers_.push_back({'2'});
        return;
      }
      case 'D': {
        const auto d = read_describe(msg);
        if (!d || (d->kind == 'S' && statements_.count(std::string(d->name)) == 0)) {
          return error(false);
        }
        answers_.push_back({'n'});
        return;
      }
      case 'C': {
        const auto c = read_close(msg);
        if (!c) return error(false);
        if (c->kind == 'S') statements_.erase(std::string(c->name));
        answers_.push_back({'3'});
        return;
      }
      case 'E':
        if (take_failure()) return error(false);
        answers_.push_back({'C'});
        return;
      case 'S':
        answers_.push_back({'Z'});
        return;
      case 'Q': {
        const auto q = read_query(msg);
        if (!q || q->find(kRefusalMarker) != std::string_view::npos || take_failure()) {
          answers_.push_back({'E', q && q->find(kRefusalMarker) != std::string_view::npos});
        } else {
          query(*q);
          answers_.push_back({'C'});
        }
        answers_.push_back({'Z'});
        return;
      }
      default:
        return;  // Flush and the rest: no answer
    }
  }
  bool idle() const { return answers_.empty(); }
  Answer next() {
    const Answer a = answers_.front();
    answers_.pop_front();
    return a;
  }

 private:
  bool take_failure() {
    const bool f = fail_next_;
    fail_next_ = false;
    return f;
  }
  void error(bool marker) {
    answers_.push_back({'E', marker});
    skipping_ = true;
  }
  void query(std::string_view sql) {
    if (sql == "DEALLOCATE ALL" || sql == "DISCARD ALL") statements_.clear();
    constexpr std::string_view kDeallocate = "DEALLOCATE ";
    if (sql.rfind(kDeallocate, 0) == 0) statements_.erase(std::string(sql.substr(11)));
  }

  std::set<std::string> statements_{""};  // the unnamed statement: a Bind of it is harmless here
  std::deque<Answer> answers_;
  bool skipping_ = false;
  bool fail_next_ = false;
};

Buffer error_response(bool marker) {
  Buffer b;
  const std::string text = marker
                               ? "syntax error at or near \"" + std::string(kRefusalMarker) + "\""
                               : std::string("division by zero");
  build_error_response(b, ErrorInfo{.sqlstate = marker ? "42601" : "22012", .message = text});
  return b;
}

Buffer simple_message(char type) {
  Buffer b;
  MessageWriter(b).begin(type).finish();
  return b;
}

class Session {
 public:
  Session(std::size_t max_statements, std::size_t max_bytes, std::size_t capacity)
      : cache_(capacity), max_statements_(max_statements), max_bytes_(max_bytes) {
    mapper_.set_limits(max_statements, max_bytes);
  }

  // Sends one complete client message through the mapper; false when it was malformed (the
  // session ends there).
  bool client(const Buffer& msg) {
    // The relay frames a client's bytes before the mapper sees them: a message its framing
    // refuses (e.g. an Execute shorter than its fixed part) ends the session with 08P01 there.
    const FrameResult framed = peek_frame(ByteView(msg), Direction::Frontend, 1u << 30);
    if (framed.status != DecodeStatus::Ok) return false;
    const char type = std::to_integer<char>(msg[0]);
    if (type == 'Q' && unsynced_) {
      // As the relay does: whether the Query gets a ReadyForQuery depends on what precedes it.
      Buffer marker;
      append_series_marker(marker, edits_);
      send(ByteView(marker));
    }
    // Only a Sync ends a series of extended-protocol messages (a Query inside one does not).
    unsynced_ = type != 'S' && (unsynced_ || (type != 'H' && type != 'Q'));
    if (type == 'P') note_name(ByteView(msg));
    note_marker(msg);
    Buffer out;
    const Outcome outcome = mapper_.rewrite(ByteView(msg), cache_, edits_, out);
    check();
    if (outcome == Outcome::Malformed) return false;
    send(outcome == Outcome::Rewritten ? ByteView(out) : ByteView(msg));
    if (type == 'Q' || type == 'S') {
      edits_.group_sent();
      ++outstanding_;
    }
    return true;
  }

  // A Bind too long to buffer: its first `keep` bytes go through rewrite_bind_prefix().
  bool client_bind_prefix(const Buffer& msg, std::size_t keep) {
    const ByteView whole(msg);
    const ByteView prefix = whole.first(std::min(std::max<std::size_t>(keep, 5), whole.size()));
    Buffer out;
    std::size_t consumed = 0;
    const Outcome outcome = mapper_.rewrite_bind_prefix(prefix, read_u32(whole.data() + 1), cache_,
                                                        edits_, out, consumed);
    check();
    if (outcome == Outcome::Malformed) return client(msg);  // Sluice waits for more and retries
    // As client() counts a Bind.
    unsynced_ = true;
    SLUICE_FUZZ_CHECK(consumed <= prefix.size());
    if (outcome == Outcome::Forward) {
      send(whole);
      return true;
    }
    out.insert(out.end(), whole.begin() + static_cast<std::ptrdiff_t>(consumed), whole.end());
    send(ByteView(out));
    return true;
  }

  void define(const Buffer& parse) {
    note_name(ByteView(parse));
    note_marker(parse);
    const std::size_t before = mapper_.size();
    const bool defined = mapper_.define(ByteView(parse));
    SLUICE_FUZZ_CHECK(mapper_.size() == before + (defined ? 1 : 0));
    check();
  }

  void fail_next() { backend_.fail_next(); }

  void deliver(std::size_t n) {
    for (std::size_t i = 0; i < n && !backend_.idle(); ++i) answer(backend_.next());
  }

  // Ends the session's traffic with a Sync and delivers every answer: every group is answered.
  void finish() {
    client(simple_message('S'));
    deliver(SIZE_MAX);
    SLUICE_FUZZ_CHECK(edits_.empty());
    SLUICE_FUZZ_CHECK(outstanding_ == 0);
  }

 private:
  void note_name(ByteView parse) {
    if (const auto p = read_parse(parse)) names_.insert(std::string(p->statement));
  }

  // A client Parse's or Query's SQL that holds the marker's text.
  void note_marker(const Buffer& msg) {
    std::string_view sql;
    if (const auto p = read_parse(ByteView(msg))) sql = p->query;
    if (const auto q = read_query(ByteView(msg))) sql = *q;
    client_wrote_marker_ = client_wrote_marker_ || sql.find(kRefusalMarker) != sql.npos;
  }

  void send(ByteView bytes) {
    walk_frames(bytes, Direction::Frontend, 1u << 30,
                [this](ByteView msg) { backend_.receive(msg); });
    // Everything sent is whole messages: the walk consumed every byte.
    std::size_t total = 0;
    walk_frames(bytes, Direction::Frontend, 1u << 30, [&total](ByteView m) { total += m.size(); });
    SLUICE_FUZZ_CHECK(total == bytes.size());
  }

  void answer(const Answer& a) {
    std::vector<std::string> not_prepared;
    std::vector<std::string> not_defined;
    if (a.type == 'E') {
      const Buffer error = error_response(a.marker);
      const auto replaced = edits_.take_refusal(ByteView(error));
      // The backend reached the refused message (it skips nothing before it), so the client gets
      // Sluice's error instead.
      if (a.marker && !client_wrote_marker_) SLUICE_FUZZ_CHECK(replaced.has_value());
      if (replaced) SLUICE_FUZZ_CHECK(read_error_fields(ByteView(*replaced)).has_value());
    }
    if (a.type == '1' || a.type == '3') SLUICE_FUZZ_CHECK(!edits_.empty());
    const Edit edit = edits_.on_backend_message(a.type, not_prepared, not_defined);
    const std::uint32_t skipped = edits_.take_skipped_groups();
    SLUICE_FUZZ_CHECK(skipped <= outstanding_);
    outstanding_ -= skipped;
    if (a.type == 'Z' && edit == Edit::Keep) {  // else it answers a Sync of Sluice's own
      SLUICE_FUZZ_CHECK(outstanding_ > 0);
      --outstanding_;
    }
    for (const auto& name : not_prepared) cache_.erase(name);
    for (const auto& name : not_defined) mapper_.forget(name);
    if (a.type == '1') SLUICE_FUZZ_CHECK(edit == Edit::Keep || edit == Edit::Drop);
    if (a.type == '3') SLUICE_FUZZ_CHECK(edit != Edit::Refusal);
    if (a.type == 'E' || a.type == 'Z') {
      SLUICE_FUZZ_CHECK(edit == Edit::Keep || edit == Edit::Drop);
    } else if (a.type != '1' && a.type != '3') {
      SLUICE_FUZZ_CHECK(edit == Edit::Keep);
    }
    check();
  }

  void check() {
    std::size_t bytes = 0;
    std::size_t count = 0;
    for (const std::string& name : names_) {
      const StatementDef* def = mapper_.find(name);
      if (def == nullptr) continue;
      ++count;
      bytes += name.size() + def->body->size();
      SLUICE_FUZZ_CHECK(def->backend_name.rfind(kReservedPrefix, 0) == 0);
      const std::string_view owner = mapper_.client_name_of(def->backend_name);
      SLUICE_FUZZ_CHECK(mapper_.find(owner) != nullptr);
      SLUICE_FUZZ_CHECK(mapper_.find(owner)->backend_name == def->backend_name);
    }
    SLUICE_FUZZ_CHECK(count == mapper_.size());
    SLUICE_FUZZ_CHECK(bytes == mapper_.bytes());
    SLUICE_FUZZ_CHECK(mapper_.empty() == (mapper_.size() == 0));
    if (max_statements_ > 0) SLUICE_FUZZ_CHECK(mapper_.size() <= max_statements_);
    if (max_bytes_ > 0) SLUICE_FUZZ_CHECK(mapper_.bytes() <= max_bytes_);
    if (cache_.capacity() > 0) SLUICE_FUZZ_CHECK(cache_.size() <= cache_.capacity());
  }

  StatementMapper mapper_{fake_name};
  BackendStatementCache cache_;
  ResponseEdits edits_;
  Backend backend_;
  std::set<std::string> names_;       // every client statement name a Parse named
  bool unsynced_ = false;             // extended-protocol messages sent since the last Sync
  bool client_wrote_marker_ = false;  // a client message held kRefusalMarker's text
  std::uint64_t outstanding_ = 0;     // groups sent and not yet answered
  std::size_t max_statements_;
  std::size_t max_bytes_;
};

std::string_view pick_name(Input& in) { return kNames[in.byte() % kNames.size()]; }

std::string pick_query(Input& in) {
  const std::uint8_t b = in.byte();
  if (b < 0xe0) return std::string(kQueries[b % kQueries.size()]);
  return std::string(in.take(b & 0x1f));  // up to 31 bytes of the input as the query
}

Buffer parse_message(std::string_view name, std::string_view query, std::uint8_t types) {
  Buffer b;
  MessageWriter w(b);
  w.begin('P').add_cstring(name).add_cstring(query).add_u16(types);
  for (std::uint8_t i = 0; i < types; ++i) w.add_u32(23);
  w.finish();
  return b;
}

Buffer bind_message(std::string_view statement, std::uint8_t params) {
  Buffer b;
  MessageWriter w(b);
  w.begin('B').add_cstring("").add_cstring(statement).add_u16(0).add_u16(params);
  for (std::uint8_t i = 0; i < params; ++i) w.add_i32(4).add_bytes(std::string_view("abcd"));
  w.add_u16(0).finish();
  return b;
}

Buffer target_message(char type, char kind, std::string_view name) {
  Buffer b;
  MessageWriter(b).begin(type).add_u8(static_cast<std::uint8_t>(kind)).add_cstring(name).finish();
  return b;
}

}  // namespace
}  // namespace sluice::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::protocol;
  using namespace sluice::protocol::fuzz;
  Input in(data, size);
  const std::size_t max_statements = in.byte() % 5;
  const std::size_t max_bytes = std::size_t{in.byte()} * 2;
  const std::size_t capacity = in.byte() % 5;
  Session s(max_statements, max_bytes, capacity);
  for (int steps = 0; steps < 200 && !in.empty(); ++steps) {
    bool ok = true;
    switch (in.byte() % 14) {
      case 0: {
        const std::string_view name = pick_name(in);
        const std::string query = pick_query(in);
        ok = s.client(parse_message(name, query, in.byte() % 3));
        break;
      }
      case 1:
        ok = s.client(bind_message(pick_name(in), in.byte() % 3));
        break;
      case 2:
        ok = s.client(target_message('D', in.byte() % 2 ? 'S' : 'P', pick_name(in)));
        break;
      case 3:
        ok = s.client(target_message('C', in.byte() % 2 ? 'S' : 'P', pick_name(in)));
        break;
      case 4: {
        Buffer q;
        MessageWriter(q).begin('Q').add_cstring(pick_query(in)).finish();
        ok = s.client(q);
        break;
      }
      case 5:
        ok = s.client(simple_message('S'));
        break;
      case 6: {
        Buffer e;
        MessageWriter(e).begin('E').add_cstring("").add_u32(0).finish();
        ok = s.client(e);
        break;
      }
      case 7:
        ok = s.client(simple_message('H'));
        break;
      case 8:
        s.deliver(in.byte() % 8 + 1u);
        break;
      case 9:
        s.fail_next();
        break;
      case 10: {  // any body under a client type the mapper looks at
        constexpr std::string_view kTypes = "PBDCQE";
        const char type = kTypes[in.byte() % kTypes.size()];
        const std::string_view body = in.take(in.byte() % 40);
        Buffer raw;
        MessageWriter(raw).begin(type).add_bytes(body).finish();
        ok = s.client(raw);
        break;
      }
      case 11: {
        const std::string_view name = pick_name(in);
        const std::string query = pick_query(in);
        s.define(parse_message(name, query, in.byte() % 3));
        break;
      }
      case 12: {
        const Buffer bind = bind_message(pick_name(in), in.byte() % 4);
        ok = s.client_bind_prefix(bind, in.byte() % 24);
        break;
      }
      default:
        s.deliver(SIZE_MAX);
        break;
    }
    if (!ok) return 0;  // a protocol violation ends the session
  }
  s.finish();
  return 0;
}
