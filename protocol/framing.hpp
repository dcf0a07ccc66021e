// Framing of the PostgreSQL v3 wire protocol, in both directions.
//
// Pure: no I/O, no allocation. Functions peek at the front of a byte span and
// never consume it; the caller advances its own buffer by `Frame::size()` once
// the whole message is present ("frame without consuming", STYLE.md §3).
// Thread-safety: all functions are stateless and may be called from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace sluice::protocol {

using ByteView = std::span<const std::byte>;

// PostgreSQL's own MAX_STARTUP_PACKET_LENGTH.
inline constexpr std::uint32_t kMaxStartupLength = 10000;
// Default cap for every other message (config: max_message_size).
inline constexpr std::uint32_t kDefaultMaxMessageLength = 64 * 1024 * 1024;

// Codes carried in the first int32 after the length of an untyped startup-phase packet.
inline constexpr std::uint32_t kProtocolVersion3 = 196608;  // 3.0
inline constexpr std::uint32_t kCancelRequestCode = 80877102;
inline constexpr std::uint32_t kSslRequestCode = 80877103;
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;

enum class DecodeStatus { NeedMore, Ok, Error };

enum class FrameError {
  None,
  LengthTooShort,       // declared length below 4 (or below the fixed minimum of the packet kind)
  LengthTooLong,        // declared length above the cap
  UnknownType,          // type byte not valid for this direction
  BadStartupCode,       // startup-phase packet with an unknown protocol/request code
  UnsupportedProtocol,  // a protocol major version other than 3
  Malformed,            // body does not match the message layout
};

// A snake_case token ("length_too_long"), usable as a log value and a metric label.
std::string_view to_string(FrameError e);

// Which side sent the bytes. Frontend = client (or Sluice acting as client towards
// a backend); Backend = PostgreSQL server (or Sluice acting as server).
enum class Direction { Frontend, Backend };

// A typed message header: 1 type byte then an int32 length that counts itself.
struct Frame {
  char type = 0;
  std::uint32_t length = 0;  // as declared on the wire (includes the 4 length bytes)
  std::size_t size() const { return std::size_t{1} + length; }  // bytes the whole message occupies
  std::size_t body_size() const { return length - 4; }
};

struct FrameResult {
  DecodeStatus status = DecodeStatus::NeedMore;
  Frame frame{};  // valid when status == Ok (header only; body may not be complete)
  FrameError error = FrameError::None;
};

// Peeks at a typed message header. Returns Ok as soon as the 5 header bytes are present and
// valid; the caller decides whether it needs the complete body (`buf.size() >= frame.size()`) or
// streams it. Validates length (4..max_length) and that `type` is a known message type for
// `dir` (see messages.hpp tables).
FrameResult peek_frame(ByteView buf, Direction dir, std::uint32_t max_length);

// Kind of untyped startup-phase packet (the client's first packet(s)).
enum class StartupKind { Startup, SslRequest, GssEncRequest, CancelRequest };

struct StartupFrameResult {
  DecodeStatus status = DecodeStatus::NeedMore;
  StartupKind kind = StartupKind::Startup;
  std::uint32_t length = 0;  // whole packet length (Ok only); the packet is complete when Ok
  std::uint32_t code = 0;    // protocol version or request code
  FrameError error = FrameError::None;
};

// Peeks at an untyped startup-phase packet. Ok only when the complete packet is present.
// Length must be 8..kMaxStartupLength; SSLRequest/GSSENCRequest exactly 8; CancelRequest exactly
// 16; protocol major version must be 3 (minor versions > 0 are accepted here and negotiated by
// the caller with NegotiateProtocolVersion). Errors are reported as soon as the bytes that show
// them are present (the code is checked once 8 bytes are in), without waiting for the body.
StartupFrameResult peek_startup(ByteView buf);

// Big-endian helpers (bounds are the caller's responsibility).
std::uint32_t read_u32(const std::byte* p);
std::uint16_t read_u16(const std::byte* p);

}  // namespace sluice::protocol
