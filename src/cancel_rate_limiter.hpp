// CancelRateLimiter: how many CancelRequests each client address may send (issue 12, item 10).
//
// Every CancelRequest is answered the same way, by closing the connection, so a peer guessing
// cancel keys pays one connection per guess; this bounds the guesses per peer with a token bucket
// (pools::TokenBucket: kRate per second, bursts of up to kBurst). A peer is what peer_key() says
// (src/peer_address.hpp): an IPv4 address, an IPv6 /64 prefix or, for every Unix-socket client
// together, "local".
//
// Memory is bounded: at most `max_peers` buckets (about 80 bytes each). When the table is full,
// buckets that have refilled completely (the same as no bucket) are dropped, at most once per
// second of the caller's clock; a peer that still finds no room shares one overflow bucket with
// every other such peer, so a flood from more addresses than the table holds is still limited as
// a whole.
//
// Pure: the caller passes `now` (std::chrono::steady_clock). Thread-safe: one mutex, held for a
// hash look-up and a few integer operations (and, when the table is full, one sweep per second).
#pragma once

#include "pools/peer_key.hpp"
#include "pools/token_bucket.hpp"
#include "src/asio_prelude.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

namespace sluice {

class CancelRateLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Default: 20 cancel requests a second per peer, bursts of 40. A client cancels at most one
  // statement at a time per connection, so even a pool of 40 connections behind one address
  // cancelling at once passes; guessing a 62-bit key at 20 guesses a second does not.
  static constexpr pools::RateLimit kDefaultRate{.per_second = 20, .burst = 40};
  static constexpr std::size_t kDefaultMaxPeers = 4096;

  explicit CancelRateLimiter(pools::RateLimit rate = kDefaultRate,
                             std::size_t max_peers = kDefaultMaxPeers);

  // Takes one token of `peer`'s bucket (nullopt: a Unix-socket client); false when it is empty,
  // i.e. the CancelRequest must be dropped.
  bool try_take(const std::optional<asio::ip::address>& peer, TimePoint now);

  // Buckets kept now, the overflow bucket not counted (for tests).
  std::size_t peers();

 private:
  // Called with mu_ held when the table is full: drops the buckets that are full again.
  void sweep(TimePoint now);

  const pools::RateLimit rate_;
  const std::size_t max_peers_;
  std::mutex mu_;  // guards everything below
  std::unordered_map<pools::PeerKey, pools::TokenBucket, pools::PeerKeyHash> buckets_;
  pools::TokenBucket overflow_;
  std::optional<TimePoint> last_sweep_;
};

}  // namespace sluice
