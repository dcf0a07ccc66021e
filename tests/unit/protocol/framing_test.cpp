#include "protocol/framing.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include "protocol/messages.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <tuple>

namespace sluice::protocol {
namespace {

using test::Body;
using test::Bytes;
using test::message;
using test::packet;
using test::raw;
using test::view;

// (type byte, name in the PostgreSQL docs, smallest valid length, largest valid length or 0),
// written out from "Message Formats" independently of protocol/message_types.cpp.
using TypeRow = std::tuple<char, std::string, std::uint32_t, std::uint32_t>;

TypeRow frontend_row() {
  return GENERATE(TypeRow{'B', "Bind", 12, 0}, TypeRow{'C', "Close", 6, 0},
                  TypeRow{'d', "CopyData", 4, 0}, TypeRow{'c', "CopyDone", 4, 4},
                  TypeRow{'f', "CopyFail", 5, 0}, TypeRow{'D', "Describe", 6, 0},
                  TypeRow{'E', "Execute", 9, 0}, TypeRow{'H', "Flush", 4, 4},
                  TypeRow{'F', "FunctionCall", 14, 0}, TypeRow{'P', "Parse", 8, 0},
                  TypeRow{'p', "PasswordMessage", 4, 0}, TypeRow{'Q', "Query", 5, 0},
                  TypeRow{'S', "Sync", 4, 4}, TypeRow{'X', "Terminate", 4, 4});
}

TypeRow backend_row() {
  return GENERATE(TypeRow{'R', "Authentication", 8, 0}, TypeRow{'K', "BackendKeyData", 12, 264},
                  TypeRow{'2', "BindComplete", 4, 4}, TypeRow{'3', "CloseComplete", 4, 4},
                  TypeRow{'C', "CommandComplete", 5, 0}, TypeRow{'d', "CopyData", 4, 0},
                  TypeRow{'c', "CopyDone", 4, 4}, TypeRow{'G', "CopyInResponse", 7, 0},
                  TypeRow{'H', "CopyOutResponse", 7, 0}, TypeRow{'W', "CopyBothResponse", 7, 0},
                  TypeRow{'D', "DataRow", 6, 0}, TypeRow{'I', "EmptyQueryResponse", 4, 4},
                  TypeRow{'E', "ErrorResponse", 5, 0}, TypeRow{'V', "FunctionCallResponse", 8, 0},
                  TypeRow{'v', "NegotiateProtocolVersion", 12, 0}, TypeRow{'n', "NoData", 4, 4},
                  TypeRow{'N', "NoticeResponse", 5, 0}, TypeRow{'A', "NotificationResponse", 10, 0},
                  TypeRow{'t', "ParameterDescription", 6, 0}, TypeRow{'S', "ParameterStatus", 6, 0},
                  TypeRow{'1', "ParseComplete", 4, 4}, TypeRow{'s', "PortalSuspended", 4, 4},
                  TypeRow{'Z', "ReadyForQuery", 5, 5}, TypeRow{'T', "RowDescription", 6, 0});
}

Bytes header(char type, std::uint32_t length) {
  return Body().u8(static_cast<unsigned char>(type)).u32(length).bytes();
}

void check_type_row(Direction dir, const TypeRow& row) {
  const auto& [type, name, min_length, max_length] = row;
  CAPTURE(type, name);
  REQUIRE(message_name(dir, type) != nullptr);
  CHECK(std::string(message_name(dir, type)) == name);

  const FrameResult ok = peek_frame(view(header(type, min_length)), dir, 1024);
  REQUIRE(ok.status == DecodeStatus::Ok);
  CHECK(ok.error == FrameError::None);
  CHECK(ok.frame.type == type);
  CHECK(ok.frame.length == min_length);

  const FrameResult shorter = peek_frame(view(header(type, min_length - 1)), dir, 1024);
  CHECK(shorter.status == DecodeStatus::Error);
  CHECK(shorter.error == FrameError::LengthTooShort);

  const std::uint32_t longer = max_length == 0 ? 1025 : max_length + 1;
  const FrameResult too_long = peek_frame(view(header(type, longer)), dir, 1024);
  CHECK(too_long.status == DecodeStatus::Error);
  CHECK(too_long.error == FrameError::LengthTooLong);
}

TEST_CASE("every frontend type byte is framed, named and length-checked", "[protocol]") {
  check_type_row(Direction::Frontend, frontend_row());
}

TEST_CASE("every backend type byte is framed, named and length-checked", "[protocol]") {
  check_type_row(Direction::Backend, backend_row());
}

TEST_CASE("the message tables hold exactly the documented type bytes", "[protocol]") {
  CHECK(message_types(Direction::Frontend).size() == 14);
  CHECK(message_types(Direction::Backend).size() == 24);
  for (Direction dir : {Direction::Frontend, Direction::Backend}) {
    for (const MessageType& row : message_types(dir)) {
      CHECK(find_message_type(dir, row.type) == &row);
    }
  }
}

TEST_CASE("a byte that is no message type in a direction is rejected as unknown", "[protocol]") {
  const Direction dir = GENERATE(Direction::Frontend, Direction::Backend);
  const std::string valid =
      dir == Direction::Frontend ? "BCdcfDEHFPpQSX" : "RK23CdcGHWDIEVvnNAtS1sZT";
  const int byte = GENERATE(range(0, 256));
  const char type = static_cast<char>(byte);
  if (valid.find(type) != std::string::npos) return;
  CAPTURE(byte);
  CHECK(message_name(dir, type) == nullptr);
  const FrameResult r = peek_frame(view(header(type, 16)), dir, 1024);
  CHECK(r.status == DecodeStatus::Error);
  CHECK(r.error == FrameError::UnknownType);
}

TEST_CASE("a shared type byte names a different message in each direction", "[protocol]") {
  CHECK(std::string(message_name(Direction::Frontend, 'D')) == "Describe");
  CHECK(std::string(message_name(Direction::Backend, 'D')) == "DataRow");
  CHECK(std::string(message_name(Direction::Frontend, 'E')) == "Execute");
  CHECK(std::string(message_name(Direction::Backend, 'E')) == "ErrorResponse");
  CHECK(std::string(message_name(Direction::Frontend, 'S')) == "Sync");
  CHECK(std::string(message_name(Direction::Backend, 'S')) == "ParameterStatus");
  CHECK(message_name(Direction::Frontend, 'Z') == nullptr);
  CHECK(message_name(Direction::Backend, 'Q') == nullptr);
}

// Realistic messages of each direction, hand-written from "Message Formats".
Bytes sample_frontend_message() {
  return GENERATE(message('Q', Body().cstr("SELECT 1")),
                  message('P', Body().cstr("s1").cstr("SELECT $1::int").u16(1).u32(23)),
                  message('B', Body().cstr("").cstr("s1").u16(0).u16(1).i32(2).str("42").u16(0)),
                  message('D', Body().u8('P').cstr("")), message('E', Body().cstr("").u32(0)),
                  message('S', Body()), message('X', Body()), message('H', Body()),
                  message('p', Body().cstr("secret")), message('C', Body().u8('S').cstr("s1")),
                  message('d', Body().str("1\tx\n")), message('c', Body()),
                  message('f', Body().cstr("aborted")));
}

Bytes sample_backend_message() {
  return GENERATE(
      message('R', Body().u32(0)), message('R', Body().u32(5).u32(0x01020304)),
      message('R', Body().u32(10).cstr("SCRAM-SHA-256").u8(0)),
      message('S', Body().cstr("client_encoding").cstr("UTF8")),
      message('K', Body().u32(4242).u32(0xdeadbeef)), message('Z', Body().u8('I')),
      message('T', Body().u16(1).cstr("x").u32(0).u16(0).u32(23).i16(4).i32(-1).u16(0)),
      message('D', Body().u16(2).i32(1).str("1").i32(-1)), message('C', Body().cstr("SELECT 1")),
      message('E', Body().u8('S').cstr("ERROR").u8('C').cstr("42P01").u8('M').cstr("no").u8(0)),
      message('1', Body()), message('2', Body()), message('n', Body()), message('I', Body()),
      message('A', Body().u32(7).cstr("chan").cstr("payload")));
}

void check_every_split(const Bytes& msg, Direction dir) {
  CAPTURE(msg.size(), static_cast<char>(msg[0]));
  for (std::size_t k = 0; k < msg.size(); ++k) {
    CAPTURE(k);
    const FrameResult r = peek_frame(ByteView(msg.data(), k), dir, kDefaultMaxMessageLength);
    if (k < 5) {
      CHECK(r.status == DecodeStatus::NeedMore);
      CHECK(r.error == FrameError::None);
    } else {
      // Header complete, body not yet: Ok, and the caller can see the body is incomplete.
      REQUIRE(r.status == DecodeStatus::Ok);
      CHECK(r.frame.size() == msg.size());
      CHECK(k < r.frame.size());
    }
  }
  const FrameResult full = peek_frame(view(msg), dir, kDefaultMaxMessageLength);
  REQUIRE(full.status == DecodeStatus::Ok);
  CHECK(full.frame.type == static_cast<char>(msg[0]));
  CHECK(full.frame.size() == msg.size());
  CHECK(full.frame.body_size() == msg.size() - 5);
}

TEST_CASE("every frontend message is framed correctly at every byte split", "[protocol]") {
  check_every_split(sample_frontend_message(), Direction::Frontend);
}

TEST_CASE("every backend message is framed correctly at every byte split", "[protocol]") {
  check_every_split(sample_backend_message(), Direction::Backend);
}

TEST_CASE("two messages in one buffer are framed one after the other", "[protocol]") {
  const Bytes first = message('Z', Body().u8('I'));
  const Bytes second = message('C', Body().cstr("INSERT 0 1"));
  const Bytes buf = test::concat({first, second});
  ByteView rest = view(buf);

  const FrameResult a = peek_frame(rest, Direction::Backend, kDefaultMaxMessageLength);
  REQUIRE(a.status == DecodeStatus::Ok);
  CHECK(a.frame.type == 'Z');
  CHECK(a.frame.size() == first.size());
  rest = rest.subspan(a.frame.size());

  const FrameResult b = peek_frame(rest, Direction::Backend, kDefaultMaxMessageLength);
  REQUIRE(b.status == DecodeStatus::Ok);
  CHECK(b.frame.type == 'C');
  CHECK(b.frame.size() == rest.size());
  rest = rest.subspan(b.frame.size());

  CHECK(peek_frame(rest, Direction::Backend, kDefaultMaxMessageLength).status ==
        DecodeStatus::NeedMore);
}

TEST_CASE("an empty buffer needs more bytes", "[protocol]") {
  const FrameResult r = peek_frame(ByteView{}, Direction::Frontend, kDefaultMaxMessageLength);
  CHECK(r.status == DecodeStatus::NeedMore);
  CHECK(r.error == FrameError::None);
  CHECK(peek_startup(ByteView{}).status == DecodeStatus::NeedMore);
}

TEST_CASE("a header alone is Ok and shows the body still to come", "[protocol]") {
  const Bytes h = header('Q', 13);
  const FrameResult r = peek_frame(view(h), Direction::Frontend, kDefaultMaxMessageLength);
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.frame.type == 'Q');
  CHECK(r.frame.length == 13);
  CHECK(r.frame.size() == 14);
  CHECK(r.frame.body_size() == 9);
}

TEST_CASE("a declared length below 4 is too short for any type", "[protocol]") {
  const std::uint32_t length = GENERATE(0u, 1u, 2u, 3u);
  const FrameResult f = peek_frame(view(header('S', length)), Direction::Frontend, 1024);
  CHECK(f.status == DecodeStatus::Error);
  CHECK(f.error == FrameError::LengthTooShort);
  // The length is checked before the type: a lost frame boundary is reported as such.
  const FrameResult u = peek_frame(view(header('~', length)), Direction::Frontend, 1024);
  CHECK(u.error == FrameError::LengthTooShort);
}

TEST_CASE("a declared length over the cap is too long", "[protocol]") {
  CHECK(peek_frame(view(header('Q', 1024)), Direction::Frontend, 1024).status == DecodeStatus::Ok);
  const FrameResult r = peek_frame(view(header('Q', 1025)), Direction::Frontend, 1024);
  CHECK(r.status == DecodeStatus::Error);
  CHECK(r.error == FrameError::LengthTooLong);
  const FrameResult huge =
      peek_frame(view(header('d', 0xffffffffu)), Direction::Backend, kDefaultMaxMessageLength);
  CHECK(huge.error == FrameError::LengthTooLong);
}

TEST_CASE("an unknown type byte is rejected once the header is complete", "[protocol]") {
  const Bytes buf = header('?', 8);
  CHECK(peek_frame(ByteView(buf.data(), 4), Direction::Frontend, 1024).status ==
        DecodeStatus::NeedMore);
  const FrameResult r = peek_frame(view(buf), Direction::Frontend, 1024);
  CHECK(r.status == DecodeStatus::Error);
  CHECK(r.error == FrameError::UnknownType);
}

TEST_CASE("big-endian helpers read network byte order", "[protocol]") {
  const Bytes b = raw({0x12, 0x34, 0x56, 0x78, 0xff});
  CHECK(read_u32(b.data()) == 0x12345678u);
  CHECK(read_u16(b.data()) == 0x1234u);
  CHECK(read_u32(b.data() + 1) == 0x345678ffu);
}

TEST_CASE("frame errors are named by stable snake_case tokens", "[protocol]") {
  CHECK(to_string(FrameError::LengthTooLong) == "length_too_long");
  CHECK(to_string(FrameError::UnsupportedProtocol) == "unsupported_protocol");
}

TEST_CASE("every frame error has a distinct description", "[protocol]") {
  const FrameError errors[] = {FrameError::None,           FrameError::LengthTooShort,
                               FrameError::LengthTooLong,  FrameError::UnknownType,
                               FrameError::BadStartupCode, FrameError::UnsupportedProtocol,
                               FrameError::Malformed};
  for (FrameError a : errors) {
    CHECK_FALSE(to_string(a).empty());
    for (FrameError b : errors) {
      if (a != b) CHECK(to_string(a) != to_string(b));
    }
  }
}

// ---- startup phase ----

StartupFrameResult peek(const Bytes& b) { return peek_startup(view(b)); }

TEST_CASE("an SSLRequest is recognised from its documented bytes", "[protocol]") {
  const StartupFrameResult r = peek(raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}));
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.kind == StartupKind::SslRequest);
  CHECK(r.length == 8);
  CHECK(r.code == kSslRequestCode);
}

