// What one client may do with prepared statements under transaction pooling (issue 12): its
// statements are bounded by count and bytes, it cannot reach Sluice's backend statements by
// their names, and a refusal reaches it in order, as the backend's own error would.
#include "tests/unit/protocol/wire_bytes.hpp"

#include "protocol/builders.hpp"
#include "protocol/messages.hpp"
#include "protocol/statements.hpp"

#include <catch2/catch.hpp>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::protocol {
namespace {

using test::Body;
using test::Bytes;
using test::message;
using test::view;
using Edit = ResponseEdits::Edit;
using Outcome = StatementMapper::Outcome;

constexpr auto fake_name = &test::fake_statement_name;

Bytes parse(std::string_view name, std::string_view query) {
  return message('P', Body().cstr(name).cstr(query).u16(0));
}
Bytes bind_statement(std::string_view statement) {
  return message('B', Body().cstr("").cstr(statement).u16(0).u16(0).u16(0));
}
Bytes describe(std::string_view statement) { return message('D', Body().u8('S').cstr(statement)); }

// The backend's ErrorResponse to the refused message Sluice sent in its place.
Buffer syntax_error_near_marker() {
  Buffer b;
  const std::string text = "syntax error at or near \"" + std::string(kRefusalMarker) + "\"";
  build_error_response(b, ErrorInfo{.sqlstate = "42601", .message = text});
  return b;
}

Buffer other_error() {
  Buffer b;
  build_error_response(b, ErrorInfo{.sqlstate = "22012", .message = "division by zero"});
  return b;
}

struct Fixture {
  StatementMapper mapper{fake_name};
  BackendStatementCache cache{0};
  ResponseEdits edits;
  Buffer out;
  Outcome rewrite(const Bytes& msg) {
    out.clear();
    return mapper.rewrite(view(msg), cache, edits, out);
  }
  // The SQLSTATE and message the client gets for the refused message, if it was refused.
  std::pair<std::string, std::string> refusal() {
    auto answer = edits.take_refusal(ByteView(syntax_error_near_marker()));
    if (!answer) return {};
    auto fields = read_error_fields(ByteView(*answer));
    REQUIRE(fields);
    return {std::string(fields->sqlstate()), std::string(fields->message())};
  }
};

bool sends_marker(const Buffer& out) {
  const std::string_view text(reinterpret_cast<const char*>(out.data()), out.size());
  return text.find(kRefusalMarker) != std::string_view::npos;
}

TEST_CASE("statements beyond the count limit are refused with 53400 naming the setting",
          "[protocol][limits]") {
  Fixture f;
  f.mapper.set_limits(3, 0);
  for (int i = 0; i < 3; ++i) {
    CHECK(f.rewrite(parse("s" + std::to_string(i), "SELECT " + std::to_string(i))) ==
          Outcome::Rewritten);
    CHECK_FALSE(sends_marker(f.out));
  }
  CHECK(f.mapper.size() == 3);
  f.edits.clear();  // the backend answered those
  CHECK(f.rewrite(parse("s3", "SELECT 3")) == Outcome::Rewritten);
  CHECK(sends_marker(f.out));
  CHECK(f.mapper.size() == 3);
  CHECK(f.mapper.find("s3") == nullptr);
  const auto [sqlstate, text] = f.refusal();
  CHECK(sqlstate == "53400");
  CHECK(text.find("max_client_statements (3)") != std::string::npos);

  SECTION("closing one makes room again") {
    f.edits.clear();
    CHECK(f.rewrite(message('C', Body().u8('S').cstr("s0"))) == Outcome::Rewritten);
    CHECK(f.rewrite(parse("s3", "SELECT 3")) == Outcome::Rewritten);
    CHECK_FALSE(sends_marker(f.out));
    CHECK(f.mapper.find("s3") != nullptr);
  }
  SECTION("a Parse without a backend is not recorded beyond the limit") {
    CHECK_FALSE(f.mapper.define(view(parse("s9", "SELECT 9"))));
  }
}

TEST_CASE("statements beyond the byte limit are refused; the bytes are counted exactly",
          "[protocol][limits]") {
  Fixture f;
  const std::string big(1000, 'x');
  f.mapper.set_limits(0, 2500);
  CHECK(f.rewrite(parse("a", "SELECT '" + big + "'")) == Outcome::Rewritten);
  CHECK(f.rewrite(parse("b", "SELECT '" + big + "'")) == Outcome::Rewritten);
  CHECK_FALSE(sends_marker(f.out));
  const std::size_t two = f.mapper.bytes();
  CHECK(two > 2000);
  f.edits.clear();
  CHECK(f.rewrite(parse("c", "SELECT '" + big + "'")) == Outcome::Rewritten);
  CHECK(sends_marker(f.out));
  CHECK(f.refusal().second.find("max_client_statement_bytes (2500") != std::string::npos);
  f.mapper.forget("a");
  CHECK(f.mapper.bytes() == two / 2);
  f.mapper.forget_all();
  CHECK(f.mapper.bytes() == 0);
  CHECK(f.mapper.empty());
}

TEST_CASE("a client cannot Bind or Describe a backend statement it did not define",
          "[protocol][limits]") {
  Fixture f;
  // Another client's statement is prepared on this backend.
  StatementMapper other(fake_name);
  Buffer scratch;
  REQUIRE(other.rewrite(view(parse("x", "SELECT 1")), f.cache, f.edits, scratch) ==
          Outcome::Rewritten);
  f.edits.clear();
  const std::string theirs = other.find("x")->backend_name;
  for (const Bytes& msg : std::vector<Bytes>{bind_statement(theirs), describe(theirs)}) {
    CHECK(f.rewrite(msg) == Outcome::Rewritten);
    CHECK(sends_marker(f.out));
    const auto [sqlstate, text] = f.refusal();
    CHECK(sqlstate == "26000");
    CHECK(text == "prepared statement \"" + theirs + "\" does not exist");
    f.edits.clear();
  }
  // Its own statement named like one of Sluice's works as any other name.
  CHECK(f.rewrite(parse("sluice_mine", "SELECT 2")) == Outcome::Rewritten);
  f.edits.clear();
  CHECK(f.rewrite(bind_statement("sluice_mine")) == Outcome::Rewritten);
  CHECK_FALSE(sends_marker(f.out));
  // Names outside the reserved prefix still go to the server, which says they do not exist.
  CHECK(f.rewrite(bind_statement("never_defined")) == Outcome::Forward);
}

TEST_CASE("a refusal replaces only the backend's error to the refused message",
          "[protocol][limits]") {
  ResponseEdits edits;
  Buffer out;
  edits.expect(Edit::Keep);  // an earlier Parse of the same group
  append_refusal(out, edits, false, ErrorInfo{.sqlstate = "53400", .message = "refused"});
  std::vector<std::string> np;
  std::vector<std::string> nd;

  SECTION("the earlier message succeeds: the marker's error is replaced") {
    CHECK(edits.on_backend_message('1', np, nd) == Edit::Keep);
    CHECK(edits.take_refusal(ByteView(syntax_error_near_marker())));
  }
  SECTION("the earlier message fails: its own error is kept, and the refusal is dropped") {
    CHECK_FALSE(edits.take_refusal(ByteView(other_error())));
    edits.on_backend_message('E', np, nd);
    edits.on_backend_message('Z', np, nd);
    CHECK(edits.empty());
  }
  SECTION("an error that is not the marker's is never replaced") {
    CHECK(edits.on_backend_message('1', np, nd) == Edit::Keep);
    CHECK_FALSE(edits.take_refusal(ByteView(other_error())));
  }
}

TEST_CASE("a refusal is a Parse or a Query the backend rejects", "[protocol][limits]") {
  ResponseEdits edits;
  Buffer parse_out;
  append_refusal(parse_out, edits, false, ErrorInfo{.sqlstate = "26000", .message = "x"});
  CHECK(parse_out == parse("", kRefusalMarker));
  Buffer query_out;
  append_refusal(query_out, edits, true, ErrorInfo{.sqlstate = "26000", .message = "x"});
  CHECK(query_out == message('Q', Body().cstr(kRefusalMarker)));
  CHECK(is_reserved_statement_name("sluice_abc"));
  CHECK_FALSE(is_reserved_statement_name("SLUICE_abc"));  // protocol names are case-sensitive
  CHECK_FALSE(is_reserved_statement_name("s1"));
}

}  // namespace
}  // namespace sluice::protocol
