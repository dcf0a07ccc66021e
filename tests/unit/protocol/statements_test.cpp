#include "protocol/statements.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include "protocol/builders.hpp"
#include "protocol/messages.hpp"

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace sluice::protocol {
namespace {

using namespace std::string_view_literals;
using test::Body;
using test::Bytes;
using test::concat;
using test::message;
using test::view;
using Edit = ResponseEdits::Edit;
using Outcome = StatementMapper::Outcome;

constexpr auto fake_name = &test::fake_statement_name;

// ---- client messages, written with MessageWriter ----

Bytes parse(std::string_view name, std::string_view query,
            const std::vector<std::uint32_t>& types = {}) {
  Buffer b;
  MessageWriter w(b);
  w.begin('P').add_cstring(name).add_cstring(query).add_u16(
      static_cast<std::uint16_t>(types.size()));
  for (std::uint32_t t : types) w.add_u32(t);
  w.finish();
  return b;
}

Bytes bind(std::string_view portal, std::string_view statement,
           const std::vector<std::string>& params = {}) {
  Buffer b;
  MessageWriter w(b);
  w.begin('B').add_cstring(portal).add_cstring(statement).add_u16(0).add_u16(
      static_cast<std::uint16_t>(params.size()));
  for (const std::string& p : params) {
    w.add_u32(static_cast<std::uint32_t>(p.size())).add_bytes(p);
  }
  w.add_u16(0).finish();
  return b;
}

Bytes describe(char kind, std::string_view name) {
  Buffer b;
  MessageWriter(b).begin('D').add_u8(static_cast<std::uint8_t>(kind)).add_cstring(name).finish();
  return b;
}

Bytes close(char kind, std::string_view name) {
  Buffer b;
  MessageWriter(b).begin('C').add_u8(static_cast<std::uint8_t>(kind)).add_cstring(name).finish();
  return b;
}

Bytes execute(std::string_view portal = "") {
  Buffer b;
  MessageWriter(b).begin('E').add_cstring(portal).add_u32(0).finish();
  return b;
}

Bytes sync() {
  Buffer b;
  build_sync(b);
  return b;
}

Bytes query(std::string_view sql) {
  Buffer b;
  build_query(b, sql);
  return b;
}

// ---- expected bytes, spelled out independently of the builders ----

// A definition as the mapper keys it: the Parse body after the name.
std::string definition(std::string_view query, const std::vector<std::uint32_t>& types = {}) {
  Body body;
  body.cstr(query).u16(static_cast<std::uint16_t>(types.size()));
  for (std::uint32_t t : types) body.u32(t);
  return test::text(body.bytes());
}

std::string backend_name(std::string_view query, const std::vector<std::uint32_t>& types = {}) {
  return fake_name(definition(query, types));
}

Bytes close_statement_bytes(std::string_view name) {
  return message('C', Body().u8('S').cstr(name));
}

Bytes parse_bytes(std::string_view name, std::string_view query) {
  return message('P', Body().cstr(name).cstr(query).u16(0));
}

Bytes query_bytes(std::string_view sql) { return message('Q', Body().cstr(sql)); }

// The edits the backend's answers to `types` get, in order.
std::vector<Edit> answer(ResponseEdits& edits, std::string_view types,
                         std::vector<std::string>* not_prepared = nullptr) {
  std::vector<Edit> out;
  std::vector<std::string> np;
  std::vector<std::string> nd;
  for (char t : types) out.push_back(edits.on_backend_message(t, np, nd));
  if (not_prepared != nullptr) *not_prepared = std::move(np);
  return out;
}

Outcome rewrite(StatementMapper& m, const Bytes& msg, BackendStatementCache& cache,
                ResponseEdits& edits, Buffer& out) {
  out.clear();
  return m.rewrite(view(msg), cache, edits, out);
}

// ---- BackendStatementCache ----

std::shared_ptr<const std::string> body_of(std::string_view s) {
  return std::make_shared<const std::string>(s);
}

TEST_CASE("the statement cache evicts the least recently used names", "[protocol]") {
  BackendStatementCache cache(2);
  std::vector<std::string> evicted;
  cache.add("a", body_of("A"), evicted);
  cache.add("b", body_of("B"), evicted);
  CHECK(evicted.empty());
  REQUIRE(cache.find("a") != nullptr);  // a is now the most recently used
  CHECK(*cache.find("a") == "A");
  cache.add("c", body_of("C"), evicted);
  CHECK(evicted == std::vector<std::string>{"b"});
  CHECK(cache.find("b") == nullptr);
  CHECK(cache.size() == 2);

  SECTION("re-adding a name updates it without evicting") {
    evicted.clear();
    cache.add("a", body_of("A2"), evicted);
    CHECK(evicted.empty());
    CHECK(*cache.find("a") == "A2");
  }
  SECTION("a lower capacity applies from the next add") {
    cache.set_capacity(1);
    CHECK(cache.size() == 2);
    evicted.clear();
    cache.add("d", body_of("D"), evicted);
    CHECK(evicted == std::vector<std::string>{"a", "c"});  // least recently used first
    CHECK(cache.size() == 1);
  }
  SECTION("erase and clear forget names") {
    cache.erase("a");
    cache.erase("missing");
    CHECK(cache.find("a") == nullptr);
    CHECK(cache.size() == 1);
    cache.clear();
    CHECK(cache.size() == 0);
    CHECK(cache.find("c") == nullptr);
  }
}

TEST_CASE("a statement cache of capacity 0 is unbounded", "[protocol]") {
  BackendStatementCache cache(0);
  std::vector<std::string> evicted;
  for (int i = 0; i < 100; ++i) cache.add(std::to_string(i), body_of("x"), evicted);
  CHECK(evicted.empty());
  CHECK(cache.size() == 100);
}

// ---- StatementMapper: Parse ----

TEST_CASE("a Parse on a backend lacking the statement is sent under the backend name",
          "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  const std::string x = backend_name("SELECT 1");
  // A Close of the name first (a no-op unless the backend still holds it), then the Parse.
  CHECK(out == concat({close_statement_bytes(x), parse_bytes(x, "SELECT 1")}));
  REQUIRE(m.find("S") != nullptr);
  CHECK(m.find("S")->backend_name == x);
  CHECK(*m.find("S")->body == definition("SELECT 1"));
  CHECK(m.size() == 1);
  REQUIRE(cache.find(x) != nullptr);
  CHECK(*cache.find(x) == definition("SELECT 1"));
  // The client sees the ParseComplete, not the CloseComplete.
  CHECK(answer(edits, "31") == std::vector<Edit>{Edit::Drop, Edit::Keep});
  CHECK(edits.empty());
}

TEST_CASE("parameter types are part of a definition", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("a", "SELECT $1"), cache, edits, out) == Outcome::Rewritten);
  REQUIRE(rewrite(m, parse("b", "SELECT $1", {23}), cache, edits, out) == Outcome::Rewritten);
  const std::string xb = backend_name("SELECT $1", {23});
  CHECK(m.find("a")->backend_name != m.find("b")->backend_name);
  CHECK(m.find("b")->backend_name == xb);
  CHECK(out == concat({close_statement_bytes(xb),
                       message('P', Body().cstr(xb).cstr("SELECT $1").u16(1).u32(23))}));
  CHECK(cache.size() == 2);
}

