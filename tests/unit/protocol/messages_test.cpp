#include "protocol/messages.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include <catch2/catch.hpp>

#include <string>

namespace sluice::protocol {
namespace {

using test::Body;
using test::Bytes;
using test::message;
using test::packet;
using test::raw;
using test::view;

// ---- startup phase ----

Bytes startup(const Body& params) {
  Body b;
  b.u32(kProtocolVersion3);
  for (std::byte x : params.bytes()) b.u8(std::to_integer<int>(x));
  return packet(b);
}

TEST_CASE("a startup message yields its parameters in wire order", "[protocol]") {
  const Bytes b = startup(Body()
                              .cstr("user")
                              .cstr("alice")
                              .cstr("database")
                              .cstr("shop")
                              .cstr("application_name")
                              .cstr("")
                              .u8(0));
  const auto m = read_startup_message(view(b));
  REQUIRE(m);
  CHECK(m->protocol == kProtocolVersion3);
  REQUIRE(m->params.size() == 3);
  CHECK(m->params[0].first == "user");
  CHECK(m->params[0].second == "alice");
  CHECK(m->params[2].first == "application_name");
  CHECK(m->params[2].second.empty());
  CHECK(m->get("database") == "shop");
  CHECK(m->get("options").empty());
}

TEST_CASE("a repeated startup parameter takes its last value as PostgreSQL does", "[protocol]") {
  const Bytes b = startup(Body().cstr("user").cstr("a").cstr("user").cstr("b").u8(0));
  const auto m = read_startup_message(view(b));
  REQUIRE(m);
  CHECK(m->get("user") == "b");
}

TEST_CASE("a startup message with no parameters is just the terminator", "[protocol]") {
  const Bytes m_msg = startup(Body().u8(0));
  const auto m = read_startup_message(view(m_msg));
  REQUIRE(m);
  CHECK(m->params.empty());
}

TEST_CASE("a startup message with a minor version keeps it", "[protocol]") {
  const Bytes b = packet(Body().u32(0x00030002).cstr("user").cstr("u").u8(0));
  const auto m = read_startup_message(view(b));
  REQUIRE(m);
  CHECK(m->protocol == 0x00030002u);
}

TEST_CASE("malformed startup messages are rejected", "[protocol]") {
  const Bytes bad = GENERATE(
      // a name without a value
      startup(Body().cstr("user").cstr("a").cstr("database").u8(0)),
      // no terminating zero byte
      startup(Body().cstr("user").cstr("a")),
      // value not NUL-terminated inside the packet
      startup(Body().cstr("user").str("a")),
      // nothing after the version at all
      startup(Body()),
      // trailing bytes after the terminator
      startup(Body().cstr("user").cstr("a").u8(0).u8('x')),
      // length field disagrees with the bytes given
      Body().u32(40).u32(kProtocolVersion3).cstr("user").cstr("a").u8(0).bytes(),
      // a request code, not a protocol version
      raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}),
      // protocol 2.0
      packet(Body().u32(0x00020000).cstr("user").cstr("a").u8(0)),
      // shorter than a length and a version
      raw({0, 0, 0, 4}));
  CAPTURE(test::text(bad));
  CHECK_FALSE(read_startup_message(view(bad)));
}

TEST_CASE("a cancel request yields the process id and secret", "[protocol]") {
  const Bytes b =
      raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x10, 0x92, 0xca, 0xfe, 0xba, 0xbe});
  const auto c = read_cancel_request(view(b));
  REQUIRE(c);
  CHECK(c->pid == 4242u);
  CHECK(c->secret == 0xcafebabeu);
}

TEST_CASE("malformed cancel requests are rejected", "[protocol]") {
  const Bytes bad = GENERATE(
      raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 1, 0, 0, 0, 2}),      // SSLRequest code
      raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0}),         // truncated
      raw({0, 0, 0, 12, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1}),                  // short
      raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2, 0}));  // trailing
  CHECK_FALSE(read_cancel_request(view(bad)));
}

// ---- authentication ----

