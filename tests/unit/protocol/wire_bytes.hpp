// Hand-written wire bytes for the protocol tests: the expected side of every assertion is spelled
// out here, independently of protocol/builders.cpp, so a builder bug cannot hide behind itself.
#pragma once

#include "protocol/framing.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::protocol::test {

using Bytes = std::vector<std::byte>;

// Bytes from a list of small integers and characters: raw({'Z', 0, 0, 0, 5, 'I'}).
inline Bytes raw(std::initializer_list<int> values) {
  Bytes out;
  for (int v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

// A message body (or a whole packet) assembled field by field, big-endian.
class Body {
 public:
  Body& u8(int v) {
    bytes_.push_back(static_cast<std::byte>(v));
    return *this;
  }
  Body& u16(std::uint16_t v) { return u8(v >> 8).u8(v & 0xff); }
  Body& i16(std::int16_t v) { return u16(static_cast<std::uint16_t>(v)); }
  Body& u32(std::uint32_t v) {
    return u8(static_cast<int>(v >> 24))
        .u8(static_cast<int>((v >> 16) & 0xff))
        .u8(static_cast<int>((v >> 8) & 0xff))
        .u8(static_cast<int>(v & 0xff));
  }
  Body& i32(std::int32_t v) { return u32(static_cast<std::uint32_t>(v)); }
  Body& str(std::string_view s) {  // without a NUL
    for (char c : s) u8(static_cast<unsigned char>(c));
    return *this;
  }
  Body& cstr(std::string_view s) { return str(s).u8(0); }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

// A typed message: type byte, then a length that counts itself and `body`.
inline Bytes message(char type, const Body& body) {
  Body m;
  m.u8(static_cast<unsigned char>(type)).u32(static_cast<std::uint32_t>(body.bytes().size() + 4));
  Bytes out = m.bytes();
  out.insert(out.end(), body.bytes().begin(), body.bytes().end());
  return out;
}

// An untyped startup-phase packet: a length that counts itself, then `body`.
inline Bytes packet(const Body& body) {
  Body m;
  m.u32(static_cast<std::uint32_t>(body.bytes().size() + 4));
  Bytes out = m.bytes();
  out.insert(out.end(), body.bytes().begin(), body.bytes().end());
  return out;
}

inline Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline ByteView view(const Bytes& b) { return ByteView(b.data(), b.size()); }

inline std::string text(const Bytes& b) {
  std::string s;
  for (std::byte x : b) s.push_back(static_cast<char>(x));
  return s;
}

// A backend statement name for the StatementMapper tests, standing in for src/'s keyed hash:
// deterministic, and different definitions differ.
inline std::string fake_statement_name(std::string_view body) {
  return "sluice_" + std::to_string(std::hash<std::string_view>{}(body));
}

}  // namespace sluice::protocol::test
