// CancelRateLimiter: a token bucket per peer (IPv4 address, IPv6 /64, all Unix-socket clients
// together), exact on a fake clock; the table of buckets stays bounded, and peers beyond it share
// one overflow bucket.
#include "src/cancel_rate_limiter.hpp"

#include "support/fake_clock.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>

namespace {

namespace asio = sluice::asio;
using sluice::CancelRateLimiter;
using sluice::test::FakeClock;
using std::chrono::milliseconds;

std::optional<asio::ip::address> ip(const std::string& text) {
  return asio::ip::make_address(text);
}

// How many requests in a row `peer` gets through at `now` (at most `limit`).
int drain(CancelRateLimiter& l, const std::optional<asio::ip::address>& peer, FakeClock& clock,
          int limit = 1000) {
  int taken = 0;
  while (taken < limit && l.try_take(peer, clock.now())) ++taken;
  return taken;
}

}  // namespace

TEST_CASE("a peer gets the default burst of 40, then 20 cancel requests a second", "[src]") {
  FakeClock clock;
  CancelRateLimiter l;
  const auto peer = ip("192.0.2.7");
  CHECK(drain(l, peer, clock) == 40);
  CHECK_FALSE(l.try_take(peer, clock.now()));
  clock.advance(milliseconds(49));
  CHECK_FALSE(l.try_take(peer, clock.now()));
  clock.advance(milliseconds(1));  // one emission interval (50 ms) after the burst
  CHECK(l.try_take(peer, clock.now()));
  CHECK_FALSE(l.try_take(peer, clock.now()));
  clock.advance(std::chrono::seconds(1));
  CHECK(drain(l, peer, clock) == 20);
  clock.advance(std::chrono::seconds(10));  // refills up to the burst, no further
  CHECK(drain(l, peer, clock) == 40);
}

TEST_CASE("peers are limited separately and an IPv6 /64 or all local clients are one peer each",
          "[src]") {
  FakeClock clock;
  CancelRateLimiter l(sluice::pools::RateLimit{.per_second = 1, .burst = 3});
  CHECK(drain(l, ip("192.0.2.1"), clock) == 3);
  CHECK(drain(l, ip("192.0.2.2"), clock) == 3);  // a neighbour has its own bucket
  // The IPv4-mapped form of an IPv4 address is that address.
  CHECK(drain(l, ip("::ffff:192.0.2.1"), clock) == 0);
  CHECK(drain(l, ip("::ffff:192.0.2.3"), clock) == 3);
  CHECK(drain(l, ip("192.0.2.3"), clock) == 0);
  // Every address of one /64 shares a bucket; the next /64 has its own.
  CHECK(drain(l, ip("2001:db8:0:1::1"), clock) == 3);
  CHECK(drain(l, ip("2001:db8:0:1:ffff:ffff:ffff:ffff"), clock) == 0);
  CHECK(drain(l, ip("2001:db8:0:2::1"), clock) == 3);
  // Unix-socket clients (no address) are one peer, distinct from any address.
  CHECK(drain(l, std::nullopt, clock) == 3);
  CHECK(drain(l, std::nullopt, clock) == 0);
  CHECK(drain(l, ip("::"), clock) == 0);  // nobody connects from ::, so sharing is harmless
  CHECK(l.peers() == 6);
}

TEST_CASE("the table of peers is bounded and new peers beyond it share one overflow bucket",
          "[src]") {
  FakeClock clock;
  CancelRateLimiter l(sluice::pools::RateLimit{.per_second = 1, .burst = 2}, 4);
  for (int i = 1; i <= 4; ++i) CHECK(drain(l, ip("198.51.100." + std::to_string(i)), clock) == 2);
  CHECK(l.peers() == 4);
  // Full, and nobody's bucket has refilled: the fifth and sixth peer share the overflow bucket.
  CHECK(drain(l, ip("198.51.100.5"), clock) == 2);
  CHECK(drain(l, ip("198.51.100.6"), clock) == 0);
  CHECK(l.peers() == 4);
  // Known peers keep their own buckets meanwhile.
  clock.advance(std::chrono::seconds(1));
  CHECK(drain(l, ip("198.51.100.1"), clock) == 1);
  // Once buckets have refilled completely they are dropped (at most once a second), which
  // makes room for new peers with buckets of their own.
  clock.advance(std::chrono::seconds(5));
  CHECK(drain(l, ip("198.51.100.7"), clock) == 2);
  CHECK(l.peers() == 1);
  CHECK(drain(l, ip("198.51.100.1"), clock) == 2);  // a fresh (full) bucket, as before
}

TEST_CASE("a full table is swept at most once a second", "[src]") {
  FakeClock clock;
  CancelRateLimiter l(sluice::pools::RateLimit{.per_second = 1000, .burst = 1}, 2);
  CHECK(l.try_take(ip("203.0.113.1"), clock.now()));
  CHECK(l.try_take(ip("203.0.113.2"), clock.now()));
  // Full; the sweep at this instant finds nothing to drop, and the next may only come a second
  // later, although both buckets refill after 1 ms.
  CHECK(l.try_take(ip("203.0.113.3"), clock.now()));  // the overflow bucket
  clock.advance(milliseconds(10));
  CHECK(l.try_take(ip("203.0.113.4"), clock.now()));  // overflow again (refilled), no sweep
  CHECK(l.peers() == 2);
  clock.advance(std::chrono::seconds(1));
  CHECK(l.try_take(ip("203.0.113.5"), clock.now()));
  CHECK(l.peers() == 1);
}