TEST_CASE("authentication requests yield their code and data", "[protocol]") {
  const Bytes ok_msg = message('R', Body().u32(0));
  const auto ok = read_authentication(view(ok_msg));
  REQUIRE(ok);
  CHECK(ok->code == AuthCode::Ok);
  CHECK(ok->data.empty());

  const Bytes md5_msg = message('R', Body().u32(5).u32(0x01020304));
  const auto md5 = read_authentication(view(md5_msg));
  REQUIRE(md5);
  CHECK(md5->code == AuthCode::MD5Password);
  REQUIRE(md5->data.size() == 4);
  CHECK(md5->data[3] == std::byte{4});

  const Bytes sasl =
      message('R', Body().u32(10).cstr("SCRAM-SHA-256-PLUS").cstr("SCRAM-SHA-256").u8(0));
  const auto a = read_authentication(view(sasl));
  REQUIRE(a);
  CHECK(a->code == AuthCode::SASL);
  const auto mechanisms = read_sasl_mechanisms(a->data);
  REQUIRE(mechanisms);
  REQUIRE(mechanisms->size() == 2);
  CHECK((*mechanisms)[0] == "SCRAM-SHA-256-PLUS");
  CHECK((*mechanisms)[1] == "SCRAM-SHA-256");

  const Bytes cont_msg = message('R', Body().u32(11).str("r=abc,s=xyz,i=4096"));
  const auto cont = read_authentication(view(cont_msg));
  REQUIRE(cont);
  CHECK(cont->code == AuthCode::SASLContinue);
  CHECK(cont->data.size() == 18);
}

TEST_CASE("malformed authentication requests are rejected", "[protocol]") {
  const Bytes bad =
      GENERATE(message('R', Body()),                                // no code
               message('R', Body().u8(0).u8(0).u8(0)),              // truncated code
               message('R', Body().u32(0).u8(0)),                   // Ok with data
               message('R', Body().u32(3).u32(0)),                  // cleartext with data
               message('R', Body().u32(5).u8(1).u8(2).u8(3)),       // MD5 salt too short
               message('R', Body().u32(5).u32(1).u8(0)),            // MD5 salt too long
               message('R', Body().u32(10).cstr("SCRAM-SHA-256")),  // mechanism list unterminated
               message('R', Body().u32(10).str("SCRAM")),           // mechanism name unterminated
               message('R', Body().u32(10).u8(0).u8('x')),          // bytes after the list
               message('R', Body().u32(4)),                         // crypt: not defined any more
               message('R', Body().u32(6)),                         // SCM credentials: not defined
               message('R', Body().u32(0xffffffff)),                // unknown code
               message('K', Body().u32(0)),                         // wrong type byte
               raw({'R', 0, 0, 0, 9, 0, 0, 0, 0}));  // length disagrees with the bytes
  CHECK_FALSE(read_authentication(view(bad)));
}

TEST_CASE("an SASL mechanism list must be terminated by an empty name", "[protocol]") {
  CHECK(read_sasl_mechanisms(view(Body().u8(0).bytes()))->empty());
  CHECK_FALSE(read_sasl_mechanisms(ByteView{}));
  CHECK_FALSE(read_sasl_mechanisms(view(Body().cstr("A").bytes())));
  CHECK_FALSE(read_sasl_mechanisms(view(Body().cstr("A").u8(0).u8(0).bytes())));
}

TEST_CASE("a password message yields the password", "[protocol]") {
  const Bytes p_msg = message('p', Body().cstr("md5abc"));
  const auto p = read_password_message(view(p_msg));
  REQUIRE(p);
  CHECK(*p == "md5abc");
  CHECK_FALSE(read_password_message(view(message('p', Body().str("nonul")))));
  CHECK_FALSE(read_password_message(view(message('p', Body().cstr("a").u8('b')))));
  CHECK_FALSE(read_password_message(view(message('Q', Body().cstr("a")))));
}

TEST_CASE("an SASL initial response yields mechanism and data", "[protocol]") {
  const Bytes b = message('p', Body().cstr("SCRAM-SHA-256").i32(8).str("n,,n=,r="));
  const auto r = read_sasl_initial_response(view(b));
  REQUIRE(r);
  CHECK(r->mechanism == "SCRAM-SHA-256");
  CHECK(r->has_data);
  CHECK(r->data == "n,,n=,r=");

  const Bytes none_msg = message('p', Body().cstr("X").i32(-1));
  const auto none = read_sasl_initial_response(view(none_msg));
  REQUIRE(none);
  CHECK_FALSE(none->has_data);
  CHECK(none->data.empty());

  const Bytes empty_msg = message('p', Body().cstr("X").i32(0));
  const auto empty = read_sasl_initial_response(view(empty_msg));
  REQUIRE(empty);
  CHECK(empty->has_data);
  CHECK(empty->data.empty());
}