TEST_CASE("a GSSENCRequest is recognised from its documented bytes", "[protocol]") {
  const StartupFrameResult r = peek(raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}));
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.kind == StartupKind::GssEncRequest);
  CHECK(r.code == kGssEncRequestCode);
}

TEST_CASE("a CancelRequest is recognised once all 16 bytes are present", "[protocol]") {
  const Bytes b = raw({0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x10, 0x92, 1, 2, 3, 4});
  for (std::size_t k = 0; k < b.size(); ++k) {
    CAPTURE(k);
    CHECK(peek_startup(ByteView(b.data(), k)).status == DecodeStatus::NeedMore);
  }
  const StartupFrameResult r = peek(b);
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.kind == StartupKind::CancelRequest);
  CHECK(r.length == 16);
}

TEST_CASE("request packets with the wrong length are malformed", "[protocol]") {
  const auto [code, length] =
      GENERATE(std::pair{kSslRequestCode, 9u}, std::pair{kSslRequestCode, 16u},
               std::pair{kGssEncRequestCode, 12u}, std::pair{kCancelRequestCode, 8u},
               std::pair{kCancelRequestCode, 12u}, std::pair{kCancelRequestCode, 20u});
  CAPTURE(code, length);
  // The error shows as soon as the code is in, without waiting for the declared body.
  const StartupFrameResult r = peek(Body().u32(length).u32(code).bytes());
  CHECK(r.status == DecodeStatus::Error);
  CHECK(r.error == FrameError::Malformed);
}

