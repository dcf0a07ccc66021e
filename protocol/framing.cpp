#include "protocol/framing.hpp"

#include "protocol/messages.hpp"

namespace sluice::protocol {
namespace {

constexpr std::size_t kHeaderSize = 5;          // type byte + int32 length
constexpr std::uint32_t kMinStartupLength = 8;  // int32 length + int32 code
constexpr std::uint32_t kCancelRequestLength = 16;
constexpr std::uint32_t kRequestMajor = 1234;  // major half of the special request codes

FrameResult frame_error(Frame frame, FrameError error) {
  return FrameResult{DecodeStatus::Error, frame, error};
}

StartupFrameResult startup_error(std::uint32_t length, std::uint32_t code, FrameError error) {
  return StartupFrameResult{DecodeStatus::Error, StartupKind::Startup, length, code, error};
}

// Classifies a startup-phase code and checks the length that code implies. The code is known
// after 8 bytes, so a request with an impossible length fails before its body is awaited.
StartupFrameResult classify_startup(std::uint32_t length, std::uint32_t code) {
  StartupFrameResult r{DecodeStatus::Ok, StartupKind::Startup, length, code, FrameError::None};
  switch (code) {
    case kCancelRequestCode:
      r.kind = StartupKind::CancelRequest;
      if (length != kCancelRequestLength) return startup_error(length, code, FrameError::Malformed);
      return r;
    case kSslRequestCode:
      r.kind = StartupKind::SslRequest;
      if (length != kMinStartupLength) return startup_error(length, code, FrameError::Malformed);
      return r;
    case kGssEncRequestCode:
      r.kind = StartupKind::GssEncRequest;
      if (length != kMinStartupLength) return startup_error(length, code, FrameError::Malformed);
      return r;
    default:
      break;
  }
  const std::uint32_t major = code >> 16;
  if (major == kRequestMajor) return startup_error(length, code, FrameError::BadStartupCode);
  if (major != 3) return startup_error(length, code, FrameError::UnsupportedProtocol);
  return r;
}

}  // namespace

std::string_view to_string(FrameError e) {
  switch (e) {
    case FrameError::None:
      return "none";
    case FrameError::LengthTooShort:
      return "length_too_short";
    case FrameError::LengthTooLong:
      return "length_too_long";
    case FrameError::UnknownType:
      return "unknown_type";
    case FrameError::BadStartupCode:
      return "bad_startup_code";
    case FrameError::UnsupportedProtocol:
      return "unsupported_protocol";
    case FrameError::Malformed:
      return "malformed";
  }
  return "unknown";
}

std::uint32_t read_u32(const std::byte* p) {
  return std::to_integer<std::uint32_t>(p[0]) << 24 | std::to_integer<std::uint32_t>(p[1]) << 16 |
         std::to_integer<std::uint32_t>(p[2]) << 8 | std::to_integer<std::uint32_t>(p[3]);
}

std::uint16_t read_u16(const std::byte* p) {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[0]) << 8 |
                                    std::to_integer<unsigned>(p[1]));
}

FrameResult peek_frame(ByteView buf, Direction dir, std::uint32_t max_length) {
  if (buf.size() < kHeaderSize) return FrameResult{};
  const Frame frame{std::to_integer<char>(buf[0]), read_u32(buf.data() + 1)};
  // Length first: once it is out of bounds, nothing after this header can be trusted.
  if (frame.length < 4) return frame_error(frame, FrameError::LengthTooShort);
  if (frame.length > max_length) return frame_error(frame, FrameError::LengthTooLong);
  const MessageType* row = find_message_type(dir, frame.type);
  if (row == nullptr) return frame_error(frame, FrameError::UnknownType);
  if (frame.length < row->min_length) return frame_error(frame, FrameError::LengthTooShort);
  if (row->max_length != 0 && frame.length > row->max_length) {
    return frame_error(frame, FrameError::LengthTooLong);
  }
  return FrameResult{DecodeStatus::Ok, frame, FrameError::None};
}

StartupFrameResult peek_startup(ByteView buf) {
  if (buf.size() < 4) return StartupFrameResult{};
  const std::uint32_t length = read_u32(buf.data());
  if (length < kMinStartupLength) return startup_error(length, 0, FrameError::LengthTooShort);
  if (length > kMaxStartupLength) return startup_error(length, 0, FrameError::LengthTooLong);
  if (buf.size() < kMinStartupLength) return StartupFrameResult{};
  const StartupFrameResult r = classify_startup(length, read_u32(buf.data() + 4));
  if (r.status == DecodeStatus::Ok && buf.size() < length) return StartupFrameResult{};
  return r;
}

}  // namespace sluice::protocol