TEST_CASE("an SASL initial response with a bogus inner length is rejected", "[protocol]") {
  const Bytes bad = GENERATE(
      message('p', Body().cstr("SCRAM-SHA-256").i32(9).str("n,,n=,r=")),    // longer than data
      message('p', Body().cstr("SCRAM-SHA-256").i32(7).str("n,,n=,r=")),    // shorter than data
      message('p', Body().cstr("SCRAM-SHA-256").i32(0x7fffffff).str("n")),  // huge
      message('p', Body().cstr("SCRAM-SHA-256").i32(-2).str("n")),          // negative
      message('p', Body().cstr("SCRAM-SHA-256").i32(-1).str("n")),          // -1 with data
      message('p', Body().cstr("SCRAM-SHA-256").u8(0).u8(0)),               // length truncated
      message('p', Body().str("SCRAM-SHA-256")),                            // name unterminated
      message('p', Body().cstr("").i32(-1)));                               // no mechanism
  CHECK_FALSE(read_sasl_initial_response(view(bad)));
}

TEST_CASE("an SASL response is the whole body", "[protocol]") {
  const Bytes r_msg = message('p', Body().str("c=biws,r=x,p=y"));
  const auto r = read_sasl_response(view(r_msg));
  REQUIRE(r);
  CHECK(*r == "c=biws,r=x,p=y");
  CHECK_FALSE(read_sasl_response(view(message('Q', Body().str("x")))));
}

// ---- backend status messages ----

TEST_CASE("a parameter status yields name and value", "[protocol]") {
  const Bytes s_msg = message('S', Body().cstr("TimeZone").cstr("UTC"));
  const auto s = read_parameter_status(view(s_msg));
  REQUIRE(s);
  CHECK(s->name == "TimeZone");
  CHECK(s->value == "UTC");
  CHECK_FALSE(read_parameter_status(view(message('S', Body().cstr("TimeZone")))));
  CHECK_FALSE(read_parameter_status(view(message('S', Body().cstr("a").str("b")))));
  CHECK_FALSE(read_parameter_status(view(message('S', Body().cstr("a").cstr("b").u8(0)))));
}

TEST_CASE("backend key data yields process id and secret", "[protocol]") {
  const Bytes k_msg = raw({'K', 0, 0, 0, 12, 0, 0, 0x10, 0x92, 0, 0, 0, 7});
  const auto k = read_backend_key_data(view(k_msg));
  REQUIRE(k);
  CHECK(k->pid == 4242u);
  CHECK(k->secret == 7u);
  CHECK_FALSE(read_backend_key_data(view(message('K', Body().u32(1)))));
  CHECK_FALSE(read_backend_key_data(view(message('K', Body().u32(1).u32(2).u8(3)))));
}

TEST_CASE("ready for query yields the transaction status", "[protocol]") {
  const auto [byte, status] =
      GENERATE(std::pair{'I', TxStatus::Idle}, std::pair{'T', TxStatus::InTransaction},
               std::pair{'E', TxStatus::Failed});
  const Bytes r_msg = raw({'Z', 0, 0, 0, 5, byte});
  const auto r = read_ready_for_query(view(r_msg));
  REQUIRE(r);
  CHECK(*r == status);
}

TEST_CASE("malformed ready for query messages are rejected", "[protocol]") {
  const Bytes bad = GENERATE(raw({'Z', 0, 0, 0, 5, 'X'}), raw({'Z', 0, 0, 0, 4}),
                             raw({'Z', 0, 0, 0, 6, 'I', 'I'}), raw({'Z', 0, 0, 0, 5}),
                             raw({'Z', 0, 0, 0, 6, 'I'}), raw({'K', 0, 0, 0, 5, 'I'}));
  CHECK_FALSE(read_ready_for_query(view(bad)));
}

