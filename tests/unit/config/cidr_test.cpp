#include "config/cidr.hpp"

#include "config/name_pattern.hpp"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <string>

using sluice::config::Cidr;
using sluice::config::matches;
using sluice::config::matches_name_pattern;
using sluice::config::name_pattern_error;
using sluice::config::parse_cidr;

namespace {

using Bytes = std::array<std::uint8_t, 16>;

// A client address as src/ would pass it: parsed with parse_cidr (a bare address is exact).
struct Client {
  Bytes addr;
  bool v4;
};
Client client(const std::string& text) {
  const auto parsed = parse_cidr(text);
  REQUIRE(parsed);
  REQUIRE(parsed->bits == (parsed->v4 ? 32 : 128));
  return {parsed->addr, parsed->v4};
}

bool in(const std::string& range, const std::string& address) {
  const auto cidr = parse_cidr(range);
  REQUIRE(cidr);
  const Client c = client(address);
  return matches(*cidr, c.addr, c.v4);
}

}  // namespace

TEST_CASE("IPv4 ranges and addresses parse with their prefix length", "[config][cidr]") {
  const auto cidr = parse_cidr("10.1.2.3/8");
  REQUIRE(cidr);
  CHECK(cidr->v4);
  CHECK(cidr->bits == 8);
  CHECK(cidr->addr == Bytes{10, 0, 0, 0});  // host bits cleared
  CHECK(parse_cidr("10.0.0.0/8") == cidr);

  const auto single = parse_cidr("192.168.1.7");
  REQUIRE(single);
  CHECK(single->bits == 32);
  CHECK(single->addr == Bytes{192, 168, 1, 7});
  CHECK(parse_cidr("0.0.0.0/0")->bits == 0);
  CHECK(parse_cidr("255.255.255.255/32")->addr == Bytes{255, 255, 255, 255});
  CHECK(parse_cidr("10.0.0.0/12")->addr == Bytes{10, 0, 0, 0});
  CHECK(parse_cidr("10.31.0.0/12")->addr == Bytes{10, 16, 0, 0});
}

TEST_CASE("IPv6 ranges and addresses parse in every text form", "[config][cidr]") {
  const auto [text, bytes, bits] = GENERATE(table<std::string, Bytes, int>({
      {"::", Bytes{}, 128},
      {"::/0", Bytes{}, 0},
      {"::1", Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128},
      {"1::", Bytes{0, 1}, 128},
      {"2001:db8::/32", Bytes{0x20, 0x01, 0x0d, 0xb8}, 32},
      {"2001:DB8:0:0:0:0:0:1/64", Bytes{0x20, 0x01, 0x0d, 0xb8}, 64},
      {"fe80::1:2/10", Bytes{0xfe, 0x80}, 10},
      {"1:2:3:4:5:6:7:8", Bytes{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8}, 128},
      {"1:2:3:4:5:6:7::", Bytes{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0}, 128},
      {"::2:3:4:5:6:7:8", Bytes{0, 0, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8}, 128},
      {"::ffff:10.1.2.3", Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}, 128},
      {"::ffff:10.0.0.0/104", Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0}, 104},
      {"1:2:3:4:5:6:1.2.3.4", Bytes{0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4}, 128},
  }));
  CAPTURE(text);
  const auto cidr = parse_cidr(text);
  REQUIRE(cidr);
  CHECK_FALSE(cidr->v4);
  CHECK(cidr->bits == bits);
  CHECK(cidr->addr == bytes);
}

TEST_CASE("malformed ranges are rejected", "[config][cidr]") {
  const std::string text =
      GENERATE(as<std::string>{}, "", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1",
               "10.0.0.0/+8", "10.0.0.0/8/8", "10.0.0.0/1000", "10.0.0", "10.0.0.0.0", "10.0.0.256",
               "10.00.0.1", "010.0.0.1", "10..0.1", "10.0.0.1 ", " 10.0.0.1", "10.0.0.0 /8",
               "a.b.c.d", "localhost", "::/129", ":::", ":1", "1:", "1::2::3", "1:2:3:4:5:6:7:8:9",
               "1::2:3:4:5:6:7:8", "12345::", "g::1", "fe80::1%eth0", "::ffff:10.0.0",
               "1:2:3:4:5:6:7:1.2.3.4", "::1.2.3.4.5", "1.2.3.4::", "[::1]", "::1/");
  CAPTURE(text);
  CHECK_FALSE(parse_cidr(text));
}