TEST_CASE("the same definition from another client on the same backend is a no-op Close",
          "[protocol]") {
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  StatementMapper first(fake_name);
  StatementMapper second(fake_name);
  REQUIRE(rewrite(first, parse("S", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  REQUIRE(rewrite(second, parse("T", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  CHECK(out == close_statement_bytes("sluice_noop"));
  CHECK(second.find("T")->backend_name == first.find("S")->backend_name);
  CHECK(cache.size() == 1);
  // first: Close (dropped), Parse (kept); second: the no-op Close, retyped to ParseComplete.
  CHECK(answer(edits, "313") == std::vector<Edit>{Edit::Drop, Edit::Keep, Edit::AsParseComplete});
  CHECK(edits.empty());

  SECTION("the same client re-parsing the same definition under a new name too") {
    REQUIRE(rewrite(first, parse("S2", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
    CHECK(out == close_statement_bytes("sluice_noop"));
    CHECK(answer(edits, "3") == std::vector<Edit>{Edit::AsParseComplete});
  }
}

TEST_CASE("an unnamed Parse is forwarded with its response kept", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  CHECK(rewrite(m, parse("", "SELECT 1"), cache, edits, out) == Outcome::Forward);
  CHECK(out.empty());
  CHECK(m.empty());
  CHECK(cache.size() == 0);
  CHECK_FALSE(edits.empty());
  CHECK(answer(edits, "1") == std::vector<Edit>{Edit::Keep});
  CHECK(edits.empty());
}

// ---- StatementMapper: Bind and Describe ----

TEST_CASE("a Bind of a statement the backend lacks injects its Parse first", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache first_backend(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT $1"), first_backend, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  const std::string x = backend_name("SELECT $1");

  // The client is now attached to another backend.
  BackendStatementCache other(10);
  REQUIRE(rewrite(m, bind("p", "S", {"42"}), other, edits, out) == Outcome::Rewritten);
  const Bytes rewritten_bind =
      message('B', Body().cstr("p").cstr(x).u16(0).u16(1).u32(2).str("42").u16(0));
  CHECK(out == concat({close_statement_bytes(x), parse_bytes(x, "SELECT $1"), rewritten_bind}));
  REQUIRE(other.find(x) != nullptr);
  // Only BindComplete reaches the client.
  CHECK(answer(edits, "312") == std::vector<Edit>{Edit::Drop, Edit::Drop, Edit::Keep});
  CHECK(edits.empty());

  SECTION("once prepared there, only the Bind is rewritten") {
    REQUIRE(rewrite(m, bind("p", "S", {"42"}), other, edits, out) == Outcome::Rewritten);
    CHECK(out == rewritten_bind);
    CHECK(edits.empty());
  }
  SECTION("the backend it was parsed on needs no Parse either") {
    REQUIRE(rewrite(m, bind("p", "S", {"42"}), first_backend, edits, out) == Outcome::Rewritten);
    CHECK(out == rewritten_bind);
  }
}

TEST_CASE("a ParseComplete names the backend statement it confirms, once", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  const std::string x = backend_name("SELECT $1");
  REQUIRE(rewrite(m, parse("S", "SELECT $1"), cache, edits, out) == Outcome::Rewritten);
  CHECK(answer(edits, "3") == std::vector<Edit>{Edit::Drop});  // the Close ahead of the Parse
  CHECK(edits.take_confirmed().empty());
  CHECK(answer(edits, "1") == std::vector<Edit>{Edit::Keep});
  CHECK(edits.take_confirmed() == x);
  CHECK(edits.take_confirmed().empty());

  SECTION("a Parse Sluice sends ahead of a Bind confirms too") {
    BackendStatementCache other(10);
    REQUIRE(rewrite(m, bind("p", "S", {"1"}), other, edits, out) == Outcome::Rewritten);
    answer(edits, "31");
    CHECK(edits.take_confirmed() == x);
  }
  SECTION("a Parse that fails confirms nothing") {
    BackendStatementCache other(10);
    REQUIRE(rewrite(m, parse("T", "SELECT nope"), other, edits, out) == Outcome::Rewritten);
    edits.group_sent();
    answer(edits, "3EZ");
    CHECK(edits.take_confirmed().empty());
  }
  SECTION("an unnamed Parse confirms nothing") {
    REQUIRE(rewrite(m, parse("", "SELECT 2"), cache, edits, out) == Outcome::Forward);
    answer(edits, "1");
    CHECK(edits.take_confirmed().empty());
  }
}

TEST_CASE("a Describe of a statement the backend lacks injects its Parse first", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache first_backend(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT 1"), first_backend, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  const std::string x = backend_name("SELECT 1");

  BackendStatementCache other(10);
  REQUIRE(rewrite(m, describe('S', "S"), other, edits, out) == Outcome::Rewritten);
  CHECK(out == concat({close_statement_bytes(x), parse_bytes(x, "SELECT 1"),
                       message('D', Body().u8('S').cstr(x))}));
  CHECK(answer(edits, "31tn") == std::vector<Edit>{Edit::Drop, Edit::Drop, Edit::Keep, Edit::Keep});

  REQUIRE(rewrite(m, describe('S', "S"), other, edits, out) == Outcome::Rewritten);
  CHECK(out == message('D', Body().u8('S').cstr(x)));
}

TEST_CASE("a statement defined without a backend is prepared by its first Bind", "[protocol]") {
  StatementMapper m(fake_name);
  const Bytes p = parse("S", "SELECT $1", {kOidInt4});
  REQUIRE(m.define(view(p)));
  const std::string x = backend_name("SELECT $1", {kOidInt4});
  REQUIRE(m.find("S") != nullptr);
  CHECK(m.find("S")->backend_name == x);
  CHECK(m.client_name_of(x) == "S");

  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, bind("", "S", {"7"}), cache, edits, out) == Outcome::Rewritten);
  CHECK(out ==
        concat({close_statement_bytes(x),
                message('P', Body().cstr(x).cstr("SELECT $1").u16(1).u32(kOidInt4)),
                message('B', Body().cstr("").cstr(x).u16(0).u16(1).u32(1).str("7").u16(0))}));
  CHECK(cache.find(x) != nullptr);
  CHECK(answer(edits, "312") == std::vector<Edit>{Edit::Drop, Edit::Drop, Edit::Keep});

  SECTION("a name already defined, an unnamed or a malformed Parse defines nothing") {
    CHECK_FALSE(m.define(view(parse("S", "SELECT 2"))));
    CHECK(m.find("S")->backend_name == x);
    CHECK_FALSE(m.define(view(parse("", "SELECT 2"))));
    Bytes cut = parse("T", "SELECT 2");
    cut.resize(cut.size() - 1);
    CHECK_FALSE(m.define(view(cut)));
    CHECK(m.find("T") == nullptr);
    CHECK(m.size() == 1);
  }
  SECTION("closing it forgets it") {
    REQUIRE(rewrite(m, close('S', "S"), cache, edits, out) == Outcome::Rewritten);
    CHECK(m.find("S") == nullptr);
  }
}

TEST_CASE("Bind and Describe of unknown, unnamed or portal targets are forwarded", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  BackendStatementCache other(10);
  const Bytes msg = GENERATE(bind("", "unknown"), bind("", ""), bind("S", ""), describe('S', ""),
                             describe('S', "unknown"), describe('P', "S"), execute("S"), sync(),
                             query("SELECT 1"));
  CHECK(rewrite(m, msg, other, edits, out) == Outcome::Forward);
  CHECK(out.empty());
  CHECK(edits.empty());
  CHECK(other.size() == 0);
}

// ---- StatementMapper: Close ----

TEST_CASE("closing a statement forgets the client name and answers with a no-op Close",
          "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  const std::string x = backend_name("SELECT 1");

  const std::string name = GENERATE("S", "never_parsed");
  REQUIRE(rewrite(m, close('S', name), cache, edits, out) == Outcome::Rewritten);
  CHECK(out == close_statement_bytes("sluice_noop"));
  CHECK(answer(edits, "3") == std::vector<Edit>{Edit::Keep});
  CHECK(edits.empty());
  CHECK(m.find(name) == nullptr);
  // The backend statement may serve other clients: it stays prepared.
  CHECK(cache.find(x) != nullptr);
  if (name == "S") {
    CHECK(m.empty());
    CHECK(rewrite(m, bind("", "S"), cache, edits, out) == Outcome::Forward);
  }
}

TEST_CASE("closing a portal or the unnamed statement is forwarded with its response kept",
          "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  const Bytes msg = GENERATE(close('P', "portal"), close('P', ""), close('S', ""));
  CHECK(rewrite(m, msg, cache, edits, out) == Outcome::Forward);
  CHECK(out.empty());
  CHECK(answer(edits, "3") == std::vector<Edit>{Edit::Keep});
  CHECK(edits.empty());
}

// ---- StatementMapper: DEALLOCATE and DISCARD ----

TEST_CASE("DEALLOCATE of a client statement becomes DEALLOCATE of its backend name", "[protocol]") {
  using Row = std::tuple<std::string, std::string>;
  const auto [client_name, sql] = GENERATE(
      Row{"s", "DEALLOCATE s"}, Row{"s", "deallocate prepare s"}, Row{"s", "  DEALLOCATE s ; "},
      Row{"mixedcase", "DEALLOCATE MixedCase"},  // unquoted names fold to lower case
      Row{"Quoted", "DEALLOCATE PREPARE \"Quoted\""}, Row{"a\"b", "DEALLOCATE \"a\"\"b\""},
      Row{"with space", "DEALLOCATE \"with space\""}, Row{"s$1", "DEALLOCATE s$1"});
  CAPTURE(sql);
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse(client_name, "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  REQUIRE(rewrite(m, parse("other", "SELECT 2"), cache, edits, out) == Outcome::Rewritten);
  const std::string x = backend_name("SELECT 1");

  REQUIRE(rewrite(m, query(sql), cache, edits, out) == Outcome::Rewritten);
  CHECK(out == query_bytes("DEALLOCATE " + x));
  CHECK(m.find(client_name) == nullptr);
  CHECK(m.find("other") != nullptr);
  CHECK(cache.find(x) == nullptr);
  CHECK(cache.size() == 1);
}

TEST_CASE("DEALLOCATE of a statement not on this backend prepares it there first", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache first_backend(10);
  BackendStatementCache other(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("s", "SELECT 1"), first_backend, edits, out) == Outcome::Rewritten);
  REQUIRE(rewrite(m, parse("t", "SELECT 2"), other, edits, out) == Outcome::Rewritten);
  out.clear();
  edits.clear();
  REQUIRE(rewrite(m, query("DEALLOCATE s"), other, edits, out) == Outcome::Rewritten);
  // Close and Parse of the statement (their answers dropped), then DEALLOCATE of it: the client
  // gets the DEALLOCATE tag, and other clients' statements on this backend stay.
  const std::string x = backend_name("SELECT 1");
  const Bytes tail = query_bytes("DEALLOCATE " + x);
  REQUIRE(out.size() > tail.size());
  CHECK(Bytes(out.end() - static_cast<std::ptrdiff_t>(tail.size()), out.end()) == tail);
  CHECK(static_cast<char>(out[0]) == 'C');
  CHECK(answer(edits, "31") == std::vector<Edit>{Edit::Drop, Edit::Drop});
  CHECK(other.size() == 1);
  CHECK(other.find(x) == nullptr);
  CHECK(m.find("s") == nullptr);
  CHECK(m.find("t") != nullptr);
}

TEST_CASE("DEALLOCATE ALL and DISCARD ALL forget every statement", "[protocol]") {
  const std::string sql = GENERATE("DEALLOCATE ALL", "deallocate prepare all", "DEALLOCATE ALL;",
                                   "DISCARD ALL", "discard all ;");
  CAPTURE(sql);
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("s", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  REQUIRE(rewrite(m, parse("t", "SELECT 2"), cache, edits, out) == Outcome::Rewritten);
  CHECK(rewrite(m, query(sql), cache, edits, out) == Outcome::Forward);
  CHECK(out.empty());
  CHECK(m.empty());
  CHECK(cache.size() == 0);
}

TEST_CASE("other queries leave statements alone", "[protocol]") {
  const std::string sql =
      GENERATE("DEALLOCATE unknown", "DEALLOCATE \"S\"", "DEALLOCATE", "DEALLOCATE s t",
               "DEALLOCATE s; SELECT 1", "DEALLOCATE 's'", "DISCARD PLANS", "DISCARD ALL x",
               "SELECT 1", "", "DEALLOCATE \"s");
  CAPTURE(sql);
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("s", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  CHECK(rewrite(m, query(sql), cache, edits, out) == Outcome::Forward);
  CHECK(out.empty());
  CHECK(m.size() == 1);
  CHECK(cache.size() == 1);
}

// ---- StatementMapper: eviction ----

TEST_CASE("at capacity the least recently used statement is closed before the new Parse",
          "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(2);
  ResponseEdits edits;
  Buffer out;
  const std::string xa = backend_name("SELECT 'a'");
  const std::string xb = backend_name("SELECT 'b'");
  const std::string xc = backend_name("SELECT 'c'");
  REQUIRE(rewrite(m, parse("a", "SELECT 'a'"), cache, edits, out) == Outcome::Rewritten);
  REQUIRE(rewrite(m, parse("b", "SELECT 'b'"), cache, edits, out) == Outcome::Rewritten);
  answer(edits, "3131");
  // Using a makes b the least recently used.
  REQUIRE(rewrite(m, bind("", "a"), cache, edits, out) == Outcome::Rewritten);
  CHECK(out == message('B', Body().cstr("").cstr(xa).u16(0).u16(0).u16(0)));

  REQUIRE(rewrite(m, parse("c", "SELECT 'c'"), cache, edits, out) == Outcome::Rewritten);
  CHECK(out == concat({close_statement_bytes(xb), close_statement_bytes(xc),
                       parse_bytes(xc, "SELECT 'c'")}));
  CHECK(answer(edits, "331") == std::vector<Edit>{Edit::Drop, Edit::Drop, Edit::Keep});
  CHECK(cache.size() == 2);
  CHECK(cache.find(xb) == nullptr);
  CHECK(m.find("b") != nullptr);  // the client still has it

  // The next use of b prepares it again, evicting a (c was used last).
  REQUIRE(rewrite(m, bind("", "b"), cache, edits, out) == Outcome::Rewritten);
  CHECK(out ==
        concat({close_statement_bytes(xa), close_statement_bytes(xb), parse_bytes(xb, "SELECT 'b'"),
                message('B', Body().cstr("").cstr(xb).u16(0).u16(0).u16(0))}));
  CHECK(answer(edits, "3312") == std::vector<Edit>{Edit::Drop, Edit::Drop, Edit::Drop, Edit::Keep});
  CHECK(edits.empty());
  CHECK(cache.find(xa) == nullptr);
  CHECK(cache.find(xb) != nullptr);
  CHECK(cache.find(xc) != nullptr);
}

// ---- ResponseEdits ----

TEST_CASE("an error drops the rest of its group's edits and no other group's", "[protocol]") {
  ResponseEdits edits;
  // group 0: Parse a (kept), injected Parse b (dropped); Sync
  edits.expect(Edit::Keep, "a");
  edits.expect(Edit::Drop, "b");
  edits.group_sent();
  // group 1: Parse c (kept), eviction Close (dropped), Parse d (kept), no-op Close; Sync
  edits.expect(Edit::Keep, "c");
  edits.expect(Edit::Drop);
  edits.expect(Edit::Keep, "d");
  edits.expect(Edit::AsParseComplete);
  edits.group_sent();
  // group 2: injected Parse e (dropped), client Close (kept); Sync
  edits.expect(Edit::Drop, "e");
  edits.expect(Edit::Keep);
  edits.group_sent();

  std::vector<std::string> not_prepared;
  CHECK(answer(edits, "11Z", &not_prepared) ==
        std::vector<Edit>{Edit::Keep, Edit::Drop, Edit::Keep});
  CHECK(not_prepared.empty());
  // Group 1: c completes, then an error: the backend skips the rest of the group.
  CHECK(answer(edits, "1E", &not_prepared) == std::vector<Edit>{Edit::Keep, Edit::Keep});
  CHECK(not_prepared == std::vector<std::string>{"d"});
  CHECK_FALSE(edits.empty());
  CHECK(answer(edits, "Z", &not_prepared) == std::vector<Edit>{Edit::Keep});
  CHECK(not_prepared.empty());
  // Group 2 is intact.
  CHECK(answer(edits, "13Z") == std::vector<Edit>{Edit::Drop, Edit::Keep, Edit::Keep});
  CHECK(edits.empty());
}

TEST_CASE("an error on a group's first message reports all its Parses as not prepared",
          "[protocol]") {
  ResponseEdits edits;
  edits.expect(Edit::Drop);  // eviction Close
  edits.expect(Edit::Drop, "injected");
  edits.expect(Edit::Keep, "client");
  edits.group_sent();
  edits.expect(Edit::Keep, "next");
  edits.group_sent();
  std::vector<std::string> not_prepared;
  CHECK(answer(edits, "E", &not_prepared) == std::vector<Edit>{Edit::Keep});
  CHECK(not_prepared == std::vector<std::string>{"injected", "client"});
  CHECK(answer(edits, "Z1Z", &not_prepared) ==
        std::vector<Edit>{Edit::Keep, Edit::Keep, Edit::Keep});
  CHECK(not_prepared.empty());
  CHECK(edits.empty());
}

TEST_CASE("an error inside a simple-Query group drops nothing", "[protocol]") {
  ResponseEdits edits;
  edits.expect(Edit::Keep, "a");
  edits.group_sent();  // Sync
  edits.group_sent();  // Query
  edits.expect(Edit::Drop, "b");
  edits.group_sent();  // Sync
  std::vector<std::string> not_prepared;
  CHECK(answer(edits, "1Z") == std::vector<Edit>{Edit::Keep, Edit::Keep});
  CHECK(answer(edits, "E", &not_prepared) == std::vector<Edit>{Edit::Keep});
  CHECK(not_prepared.empty());
  CHECK(answer(edits, "Z1Z") == std::vector<Edit>{Edit::Keep, Edit::Drop, Edit::Keep});
  CHECK(edits.empty());

  SECTION("a Parse before the Query has completed by the time the Query fails") {
    edits.expect(Edit::Keep, "p");
    edits.group_sent();  // Query, no Sync before it
    CHECK(answer(edits, "1E", &not_prepared) == std::vector<Edit>{Edit::Keep, Edit::Keep});
    CHECK(not_prepared.empty());
    CHECK(answer(edits, "Z") == std::vector<Edit>{Edit::Keep});
    CHECK(edits.empty());
  }
}

TEST_CASE("responses nobody expects are kept", "[protocol]") {
  ResponseEdits edits;
  CHECK(answer(edits, "13E2CZtnsIN") == std::vector<Edit>(11, Edit::Keep));
  CHECK(edits.empty());
}

TEST_CASE("clearing the edits restarts the group count", "[protocol]") {
  ResponseEdits edits;
  edits.expect(Edit::Drop, "old");
  edits.group_sent();
  edits.group_sent();
  answer(edits, "Z");
  edits.clear();
  CHECK(edits.empty());
  edits.expect(Edit::Keep, "new");
  edits.group_sent();
  std::vector<std::string> not_prepared;
  CHECK(answer(edits, "E", &not_prepared) == std::vector<Edit>{Edit::Keep});
  CHECK(not_prepared == std::vector<std::string>{"new"});
}

// ---- StatementMapper: a Bind too long to buffer ----

TEST_CASE("a long Bind is rewritten by its prefix", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache first_backend(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT $1"), first_backend, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  const std::string x = backend_name("SELECT $1");
  const Bytes full = bind("p", "S", {std::string(100000, 'v')});
  const std::uint32_t total = read_u32(full.data() + 1);
  REQUIRE(total == full.size() - 1);

  BackendStatementCache other(10);
  std::size_t consumed = 12345;
  out.clear();
  REQUIRE(m.rewrite_bind_prefix(ByteView(full.data(), 40), total, other, edits, out, consumed) ==
          Outcome::Rewritten);
  CHECK(consumed == 9);  // 'B', length, "p\0", "S\0"
  // The name grows from "S" to x: the new length field says so.
  const std::uint32_t new_length = total - 1 + static_cast<std::uint32_t>(x.size());
  CHECK(out == concat({close_statement_bytes(x), parse_bytes(x, "SELECT $1"),
                       Body().u8('B').u32(new_length).cstr("p").cstr(x).bytes()}));
  CHECK(answer(edits, "312") == std::vector<Edit>{Edit::Drop, Edit::Drop, Edit::Keep});

  // The new prefix then the rest of the message as it came is what a whole rewrite gives.
  Bytes spliced(out.begin(), out.end());
  spliced.insert(spliced.end(), full.begin() + static_cast<std::ptrdiff_t>(consumed), full.end());
  BackendStatementCache third(10);
  ResponseEdits third_edits;
  Buffer whole;
  REQUIRE(m.rewrite(view(full), third, third_edits, whole) == Outcome::Rewritten);
  CHECK(spliced == Bytes(whole.begin(), whole.end()));
  const std::size_t bind_at = spliced.size() - (std::size_t{new_length} + 1);
  const auto names = read_bind_names(ByteView(spliced.data() + bind_at, new_length + 1));
  REQUIRE(names.has_value());
  CHECK(names->statement == x);

  SECTION("on a backend that has it, only the Bind prefix is replaced") {
    out.clear();
    REQUIRE(m.rewrite_bind_prefix(ByteView(full.data(), 9), total, other, edits, out, consumed) ==
            Outcome::Rewritten);
    CHECK(out == Body().u8('B').u32(new_length).cstr("p").cstr(x).bytes());
    CHECK(edits.empty());
  }
}

TEST_CASE("a long Bind prefix that cannot be rewritten is left alone", "[protocol]") {
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("S", "SELECT $1"), cache, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  out.clear();
  BackendStatementCache other(10);
  const std::string big(1000, 'v');
  using Row = std::tuple<Bytes, std::size_t, Outcome>;
  const auto [msg, cut, outcome] = GENERATE_COPY(
      Row{bind("p", "S", {big}), 8, Outcome::Malformed},  // the statement name is cut off
      Row{bind("p", "S", {big}), 6, Outcome::Malformed},  // so is the portal name
      Row{bind("p", "S", {big}), 4, Outcome::Malformed},  // not even a header
      Row{bind("p", "unknown", {big}), 40, Outcome::Forward},
      Row{bind("p", "", {big}), 40, Outcome::Forward},
      Row{execute("p"), 10, Outcome::Malformed});  // not a Bind
  CAPTURE(cut);
  std::size_t consumed = 12345;
  CHECK(m.rewrite_bind_prefix(ByteView(msg.data(), cut), read_u32(msg.data() + 1), other, edits,
                              out, consumed) == outcome);
  CHECK(consumed == 12345);
  CHECK(out.empty());
  CHECK(edits.empty());
  CHECK(other.size() == 0);
}

// ---- StatementMapper: malformed input ----

TEST_CASE("malformed client messages are refused without side effects", "[protocol]") {
  const Bytes msg =
      GENERATE(Bytes{}, test::raw({'P', 0, 0, 0, 20, 's', 0}),           // length beyond the bytes
               test::raw({'P', 0, 0, 0, 3}),                             // length below 4
               message('P', Body().cstr("s").str("SELECT 1")),           // query without NUL
               message('P', Body().cstr("s").cstr("q").u16(2).u32(23)),  // one type of two
               message('P', Body().cstr("s").cstr("q").u16(0).u8(1)),    // a byte too many
               message('B', Body().cstr("")),                            // no statement name
               message('B', Body().cstr("").cstr("s").u16(0).u16(1).u32(10).str("ab").u16(0)),
               message('B', Body().cstr("").cstr("s").u16(0).u16(0)),  // no result formats
               message('D', Body().u8('X').cstr("s")),                 // neither 'S' nor 'P'
               message('D', Body().u8('S').str("s")),                  // name without NUL
               message('C', Body().u8('Q').cstr("s")),                 // neither 'S' nor 'P'
               message('C', Body().u8('S').cstr("s").u8(0)),           // a byte too many
               message('Q', Body().str("DEALLOCATE s")),               // no NUL
               message('Q', Body().cstr("DEALLOCATE s").cstr("x")));   // a second string
  CAPTURE(msg);
  StatementMapper m(fake_name);
  BackendStatementCache cache(10);
  ResponseEdits edits;
  Buffer out;
  REQUIRE(rewrite(m, parse("s", "SELECT 1"), cache, edits, out) == Outcome::Rewritten);
  answer(edits, "31");
  CHECK(rewrite(m, msg, cache, edits, out) == Outcome::Malformed);
  CHECK(out.empty());
  CHECK(edits.empty());
  CHECK(m.size() == 1);
  CHECK(cache.size() == 1);
}

// ---- end to end: client, Sluice, backend ----

// A PostgreSQL session reduced to what matters here: which statements and portals exist, the
// skip-to-Sync after an error in the extended protocol, and the type byte of each answer.
// Queries containing "bad" fail.
class FakeServer {
 public:
  std::string run(const Bytes& wire) {
    std::string answers;
    std::size_t at = 0;
    while (at < wire.size()) {
      REQUIRE(wire.size() - at >= 5);
      const std::size_t size = std::size_t{1} + read_u32(wire.data() + at + 1);
      REQUIRE(size <= wire.size() - at);
      handle(ByteView(wire.data() + at, size), answers);
      at += size;
    }
    return answers;
  }
  const std::set<std::string>& statements() const { return statements_; }
  bool aborted = false;  // in an aborted transaction: Parse and Query fail until ROLLBACK

 private:
  void fail(std::string& answers) {
    answers += 'E';
    skipping_ = true;
  }
  void handle(ByteView msg, std::string& answers) {
    const char type = static_cast<char>(msg[0]);
    if (type == 'S') {
      skipping_ = false;
      portals_.clear();
      answers += 'Z';
      return;
    }
    if (skipping_) return;  // Query and FunctionCall too, as PostgreSQL does
    switch (type) {
      case 'P': {
        const auto p = read_parse(msg);
        REQUIRE(p.has_value());
        if (p->query.find("bad") != std::string_view::npos) return fail(answers);
        if (aborted) return fail(answers);  // 25P02
        if (!p->statement.empty() && !statements_.insert(std::string(p->statement)).second) {
          return fail(answers);  // 42P05 prepared statement already exists
        }
        answers += '1';
        return;
      }
      case 'B': {
        const auto b = read_bind_names(msg);
        REQUIRE(b.has_value());
        if (!b->statement.empty() && statements_.count(std::string(b->statement)) == 0) {
          return fail(answers);  // 26000 prepared statement does not exist
        }
        portals_.insert(std::string(b->portal));
        answers += '2';
        return;
      }
      case 'D': {
        const auto d = read_describe(msg);
        REQUIRE(d.has_value());
        if (d->kind == 'S') {
          if (!d->name.empty() && statements_.count(std::string(d->name)) == 0) {
            return fail(answers);
          }
          answers += "tn";
        } else {
          if (portals_.count(std::string(d->name)) == 0) return fail(answers);
          answers += 'n';
        }
        return;
      }
      case 'E': {
        const auto e = read_execute(msg);
        REQUIRE(e.has_value());
        if (portals_.count(std::string(e->portal)) == 0) return fail(answers);
        answers += 'C';
        return;
      }
      case 'C': {
        const auto c = read_close(msg);
        REQUIRE(c.has_value());
        (c->kind == 'S' ? statements_ : portals_).erase(std::string(c->name));
        answers += '3';
        return;
      }
      case 'Q': {
        const auto sql = read_query(msg);
        REQUIRE(sql.has_value());
        if (aborted && *sql == "ROLLBACK") aborted = false;
        answers += aborted ? 'E' : simple_query(*sql);
        answers += 'Z';
        return;
      }
      default:
        return;
    }
  }
  // Understands "DEALLOCATE ALL", "DISCARD ALL" and "DEALLOCATE <lower-case name>".
  char simple_query(std::string_view sql) {
    if (sql.find("bad") != std::string_view::npos) return 'E';
    if (sql == "DEALLOCATE ALL" || sql == "DISCARD ALL") {
      statements_.clear();
      return 'C';
    }
    constexpr std::string_view kDeallocate = "DEALLOCATE ";
    if (sql.starts_with(kDeallocate)) {
      return statements_.erase(std::string(sql.substr(kDeallocate.size()))) == 1 ? 'C' : 'E';
    }
    return 'C';
  }

  std::set<std::string> statements_;
  std::set<std::string> portals_;
  bool skipping_ = false;
};

struct Backend {
  explicit Backend(std::size_t capacity) : cache(capacity) {}
  FakeServer server;
  BackendStatementCache cache;
};

struct Client {
  StatementMapper mapper{fake_name};
  ResponseEdits edits;  // per client session, as src/ keeps it
  FakeServer direct;    // the same messages sent straight to a session of its own
};

// Sends `messages` from `client` through Sluice to `backend` in one pipelined batch, then relays
// the backend's answers back through the response edits. Returns the type bytes the client
// receives, and checks they are exactly what it would have received from PostgreSQL directly.
std::string exchange(Client& client, Backend& backend, const std::vector<Bytes>& messages) {
  Bytes wire;
  Bytes original;
  for (const Bytes& msg : messages) {
    Buffer out;
    const Outcome o = client.mapper.rewrite(view(msg), backend.cache, client.edits, out);
    REQUIRE(o != Outcome::Malformed);
    if (o == Outcome::Rewritten) {
      wire.insert(wire.end(), out.begin(), out.end());
    } else {
      wire.insert(wire.end(), msg.begin(), msg.end());
    }
    original.insert(original.end(), msg.begin(), msg.end());
    const char type = static_cast<char>(msg[0]);
    if (type == 'Q' || type == 'S' || type == 'F') client.edits.group_sent();
  }
  std::string seen;
  std::vector<std::string> not_prepared;
  std::vector<std::string> not_defined;
  for (char type : backend.server.run(wire)) {
    not_prepared.clear();
    not_defined.clear();
    const Edit e = client.edits.on_backend_message(type, not_prepared, not_defined);
    for (const std::string& name : not_prepared) backend.cache.erase(name);
    for (const std::string& name : not_defined) client.mapper.forget(name);
    if (e == Edit::Drop) continue;
    if (e == Edit::AsParseComplete) {
      CHECK(type == '3');
      type = '1';
    }
    seen += type;
  }
  CHECK(client.edits.empty());
  CHECK(seen == client.direct.run(original));
  return seen;
}

TEST_CASE("a pipelined session sees exactly what PostgreSQL would send", "[protocol]") {
  Backend backend(10);
  Client client;
  CHECK(exchange(client, backend,
                 {parse("s", "SELECT 1"), parse("t", "SELECT 2"), bind("", "s"), describe('S', "t"),
                  execute(), close('S', "s"), sync()}) == "112tnC3Z");
  CHECK(exchange(client, backend,
                 {bind("", "t"), execute(), sync(), parse("s", "SELECT 1"), bind("", "s"),
                  execute(), sync(), bind("", "s"), describe('P', ""), execute(), sync()}) ==
        "2CZ12CZ2nCZ");
  // One ParseComplete per client Parse, whatever the backend got.
  CHECK(exchange(client, backend, {parse("u", "SELECT 1"), parse("v", "SELECT 3"), sync()}) ==
        "11Z");
}

TEST_CASE("clients share definitions on one backend", "[protocol]") {
  Backend backend(10);
  Client first;
  Client second;
  CHECK(exchange(first, backend, {parse("s", "SELECT 1"), sync()}) == "1Z");
  // Already prepared: the second client's Parse is answered by a no-op Close.
  CHECK(exchange(second, backend, {parse("u", "SELECT 1"), bind("", "u"), execute(), sync()}) ==
        "12CZ");
  CHECK(backend.server.statements().size() == 1);
  // Closing it for one client leaves it for the other.
  CHECK(exchange(first, backend, {close('S', "s"), sync()}) == "3Z");
  CHECK(exchange(second, backend, {bind("", "u"), execute(), sync()}) == "2CZ");
  // DEALLOCATE by one client removes the backend statement; the other gets it prepared again.
  CHECK(exchange(second, backend, {parse("w", "SELECT 1"), sync()}) == "1Z");
  CHECK(exchange(second, backend, {query("DEALLOCATE w")}) == "CZ");
  CHECK(backend.server.statements().empty());
  CHECK(exchange(second, backend, {bind("", "u"), execute(), sync()}) == "2CZ");
}

TEST_CASE("a client's statements follow it to another backend", "[protocol]") {
  Backend one(10);
  Backend two(10);
  Client client;
  CHECK(exchange(client, one, {parse("s", "SELECT 1"), parse("t", "SELECT 2"), sync()}) == "11Z");
  CHECK(exchange(client, two, {bind("", "s"), describe('S', "t"), execute(), sync()}) == "2tnCZ");
  CHECK(exchange(client, one, {query("DEALLOCATE t")}) == "CZ");
  // Not on this backend: DEALLOCATE ALL gives the same answer.
  CHECK(exchange(client, two, {parse("u", "SELECT 3"), sync()}) == "1Z");
  CHECK(exchange(client, two, {bind("", "s"), execute(), sync()}) == "2CZ");
  CHECK(exchange(client, two, {query("DISCARD ALL")}) == "CZ");
  CHECK(exchange(client, one, {bind("", "s"), sync()}) == "EZ");  // gone after DISCARD ALL
}

TEST_CASE("DEALLOCATE whose statement cannot be prepared here still gets its answer",
          "[protocol]") {
  // Sluice prepares the statement ahead of the DEALLOCATE; when that Parse fails (an aborted
  // transaction, a definition no longer valid here), PostgreSQL skips to the next Sync, and a
  // simple Query must not be swallowed with it.
  Backend one(10);
  Backend two(10);
  Client client;
  CHECK(exchange(client, one, {parse("s", "SELECT 1"), sync()}) == "1Z");
  two.server.aborted = client.direct.aborted = true;
  CHECK(exchange(client, two, {query("DEALLOCATE s"), query("SELECT 2")}) == "EZEZ");
  CHECK(exchange(client, two, {query("ROLLBACK"), query("SELECT 2")}) == "CZCZ");
}

TEST_CASE("DEALLOCATE through an unnamed Parse adds no Sync to the client's series", "[protocol]") {
  // After an error, PostgreSQL skips the rest of the series (the DEALLOCATE included) up to the
  // client's own Sync; a Sync of Sluice's own in between would end that skipping early.
  Backend one(10);
  Backend two(10);
  Client client;
  CHECK(exchange(client, one, {parse("s", "SELECT 1"), sync()}) == "1Z");
  CHECK(exchange(client, two,
                 {bind("", "missing"), parse("", "DEALLOCATE s"), bind("", ""), execute(),
                  sync()}) == "EZ");
}

TEST_CASE("a small cache re-prepares as a pipeline alternates statements", "[protocol]") {
  Backend backend(1);
  Client client;
  CHECK(exchange(client, backend,
                 {parse("a", "SELECT 'a'"), parse("b", "SELECT 'b'"), bind("", "a"), execute(),
                  bind("", "b"), execute(), describe('S', "a"), bind("", "a"), execute(),
                  sync()}) == "112C2Ctn2CZ");
  CHECK(backend.server.statements().size() == 1);
}

TEST_CASE("an error in a pipelined group keeps later groups and the cache right", "[protocol]") {
  Backend backend(2);
  Client client;
  CHECK(exchange(client, backend,
                 {parse("a", "SELECT 1"), sync(),                                   //
                  parse("b", "SELECT bad"), parse("c", "SELECT 3"), bind("", "c"),  //
                  execute(), sync(),                                                //
                  bind("", "a"), execute(), sync()}) == "1ZEZ2CZ");
  // c was never prepared: parsing it again works.
  CHECK(exchange(client, backend, {parse("c", "SELECT 3"), bind("", "c"), execute(), sync()}) ==
        "12CZ");
  CHECK(exchange(client, backend, {query("SELECT bad"), bind("", "a"), execute(), sync()}) ==
        "EZ2CZ");
}

TEST_CASE("an eviction Close skipped after an error does not break a later prepare", "[protocol]") {
  Backend backend(1);
  Client client;
  CHECK(exchange(client, backend, {parse("a", "SELECT 1"), sync()}) == "1Z");
  // The Parse of b evicts a, but the error before it makes the backend skip its Close: the
  // backend still holds a's statement while the cache no longer lists it.
  CHECK(exchange(client, backend, {parse("", "SELECT bad"), parse("b", "SELECT 2"), sync()}) ==
        "EZ");
  CHECK(backend.server.statements().count(backend_name("SELECT 1")) == 1);
  // Preparing a again must not fail with "prepared statement already exists".
  CHECK(exchange(client, backend, {bind("", "a"), execute(), sync()}) == "2CZ");
  CHECK(exchange(client, backend, {parse("b", "SELECT 2"), bind("", "b"), execute(), sync()}) ==
        "12CZ");
}

}  // namespace
}  // namespace sluice::protocol
