// Client-address ranges for bulkhead classification (`match.client_cidr`). Pure; any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace sluice::config {

// An address range "ADDR/BITS", or a single address. An IPv4 address occupies addr[0..3] and the
// other bytes are zero; an IPv6 address uses all 16 bytes (network byte order, as
// boost::asio::ip::address_v4/v6::to_bytes() give them). Bits beyond the prefix are cleared.
struct Cidr {
  std::array<std::uint8_t, 16> addr{};
  bool v4 = false;
  int bits = 0;  // prefix length: 0..32 (IPv4) or 0..128 (IPv6)
  bool operator==(const Cidr&) const = default;
};

// Parses "10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1", "::ffff:10.0.0.0/104". A bare
// address is a /32 or /128. Host bits set beyond the prefix are accepted and cleared (as
// pg_hba.conf does). Rejects blanks, zone ids ("%eth0"), octets with leading zeros, and prefix
// lengths beyond the family's width. nullopt on anything else.
std::optional<Cidr> parse_cidr(std::string_view text);

// True if the client address `addr` (laid out as in Cidr; `v4` says which family it is) lies in
// `cidr`. An IPv4-mapped IPv6 client address (::ffff:a.b.c.d, what a dual-stack socket reports
// for an IPv4 client) matches IPv4 ranges, and an IPv4 client matches IPv6 ranges through its
// mapped form.
bool matches(const Cidr& cidr, const std::array<std::uint8_t, 16>& addr, bool v4);

}  // namespace sluice::config
