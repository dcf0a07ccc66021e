#include "config/cidr.hpp"

#include <cstddef>

namespace sluice::config {
namespace {

using Bytes = std::array<std::uint8_t, 16>;

bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "a.b.c.d" with decimal octets 0..255 and no leading zeros (which some parsers read as octal).
bool parse_v4(std::string_view text, std::uint8_t* out) {
  int octet = 0;
  std::size_t pos = 0;
  while (octet < 4) {
    std::size_t end = pos;
    while (end < text.size() && is_digit(text[end])) ++end;
    const std::size_t digits = end - pos;
    if (digits == 0 || digits > 3 || (digits > 1 && text[pos] == '0')) return false;
    int value = 0;
    for (std::size_t i = pos; i < end; ++i) value = value * 10 + (text[i] - '0');
    if (value > 255) return false;
    out[octet++] = static_cast<std::uint8_t>(value);
    if (octet < 4) {
      if (end >= text.size() || text[end] != '.') return false;
      pos = end + 1;
    } else if (end != text.size()) {
      return false;
    }
  }
  return true;
}

// RFC 4291 text form: up to 8 groups of 1..4 hex digits, at most one "::", optionally ending in
// a dotted IPv4 address that fills the last 32 bits.
bool parse_v6(std::string_view text, Bytes& out) {
  std::array<std::uint16_t, 8> groups{};
  int count = 0;  // groups written
  int gap = -1;   // index in `groups` where "::" stands
  std::size_t pos = 0;
  if (text.starts_with("::")) {
    gap = 0;
    pos = 2;
    if (pos == text.size()) {
      out.fill(0);
      return true;
    }
  } else if (text.starts_with(':')) {
    return false;
  }
  while (pos < text.size()) {
    std::size_t end = pos;
    while (end < text.size() && hex_value(text[end]) >= 0) ++end;
    if (end < text.size() && text[end] == '.') {  // embedded IPv4: must be the last part
      if (count > 6) return false;
      std::uint8_t v4[4];
      if (!parse_v4(text.substr(pos), v4)) return false;
      groups[static_cast<std::size_t>(count++)] = static_cast<std::uint16_t>(v4[0] << 8 | v4[1]);
      groups[static_cast<std::size_t>(count++)] = static_cast<std::uint16_t>(v4[2] << 8 | v4[3]);
      pos = text.size();
      break;
    }
    const std::size_t digits = end - pos;
    if (digits == 0 || digits > 4 || count == 8) return false;
    unsigned value = 0;
    for (std::size_t i = pos; i < end; ++i)
      value = value * 16 + static_cast<unsigned>(hex_value(text[i]));
    groups[static_cast<std::size_t>(count++)] = static_cast<std::uint16_t>(value);
    if (end == text.size()) {
      pos = end;
      break;
    }
    if (text[end] != ':') return false;
    if (end + 1 < text.size() && text[end + 1] == ':') {
      if (gap >= 0) return false;  // a second "::"
      gap = count;
      pos = end + 2;
      if (pos == text.size()) break;
    } else {
      pos = end + 1;
      if (pos == text.size()) return false;  // a trailing single ':'
    }
  }
  if (gap < 0 ? count != 8 : count > 7) return false;
  std::array<std::uint16_t, 8> full{};
  if (gap < 0) {
    full = groups;
  } else {
    const int tail = count - gap;
    for (int i = 0; i < gap; ++i)
      full[static_cast<std::size_t>(i)] = groups[static_cast<std::size_t>(i)];
    for (int i = 0; i < tail; ++i) {
      full[static_cast<std::size_t>(8 - tail + i)] = groups[static_cast<std::size_t>(gap + i)];
    }
  }
  for (std::size_t i = 0; i < 8; ++i) {
    out[2 * i] = static_cast<std::uint8_t>(full[i] >> 8);
    out[2 * i + 1] = static_cast<std::uint8_t>(full[i] & 0xff);
  }
  return true;
}

// Whether the first `bits` bits of a and b agree.
bool same_prefix(const std::uint8_t* a, const std::uint8_t* b, int bits) {
  int i = 0;
  for (; bits >= 8; bits -= 8, ++i) {
    if (a[i] != b[i]) return false;
  }
  if (bits == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - bits));
  return (a[i] & mask) == (b[i] & mask);
}

constexpr std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_v4_mapped(const Bytes& addr) {
  for (std::size_t i = 0; i < 12; ++i) {
    if (addr[i] != kMappedPrefix[i]) return false;
  }
  return true;
}

}  // namespace

std::optional<Cidr> parse_cidr(std::string_view text) {
  Cidr cidr;
  std::string_view address = text;
  std::optional<int> bits;
  if (const std::size_t slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    const std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    int value = 0;
    for (const char c : digits) {
      if (!is_digit(c)) return std::nullopt;
      value = value * 10 + (c - '0');
    }
    bits = value;
  }
  if (address.find(':') != std::string_view::npos) {
    if (!parse_v6(address, cidr.addr)) return std::nullopt;
    cidr.v4 = false;
    cidr.bits = bits.value_or(128);
    if (cidr.bits > 128) return std::nullopt;
  } else {
    if (!parse_v4(address, cidr.addr.data())) return std::nullopt;
    cidr.v4 = true;
    cidr.bits = bits.value_or(32);
    if (cidr.bits > 32) return std::nullopt;
  }
  // Clear the host bits, so equal ranges compare equal.
  for (int bit = cidr.bits; bit < 128; ++bit) {
    cidr.addr[static_cast<std::size_t>(bit / 8)] &=
        static_cast<std::uint8_t>(~(0x80u >> static_cast<unsigned>(bit % 8)));
  }
  return cidr;
}

bool matches(const Cidr& cidr, const std::array<std::uint8_t, 16>& addr, bool v4) {
  if (cidr.v4) {
    if (v4) return same_prefix(cidr.addr.data(), addr.data(), cidr.bits);
    return is_v4_mapped(addr) && same_prefix(cidr.addr.data(), addr.data() + 12, cidr.bits);
  }
  if (!v4) return same_prefix(cidr.addr.data(), addr.data(), cidr.bits);
  Bytes mapped{};
  for (std::size_t i = 0; i < 12; ++i) mapped[i] = kMappedPrefix[i];
  for (std::size_t i = 0; i < 4; ++i) mapped[12 + i] = addr[i];
  return same_prefix(cidr.addr.data(), mapped.data(), cidr.bits);
}

}  // namespace sluice::config
