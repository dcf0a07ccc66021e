// A Query or FunctionCall inside a series of extended-protocol messages (before their Sync): after
// an error in those messages PostgreSQL skips it, and it gets no ReadyForQuery
// (protocol::append_series_marker). ResponseEdits must count exactly the ReadyForQuery messages
// that come.
#include "protocol/builders.hpp"
#include "protocol/statements.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

namespace sluice::protocol {
namespace {

using Edit = ResponseEdits::Edit;

struct Backend {
  ResponseEdits edits;
  std::vector<std::string> not_prepared;
  std::vector<std::string> not_defined;
  std::uint32_t skipped = 0;

  Edit answer(char type) {
    const Edit e = edits.on_backend_message(type, not_prepared, not_defined);
    skipped += edits.take_skipped_groups();
    return e;
  }
  // The client's Query inside the series, with the marker the relay puts before it.
  void query() {
    Buffer out;
    append_series_marker(out, edits);
    edits.group_sent();
  }
};

TEST_CASE("the marker is a Close of the no-op statement, dropped when it is answered") {
  Backend b;
  Buffer out;
  append_series_marker(out, b.edits);
  REQUIRE(out.size() == 1 + 4 + 1 + kNoopStatement.size() + 1);
  CHECK(static_cast<char>(out[0]) == 'C');
  CHECK(static_cast<char>(out[5]) == 'S');
  CHECK(b.answer('3') == Edit::Drop);
  CHECK(b.edits.empty());
}

TEST_CASE("after an error before the Query, only the Sync gets a ReadyForQuery") {
  Backend b;
  b.edits.expect(Edit::Keep, "sluice_1", "s1");  // the client's Parse, which fails
  b.query();
  b.edits.group_sent();  // Sync
  CHECK(b.answer('E') == Edit::Keep);
  CHECK(b.skipped == 1);  // the Query's group
  CHECK(b.not_defined == std::vector<std::string>{"s1"});
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 1);
  CHECK(b.edits.empty());
}

TEST_CASE("without an error the Query and the Sync each get a ReadyForQuery") {
  Backend b;
  b.edits.expect(Edit::Keep, "sluice_1", "s1");
  b.query();
  b.edits.group_sent();
  CHECK(b.answer('1') == Edit::Keep);
  CHECK(b.answer('3') == Edit::Drop);  // the marker's CloseComplete
  CHECK(b.answer('C') == Edit::Keep);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 0);
  CHECK(b.edits.empty());
}

TEST_CASE("the Query's own error is answered by its ReadyForQuery") {
  Backend b;
  b.edits.expect(Edit::Keep);
  b.query();
  b.edits.group_sent();
  CHECK(b.answer('1') == Edit::Keep);
  CHECK(b.answer('3') == Edit::Drop);
  CHECK(b.answer('E') == Edit::Keep);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 0);
  CHECK(b.edits.empty());
}

TEST_CASE("every Query up to the Sync is skipped, also those sent after the error arrived") {
  Backend b;
  b.edits.expect(Edit::Keep);
  b.query();
  CHECK(b.answer('E') == Edit::Keep);
  CHECK(b.skipped == 1);
  b.query();                                     // sent while the backend skips
  b.edits.expect(Edit::Keep, "sluice_2", "s2");  // a Parse it skips too
  b.edits.group_sent();                          // Sync
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 2);
  CHECK(b.not_defined == std::vector<std::string>{"s2"});
  CHECK(b.edits.empty());
  // And the next group is counted as usual.
  b.edits.expect(Edit::Drop);
  b.edits.group_sent();
  CHECK(b.answer('1') == Edit::Drop);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 2);
}

TEST_CASE("a Query sent after the series' error already arrived is skipped too") {
  // Bind (fails) and Flush: the client reads the error, then sends a Query and a Sync.
  Backend b;
  b.edits.expect(Edit::Keep, "sluice_1", "s1");
  CHECK(b.answer('E') == Edit::Keep);
  CHECK(b.not_defined == std::vector<std::string>{"s1"});
  CHECK(b.skipped == 0);
  b.query();
  b.edits.group_sent();  // Sync
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 1);  // the Query's group: its ReadyForQuery never comes
  CHECK(b.edits.empty());
  // And the next group is counted as usual.
  b.edits.expect(Edit::Drop);
  b.edits.group_sent();
  CHECK(b.answer('1') == Edit::Drop);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 1);
  CHECK(b.edits.empty());
}

TEST_CASE("a DEALLOCATE whose Parse fails inside an open series is counted as skipped") {
  // Sluice prepares the statement ahead of the DEALLOCATE (this backend lacks it); in an aborted
  // transaction that Parse fails after the client's marker was answered.
  StatementMapper mapper([](std::string_view body) {
    return "sluice_" + std::to_string(std::hash<std::string_view>{}(body));
  });
  BackendStatementCache elsewhere(4);
  BackendStatementCache here(4);
  Backend b;
  Buffer parse;
  MessageWriter(parse).begin('P').add_cstring("s").add_cstring("SELECT 1").add_u16(0).finish();
  Buffer out;
  REQUIRE(mapper.rewrite(ByteView(parse), elsewhere, b.edits, out) ==
          StatementMapper::Outcome::Rewritten);
  b.edits.clear();
  b.edits.expect(Edit::Keep);  // the client's Bind ... of the open series, say
  out.clear();
  append_series_marker(out, b.edits);  // the relay's, before the client's Query
  Buffer query;
  MessageWriter(query).begin('Q').add_cstring("DEALLOCATE s").finish();
  REQUIRE(mapper.rewrite(ByteView(query), here, b.edits, out) ==
          StatementMapper::Outcome::Rewritten);
  b.edits.group_sent();  // the Query
  b.edits.group_sent();  // the client's Sync
  CHECK(b.answer('1') == Edit::Keep);
  CHECK(b.answer('3') == Edit::Drop);  // the client's marker
  CHECK(b.answer('3') == Edit::Drop);  // Sluice's Close ahead of its Parse
  CHECK(b.answer('E') == Edit::Keep);  // its Parse fails: the backend skips to the Sync
  CHECK(b.skipped == 1);
  CHECK(b.answer('Z') == Edit::Keep);
  CHECK(b.skipped == 1);
  CHECK(b.edits.empty());
}

}  // namespace
}  // namespace sluice::protocol