TEST_CASE("startup lengths outside 8 to 10000 are rejected", "[protocol]") {
  for (std::uint32_t length : {0u, 4u, 7u}) {
    const StartupFrameResult r = peek(Body().u32(length).bytes());
    CHECK(r.status == DecodeStatus::Error);
    CHECK(r.error == FrameError::LengthTooShort);
  }
  const StartupFrameResult too_long = peek(Body().u32(10001).bytes());
  CHECK(too_long.status == DecodeStatus::Error);
  CHECK(too_long.error == FrameError::LengthTooLong);
  const StartupFrameResult at_cap = peek(Body().u32(10000).u32(kProtocolVersion3).bytes());
  CHECK(at_cap.status == DecodeStatus::NeedMore);
}

TEST_CASE("protocol 2.0 is rejected as unsupported", "[protocol]") {
  const StartupFrameResult r = peek(packet(Body().u32(0x00020000).cstr("user").cstr("a").u8(0)));
  CHECK(r.status == DecodeStatus::Error);
  CHECK(r.error == FrameError::UnsupportedProtocol);
  CHECK(r.code == 0x00020000u);
}

TEST_CASE("protocol 3.1 is accepted for the caller to negotiate", "[protocol]") {
  const StartupFrameResult r = peek(packet(Body().u32(0x00030001).cstr("user").cstr("a").u8(0)));
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.kind == StartupKind::Startup);
  CHECK(r.code == 0x00030001u);
}