TEST_CASE("an IPv4 range matches the addresses within its prefix", "[config][cidr]") {
  CHECK(in("10.0.0.0/8", "10.255.1.2"));
  CHECK_FALSE(in("10.0.0.0/8", "11.0.0.0"));
  CHECK(in("192.168.1.0/24", "192.168.1.255"));
  CHECK_FALSE(in("192.168.1.0/24", "192.168.2.1"));
  CHECK(in("172.16.0.0/12", "172.31.255.255"));
  CHECK_FALSE(in("172.16.0.0/12", "172.32.0.0"));
  CHECK(in("192.168.1.7", "192.168.1.7"));
  CHECK_FALSE(in("192.168.1.7", "192.168.1.6"));
  CHECK(in("0.0.0.0/0", "203.0.113.9"));
}

TEST_CASE("an IPv4-mapped IPv6 client address matches IPv4 ranges", "[config][cidr]") {
  CHECK(in("10.0.0.0/8", "::ffff:10.1.2.3"));
  CHECK_FALSE(in("10.0.0.0/8", "::ffff:11.1.2.3"));
  CHECK(in("0.0.0.0/0", "::ffff:1.2.3.4"));
  CHECK(in("127.0.0.1", "::ffff:127.0.0.1"));
  // Not mapped: an IPv6 client never matches an IPv4 range, whatever its last 32 bits.
  CHECK_FALSE(in("0.0.0.0/0", "::1"));
  CHECK_FALSE(in("10.0.0.0/8", "::10.1.2.3"));
  CHECK_FALSE(in("10.0.0.0/8", "64:ff9b::10.1.2.3"));
}

TEST_CASE("an IPv6 range matches IPv6 clients, and IPv4 clients through the mapped form",
          "[config][cidr]") {
  CHECK(in("2001:db8::/32", "2001:db8:ffff::1"));
  CHECK_FALSE(in("2001:db8::/32", "2001:db9::1"));
  CHECK(in("fe80::/10", "febf::1"));
  CHECK_FALSE(in("fe80::/10", "fec0::1"));
  CHECK(in("::1", "::1"));
  CHECK_FALSE(in("::1", "::2"));
  CHECK(in("::/0", "2001:db8::1"));
  CHECK(in("::ffff:10.0.0.0/104", "10.9.8.7"));
  CHECK_FALSE(in("::ffff:10.0.0.0/104", "11.9.8.7"));
  CHECK_FALSE(in("2001:db8::/32", "10.0.0.1"));
}

TEST_CASE("name patterns are exact names or prefixes ending in one '*'", "[config][cidr]") {
  CHECK_FALSE(name_pattern_error("psql"));
  CHECK_FALSE(name_pattern_error("checkout*"));
  CHECK_FALSE(name_pattern_error("*"));
  CHECK(name_pattern_error("") == "a pattern must not be empty");
  CHECK(name_pattern_error("a*b") ==
        "invalid pattern \"a*b\": a single '*' is allowed, and only at the end");
  CHECK(name_pattern_error("a**"));
  CHECK(name_pattern_error("*a"));

  CHECK(matches_name_pattern("psql", "psql"));
  CHECK_FALSE(matches_name_pattern("psql", "psql2"));
  CHECK_FALSE(matches_name_pattern("psql", "PSQL"));
  CHECK(matches_name_pattern("checkout*", "checkout"));
  CHECK(matches_name_pattern("checkout*", "checkout-worker-7"));
  CHECK_FALSE(matches_name_pattern("checkout*", "check"));
  CHECK(matches_name_pattern("*", ""));
  CHECK(matches_name_pattern("*", "anything"));
}