TEST_CASE("error and notice fields are read in order", "[protocol]") {
  const char type = GENERATE('E', 'N');
  const Bytes b = message(type, Body()
                                    .u8('S')
                                    .cstr("FATAL")
                                    .u8('V')
                                    .cstr("FATAL")
                                    .u8('C')
                                    .cstr("28P01")
                                    .u8('M')
                                    .cstr("password authentication failed")
                                    .u8(0));
  const auto e = read_error_fields(view(b));
  REQUIRE(e);
  REQUIRE(e->fields.size() == 4);
  CHECK(e->fields[0].first == 'S');
  CHECK(e->severity() == "FATAL");
  CHECK(e->sqlstate() == "28P01");
  CHECK(e->message() == "password authentication failed");
  CHECK(e->get('D').empty());
}

TEST_CASE("an error without the non-localized severity falls back to S", "[protocol]") {
  const Bytes e_msg = message('E', Body().u8('S').cstr("FEHLER").u8(0));
  const auto e = read_error_fields(view(e_msg));
  REQUIRE(e);
  CHECK(e->severity() == "FEHLER");
}

TEST_CASE("malformed error responses are rejected", "[protocol]") {
  const Bytes bad =
      GENERATE(message('E', Body()),                        // no terminator
               message('E', Body().u8('S').cstr("ERROR")),  // no terminator after fields
               message('E', Body().u8('S').str("ERROR")),   // value not NUL-terminated
               message('E', Body().u8('S').cstr("ERROR").u8(0).u8(0)),  // trailing byte
               message('Z', Body().u8(0)),                              // wrong type
               raw({'E', 0, 0, 0, 6, 0}));                              // length disagrees
  CHECK_FALSE(read_error_fields(view(bad)));
  CHECK_FALSE(read_error_fields(ByteView{}));
}

TEST_CASE("a command complete yields its tag", "[protocol]") {
  const Bytes t_msg = message('C', Body().cstr("INSERT 0 3"));
  const auto t = read_command_complete(view(t_msg));
  REQUIRE(t);
  CHECK(*t == "INSERT 0 3");
  CHECK_FALSE(read_command_complete(view(message('C', Body().str("INSERT")))));
  CHECK_FALSE(read_command_complete(view(message('C', Body().cstr("A").cstr("B")))));
}

// ---- frontend queries ----

