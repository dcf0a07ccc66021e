#include "protocol/builders.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol {
namespace {

using namespace std::string_view_literals;
using test::Bytes;
using test::raw;
using test::view;

// A header written by hand followed by body text that may hold NULs ("a\0b"sv).
Bytes with_text(Bytes head, std::string_view body) {
  for (char c : body) head.push_back(static_cast<std::byte>(c));
  return head;
}

template <typename F>
Bytes built(F&& build) {
  Buffer out;
  build(out);
  return out;
}

// ---- exact bytes, from "Message Formats" ----

TEST_CASE("ready for query has the documented bytes", "[protocol]") {
  CHECK(built([](Buffer& b) { build_ready_for_query(b, TxStatus::Idle); }) ==
        raw({'Z', 0, 0, 0, 5, 'I'}));
  CHECK(built([](Buffer& b) { build_ready_for_query(b, TxStatus::InTransaction); }) ==
        raw({'Z', 0, 0, 0, 5, 'T'}));
  CHECK(built([](Buffer& b) { build_ready_for_query(b, TxStatus::Failed); }) ==
        raw({'Z', 0, 0, 0, 5, 'E'}));
}

TEST_CASE("authentication requests have the documented bytes", "[protocol]") {
  CHECK(built(build_auth_ok) == raw({'R', 0, 0, 0, 8, 0, 0, 0, 0}));
  CHECK(built(build_auth_cleartext) == raw({'R', 0, 0, 0, 8, 0, 0, 0, 3}));
  const std::array<std::byte, 4> salt{std::byte{1}, std::byte{2}, std::byte{3}, std::byte{0xff}};
  CHECK(built([&](Buffer& b) { build_auth_md5(b, salt); }) ==
        raw({'R', 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 0xff}));
  const std::array<std::string_view, 1> mechanisms{"SCRAM-SHA-256"};
  CHECK(built([&](Buffer& b) { build_auth_sasl(b, mechanisms); }) ==
        with_text(raw({'R', 0, 0, 0, 23, 0, 0, 0, 10}), "SCRAM-SHA-256\0\0"sv));
  CHECK(built([](Buffer& b) { build_auth_sasl_continue(b, "r=x"); }) ==
        with_text(raw({'R', 0, 0, 0, 11, 0, 0, 0, 11}), "r=x"));
  CHECK(built([](Buffer& b) { build_auth_sasl_final(b, "v=y"); }) ==
        with_text(raw({'R', 0, 0, 0, 11, 0, 0, 0, 12}), "v=y"));
}

TEST_CASE("an error response writes S, V, C, M, then D and H only when set", "[protocol]") {
  const ErrorInfo e{Severity::Error, "53300", "too many", "", ""};
  CHECK(built([&](Buffer& b) { build_error_response(b, e); }) ==
        with_text(raw({'E', 0, 0, 0, 36}), "SERROR\0VERROR\0C53300\0Mtoo many\0\0"sv));

  const ErrorInfo full{Severity::Fatal, "08P01", "bad", "why", "fix"};
  CHECK(built([&](Buffer& b) { build_error_response(b, full); }) ==
        with_text(raw({'E', 0, 0, 0, 41}), "SFATAL\0VFATAL\0C08P01\0Mbad\0Dwhy\0Hfix\0\0"sv));
}

TEST_CASE("a notice response has the layout of an error response", "[protocol]") {
  const ErrorInfo e{Severity::Warning, "01000", "careful", "", "slow down"};
  CHECK(
      built([&](Buffer& b) { build_notice_response(b, e); }) ==
      with_text(raw({'N', 0, 0, 0, 50}), "SWARNING\0VWARNING\0C01000\0Mcareful\0Hslow down\0\0"sv));
}

TEST_CASE("every severity has its documented spelling", "[protocol]") {
  const auto [severity, text] =
      GENERATE(std::pair{Severity::Error, "ERROR"}, std::pair{Severity::Fatal, "FATAL"},
               std::pair{Severity::Panic, "PANIC"}, std::pair{Severity::Warning, "WARNING"},
               std::pair{Severity::Notice, "NOTICE"}, std::pair{Severity::Debug, "DEBUG"},
               std::pair{Severity::Info, "INFO"}, std::pair{Severity::Log, "LOG"});
  CHECK(to_string(severity) == text);
}

TEST_CASE("server status messages have the documented bytes", "[protocol]") {
  CHECK(built([](Buffer& b) { build_parameter_status(b, "TimeZone", "UTC"); }) ==
        with_text(raw({'S', 0, 0, 0, 17}), "TimeZone\0UTC\0"sv));
  CHECK(built([](Buffer& b) { build_backend_key_data(b, 4242, 0xcafebabe); }) ==
        raw({'K', 0, 0, 0, 12, 0, 0, 0x10, 0x92, 0xca, 0xfe, 0xba, 0xbe}));
  CHECK(built([](Buffer& b) { build_command_complete(b, "SELECT 1"); }) ==
        with_text(raw({'C', 0, 0, 0, 13}), "SELECT 1\0"sv));
  CHECK(built(build_empty_query_response) == raw({'I', 0, 0, 0, 4}));
  CHECK(built(build_parse_complete) == raw({'1', 0, 0, 0, 4}));
  const std::array<std::string_view, 1> options{"_pq_.x"};
  CHECK(built([&](Buffer& b) { build_negotiate_protocol_version(b, 0, options); }) ==
        with_text(raw({'v', 0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 1}), "_pq_.x\0"sv));
}

TEST_CASE("a row description writes every column field", "[protocol]") {
  const std::array<Column, 1> columns{Column{"n", kOidInt4, 4}};
  CHECK(built([&](Buffer& b) { build_row_description(b, columns); }) ==
        raw({'T',  0,    0,    0,    26, 0, 1, 'n', 0,  // count, name
             0,    0,    0,    0,    0,  0,             // table OID, attribute number
             0,    0,    0,    23,   0,  4,             // type OID, type size
             0xff, 0xff, 0xff, 0xff, 0,  0}));          // type modifier, text format
}

TEST_CASE("a data row writes -1 for NULL", "[protocol]") {
  const std::array<std::string_view, 3> values{"1", "", "ab"};
  const std::array<bool, 2> is_null{false, true};
  CHECK(
      built([&](Buffer& b) { build_data_row(b, values, is_null); }) ==
      raw({'D', 0, 0, 0, 21, 0, 3, 0, 0, 0, 1, '1', 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2, 'a', 'b'}));
  CHECK(built([&](Buffer& b) { build_data_row(b, values); }) ==
        raw({'D', 0, 0, 0, 21, 0, 3, 0, 0, 0, 1, '1', 0, 0, 0, 0, 0, 0, 0, 2, 'a', 'b'}));
}

TEST_CASE("client messages have the documented bytes", "[protocol]") {
  const std::vector<std::pair<std::string, std::string>> params{{"user", "alice"},
                                                                {"database", "shop"}};
  CHECK(built([&](Buffer& b) { build_startup_message(b, params); }) ==
        with_text(raw({0, 0, 0, 34, 0, 3, 0, 0}), "user\0alice\0database\0shop\0\0"sv));
  CHECK(built([](Buffer& b) { build_query(b, "SELECT 1"); }) ==
        raw({'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0}));
  CHECK(built([](Buffer& b) { build_password_message(b, "pw"); }) ==
        raw({'p', 0, 0, 0, 7, 'p', 'w', 0}));
  CHECK(built([](Buffer& b) { build_sasl_initial_response(b, "SCRAM-SHA-256", "abc"); }) ==
        with_text(raw({'p', 0, 0, 0, 25}),
                  "SCRAM-SHA-256\0\0\0\0\x03"
                  "abc"sv));
  CHECK(built([](Buffer& b) { build_sasl_response(b, "c=x"); }) ==
        raw({'p', 0, 0, 0, 7, 'c', '=', 'x'}));
  CHECK(built(build_sync) == raw({'S', 0, 0, 0, 4}));
  CHECK(built(build_terminate) == raw({'X', 0, 0, 0, 4}));
  CHECK(built([](Buffer& b) { build_cancel_request(b, 4242, 7); }) ==
        raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x10, 0x92, 0, 0, 0, 7}));
  CHECK(built(build_ssl_request) == raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}));
  CHECK(built(build_gss_enc_request) == raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}));
}