TEST_CASE("an unknown request code is a bad startup code", "[protocol]") {
  const StartupFrameResult r = peek(Body().u32(8).u32((1234u << 16) | 5681u).bytes());
  CHECK(r.status == DecodeStatus::Error);
  CHECK(r.error == FrameError::BadStartupCode);
}

TEST_CASE("a startup message is framed correctly at every byte split", "[protocol]") {
  const Bytes b = packet(
      Body().u32(kProtocolVersion3).cstr("user").cstr("app").cstr("database").cstr("db").u8(0));
  for (std::size_t k = 0; k < b.size(); ++k) {
    CAPTURE(k);
    const StartupFrameResult r = peek_startup(ByteView(b.data(), k));
    CHECK(r.status == DecodeStatus::NeedMore);
    CHECK(r.error == FrameError::None);
  }
  const StartupFrameResult r = peek(b);
  REQUIRE(r.status == DecodeStatus::Ok);
  CHECK(r.kind == StartupKind::Startup);
  CHECK(r.length == b.size());
  CHECK(r.code == kProtocolVersion3);
}

TEST_CASE("a startup message followed by more bytes is framed by its own length", "[protocol]") {
  const Bytes first = raw({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f});
  const Bytes second = packet(Body().u32(kProtocolVersion3).cstr("user").cstr("u").u8(0));
  const Bytes buf = test::concat({first, second});
  const StartupFrameResult a = peek(buf);
  REQUIRE(a.status == DecodeStatus::Ok);
  CHECK(a.kind == StartupKind::SslRequest);
  const StartupFrameResult b = peek_startup(view(buf).subspan(a.length));
  REQUIRE(b.status == DecodeStatus::Ok);
  CHECK(b.kind == StartupKind::Startup);
  CHECK(b.length == second.size());
}

}  // namespace
}  // namespace sluice::protocol