TEST_CASE("a query yields its SQL text", "[protocol]") {
  const Bytes q_msg = raw({'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0});
  const auto q = read_query(view(q_msg));
  REQUIRE(q);
  CHECK(*q == "SELECT 1");
}

TEST_CASE("malformed queries are rejected", "[protocol]") {
  const Bytes bad = GENERATE(message('Q', Body().str("SELECT 1")),           // missing NUL
                             message('Q', Body().cstr("SELECT 1").u8('x')),  // trailing garbage
                             message('Q', Body().cstr("A").cstr("B")),       // embedded NUL
                             raw({'Q', 0, 0, 0, 13, 'S', 0}),                // truncated
                             raw({'Q', 0, 0, 0, 3, 0}),                      // length too small
                             message('P', Body().cstr("x")));                // wrong type
  CHECK_FALSE(read_query(view(bad)));
  CHECK_FALSE(read_query(ByteView{}));
}

TEST_CASE("a query's text ends at its only NUL, at any length", "[protocol]") {
  for (std::size_t n = 0; n < 80; ++n) {
    std::string sql;
    for (std::size_t i = 0; i < n; ++i) sql += static_cast<char>('a' + i % 26);
    if (n > 0) sql[n / 2] = '\xe9';  // bytes above 0x7f are text too
    CAPTURE(n);
    const Bytes msg = message('Q', Body().cstr(sql));
    const auto q = read_query(view(msg));
    REQUIRE(q);
    CHECK(*q == sql);
    // A NUL anywhere before the end is an embedded NUL.
    for (std::size_t at = 0; at < n; ++at) {
      std::string cut = sql;
      cut[at] = '\0';
      CHECK_FALSE(read_query(view(message('Q', Body().cstr(cut)))));
    }
  }
}

TEST_CASE("a parse yields names, text and parameter types", "[protocol]") {
  const Bytes b = message('P', Body().cstr("s1").cstr("SELECT $1, $2").u16(2).u32(23).u32(25));
  const auto p = read_parse(view(b));
  REQUIRE(p);
  CHECK(p->statement == "s1");
  CHECK(p->query == "SELECT $1, $2");
  CHECK(p->param_type_count == 2);
  REQUIRE(p->param_types.size() == 8);
  CHECK(read_u32(p->param_types.data() + 4) == 25u);
}

TEST_CASE("malformed parses are rejected", "[protocol]") {
  const Bytes bad =
      GENERATE(message('P', Body().cstr("s1").cstr("SELECT 1").u16(1)),  // no OID
               message('P', Body().cstr("s1").cstr("SELECT 1").u16(0).u8(0)),
               message('P', Body().cstr("s1").cstr("SELECT 1").u8(0)),
               message('P', Body().cstr("s1").str("SELECT 1")), message('P', Body().cstr("s1")));
  CHECK_FALSE(read_parse(view(bad)));
}

TEST_CASE("a bind yields portal and statement names and where the rest begins", "[protocol]") {
  const Bytes b = message(
      'B',
      Body().cstr("p1").cstr("s1").u16(1).u16(0).u16(2).i32(2).str("42").i32(-1).u16(1).u16(1));
  const auto n = read_bind_names(view(b));
  REQUIRE(n);
  CHECK(n->portal == "p1");
  CHECK(n->statement == "s1");
  CHECK(n->rest_offset == 11u);
}

TEST_CASE("malformed binds are rejected", "[protocol]") {
  const Bytes bad = GENERATE(
      message('B', Body().cstr("").cstr("")),                       // no counts
      message('B', Body().cstr("").cstr("").u16(1).u16(0).u16(0)),  // format missing
      message('B', Body().cstr("").cstr("").u16(0).u16(1).i32(5).str("ab").u16(0)),  // short value
      message('B', Body().cstr("").cstr("").u16(0).u16(1).i32(-2).u16(0)),           // bad length
      message('B', Body().cstr("").cstr("").u16(0).u16(0).u16(0).u8(0)),  // trailing byte
      message('B', Body().cstr("").cstr("").u16(0).u16(0)),               // no result count
      message('B', Body().cstr("").str("s")));                            // name unterminated
  CHECK_FALSE(read_bind_names(view(bad)));
}

TEST_CASE("describe and close yield the target kind and name", "[protocol]") {
  const Bytes d_msg = message('D', Body().u8('S').cstr("s1"));
  const auto d = read_describe(view(d_msg));
  REQUIRE(d);
  CHECK(d->kind == 'S');
  CHECK(d->name == "s1");
  const Bytes c_msg = message('C', Body().u8('P').cstr(""));
  const auto c = read_close(view(c_msg));
  REQUIRE(c);
  CHECK(c->kind == 'P');
  CHECK(c->name.empty());
  CHECK_FALSE(read_describe(view(message('D', Body().u8('X').cstr("s1")))));
  CHECK_FALSE(read_describe(view(message('D', Body().u8('S').str("s1")))));
  CHECK_FALSE(read_describe(view(message('D', Body().u8('S').cstr("s1").u8(0)))));
  CHECK_FALSE(read_close(view(message('D', Body().u8('S').cstr("s1")))));
}

TEST_CASE("an execute yields portal and row limit", "[protocol]") {
  const Bytes e_msg = message('E', Body().cstr("p1").u32(100));
  const auto e = read_execute(view(e_msg));
  REQUIRE(e);
  CHECK(e->portal == "p1");
  CHECK(e->max_rows == 100u);
  CHECK_FALSE(read_execute(view(message('E', Body().cstr("p1").u8(0).u8(0)))));
  CHECK_FALSE(read_execute(view(message('E', Body().cstr("p1").u32(0).u8(0)))));
}

TEST_CASE("readers return views inside the message they were given", "[protocol]") {
  const Bytes b = message('S', Body().cstr("DateStyle").cstr("ISO, MDY"));
  const auto s = read_parameter_status(view(b));
  REQUIRE(s);
  const auto* first = reinterpret_cast<const char*>(b.data());
  CHECK(s->name.data() == first + 5);
  CHECK(s->value.data() == first + 15);
  CHECK(s->value.data() + s->value.size() < first + b.size());
}

}  // namespace
}  // namespace sluice::protocol