TEST_CASE("builders append so several messages batch into one buffer", "[protocol]") {
  Buffer out;
  build_command_complete(out, "SELECT 0");
  build_ready_for_query(out, TxStatus::Idle);
  ByteView rest = view(out);
  const FrameResult a = peek_frame(rest, Direction::Backend, kDefaultMaxMessageLength);
  REQUIRE(a.status == DecodeStatus::Ok);
  CHECK(read_command_complete(rest.first(a.frame.size())) == "SELECT 0");
  rest = rest.subspan(a.frame.size());
  const FrameResult b = peek_frame(rest, Direction::Backend, kDefaultMaxMessageLength);
  REQUIRE(b.status == DecodeStatus::Ok);
  REQUIRE(b.frame.size() == rest.size());
  CHECK(read_ready_for_query(rest) == TxStatus::Idle);
}

TEST_CASE("a string holding a NUL is cut there to keep the message framed", "[protocol]") {
  const Bytes b = built([](Buffer& out) { build_query(out, "SELECT 1\0; DROP"sv); });
  CHECK(b == raw({'Q', 0, 0, 0, 13, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', 0}));
}

TEST_CASE("the message writer patches the length of the message begun last", "[protocol]") {
  Buffer out;
  MessageWriter w(out);
  w.begin('d').add_bytes("ab"sv).finish();
  w.begin('d').add_u16(0x0102).add_i32(-2).finish();
  CHECK(out == raw({'d', 0, 0, 0, 6, 'a', 'b', 'd', 0, 0, 0, 10, 1, 2, 0xff, 0xff, 0xff, 0xfe}));
}

// ---- builder -> reader round trips ----

TEST_CASE("error and notice responses read back field by field", "[protocol]") {
  const bool notice = GENERATE(false, true);
  const ErrorInfo e{Severity::Fatal, "57P01", "terminating", "admin", "retry"};
  Buffer out;
  notice ? build_notice_response(out, e) : build_error_response(out, e);
  REQUIRE(peek_frame(view(out), Direction::Backend, kDefaultMaxMessageLength).status ==
          DecodeStatus::Ok);
  const auto f = read_error_fields(view(out));
  REQUIRE(f);
  CHECK(f->get('S') == "FATAL");
  CHECK(f->severity() == "FATAL");
  CHECK(f->sqlstate() == "57P01");
  CHECK(f->message() == "terminating");
  CHECK(f->get('D') == "admin");
  CHECK(f->get('H') == "retry");
  CHECK(f->fields.size() == 6);
}

TEST_CASE("ready for query reads back its status", "[protocol]") {
  const TxStatus s = GENERATE(TxStatus::Idle, TxStatus::InTransaction, TxStatus::Failed);
  Buffer out;
  build_ready_for_query(out, s);
  CHECK(read_ready_for_query(view(out)) == s);
}

TEST_CASE("authentication requests read back code and data", "[protocol]") {
  CHECK(read_authentication(view(built(build_auth_ok)))->code == AuthCode::Ok);
  CHECK(read_authentication(view(built(build_auth_cleartext)))->code ==
        AuthCode::CleartextPassword);

  const std::array<std::byte, 4> salt{std::byte{9}, std::byte{8}, std::byte{7}, std::byte{6}};
  const Bytes md5 = built([&](Buffer& b) { build_auth_md5(b, salt); });
  const auto m = read_authentication(view(md5));
  REQUIRE(m);
  CHECK(m->code == AuthCode::MD5Password);
  CHECK(Bytes(m->data.begin(), m->data.end()) == Bytes(salt.begin(), salt.end()));

  const std::array<std::string_view, 2> names{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  const Bytes sasl = built([&](Buffer& b) { build_auth_sasl(b, names); });
  const auto a = read_authentication(view(sasl));
  REQUIRE(a);
  CHECK(a->code == AuthCode::SASL);
  CHECK(read_sasl_mechanisms(a->data) == std::vector<std::string_view>(names.begin(), names.end()));

  const Bytes cont = built([](Buffer& b) { build_auth_sasl_continue(b, "r=1,s=2,i=4096"); });
  const auto c = read_authentication(view(cont));
  REQUIRE(c);
  CHECK(c->code == AuthCode::SASLContinue);
  CHECK(test::text(Bytes(c->data.begin(), c->data.end())) == "r=1,s=2,i=4096");

  const Bytes f_msg = built([](Buffer& b) { build_auth_sasl_final(b, "v=9"); });
  const auto f = read_authentication(view(f_msg));
  REQUIRE(f);
  CHECK(f->code == AuthCode::SASLFinal);
  CHECK(f->data.size() == 3);
}

TEST_CASE("parameter status, key data and command tags read back", "[protocol]") {
  const Bytes s_msg = built([](Buffer& b) { build_parameter_status(b, "server_version", "15.8"); });
  const auto s = read_parameter_status(view(s_msg));
  REQUIRE(s);
  CHECK(s->name == "server_version");
  CHECK(s->value == "15.8");

  const auto k = read_backend_key_data(
      view(built([](Buffer& b) { build_backend_key_data(b, 1, 0xffffffff); })));
  REQUIRE(k);
  CHECK(k->pid == 1u);
  CHECK(k->secret == 0xffffffffu);

  CHECK(read_command_complete(view(built([](Buffer& b) { build_command_complete(b, "BEGIN"); }))) ==
        "BEGIN");
}

TEST_CASE("a startup message reads back its parameters", "[protocol]") {
  const std::vector<std::pair<std::string, std::string>> params{
      {"user", "bob"}, {"database", "db"}, {"application_name", ""}, {"options", "-c x=1"}};
  const Bytes b = built([&](Buffer& out) { build_startup_message(out, params); });
  const StartupFrameResult f = peek_startup(view(b));
  REQUIRE(f.status == DecodeStatus::Ok);
  CHECK(f.kind == StartupKind::Startup);
  CHECK(f.length == b.size());
  const auto m = read_startup_message(view(b));
  REQUIRE(m);
  CHECK(m->protocol == kProtocolVersion3);
  REQUIRE(m->params.size() == params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    CHECK(m->params[i].first == params[i].first);
    CHECK(m->params[i].second == params[i].second);
  }
}

TEST_CASE("password and SASL client messages read back", "[protocol]") {
  CHECK(read_password_message(view(built([](Buffer& b) { build_password_message(b, "md5x"); }))) ==
        "md5x");
  const Bytes init =
      built([](Buffer& b) { build_sasl_initial_response(b, "SCRAM-SHA-256", "n,,n=,r=abc"); });
  const auto i = read_sasl_initial_response(view(init));
  REQUIRE(i);
  CHECK(i->mechanism == "SCRAM-SHA-256");
  CHECK(i->has_data);
  CHECK(i->data == "n,,n=,r=abc");
  CHECK(read_sasl_response(view(built([](Buffer& b) { build_sasl_response(b, "c=biws"); }))) ==
        "c=biws");
}

TEST_CASE("query and cancel request read back", "[protocol]") {
  CHECK(read_query(view(built([](Buffer& b) { build_query(b, "SELECT now()"); }))) ==
        "SELECT now()");
  const Bytes c = built([](Buffer& b) { build_cancel_request(b, 77, 0x80000000); });
  const StartupFrameResult f = peek_startup(view(c));
  REQUIRE(f.status == DecodeStatus::Ok);
  CHECK(f.kind == StartupKind::CancelRequest);
  const auto r = read_cancel_request(view(c));
  REQUIRE(r);
  CHECK(r->pid == 77u);
  CHECK(r->secret == 0x80000000u);
}

TEST_CASE("every builder's output is one valid frame for its direction", "[protocol]") {
  const std::array<std::string_view, 1> one{"x"};
  const std::array<Column, 2> columns{Column{"a"}, Column{"b", kOidBool, 1}};
  const ErrorInfo e{Severity::Error, "08P01", "m", "", ""};
  const std::array<std::byte, 4> salt{};
  const std::vector<std::pair<Bytes, Direction>> cases{
      {built([&](Buffer& b) { build_error_response(b, e); }), Direction::Backend},
      {built([&](Buffer& b) { build_notice_response(b, e); }), Direction::Backend},
      {built([](Buffer& b) { build_ready_for_query(b, TxStatus::Idle); }), Direction::Backend},
      {built(build_auth_ok), Direction::Backend},
      {built(build_auth_cleartext), Direction::Backend},
      {built([&](Buffer& b) { build_auth_md5(b, salt); }), Direction::Backend},
      {built([&](Buffer& b) { build_auth_sasl(b, one); }), Direction::Backend},
      {built([](Buffer& b) { build_auth_sasl_continue(b, "x"); }), Direction::Backend},
      {built([](Buffer& b) { build_auth_sasl_final(b, "x"); }), Direction::Backend},
      {built([](Buffer& b) { build_parameter_status(b, "a", "b"); }), Direction::Backend},
      {built([](Buffer& b) { build_backend_key_data(b, 1, 2); }), Direction::Backend},
      {built([&](Buffer& b) { build_negotiate_protocol_version(b, 0, one); }), Direction::Backend},
      {built([](Buffer& b) { build_command_complete(b, "x"); }), Direction::Backend},
      {built(build_empty_query_response), Direction::Backend},
      {built([&](Buffer& b) { build_row_description(b, columns); }), Direction::Backend},
      {built([&](Buffer& b) { build_data_row(b, one); }), Direction::Backend},
      {built([](Buffer& b) { build_password_message(b, "x"); }), Direction::Frontend},
      {built([](Buffer& b) { build_sasl_initial_response(b, "x", "y"); }), Direction::Frontend},
      {built([](Buffer& b) { build_sasl_response(b, "x"); }), Direction::Frontend},
      {built([](Buffer& b) { build_query(b, "x"); }), Direction::Frontend},
      {built(build_sync), Direction::Frontend},
      {built(build_terminate), Direction::Frontend},
  };
  for (const auto& [bytes, dir] : cases) {
    CAPTURE(static_cast<char>(bytes[0]));
    const FrameResult r = peek_frame(view(bytes), dir, kDefaultMaxMessageLength);
    REQUIRE(r.status == DecodeStatus::Ok);
    CHECK(r.frame.size() == bytes.size());
  }
}

}  // namespace
}  // namespace sluice::protocol
