// LoginGate: how many connections one peer may have still logging in, and how fast it may open
// them (issue 12, item 5).
//
// A connection *logs in* from the moment it is accepted until it has authenticated (or closed):
// TLS handshake, startup packet, authentication. That phase costs Sluice a descriptor and work
// while the peer has proved nothing, so each peer (a PeerKey: an IPv4 address, an IPv6 /64, or
// every Unix-socket client together) may have at most `max_per_peer` such connections at once,
// and may open new ones at `rate` (a token bucket, pools::TokenBucket). begin() decides for a
// connection just accepted; end() is called once for each admitted connection, when it has
// authenticated or closed. Refusal order: the count first, then a token; a refusal changes
// nothing.
//
// Memory is bounded: a peer has an entry while it has a login in progress (at most one per open
// connection), and afterwards only while its bucket is refilling, at most `max_idle_peers` of
// those (the oldest is forgotten first: it then starts again with a full bucket). With no rate
// limit, an entry goes when its count drops to zero.
//
// Pure and single-threaded: no clock (`now` is a steady_clock time point passed in), no I/O, no
// locks; the owner in src/ (ConnectionGate) serialises calls.
#pragma once

#include "pools/peer_key.hpp"
#include "pools/token_bucket.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>

namespace sluice::pools {

struct LoginLimits {
  std::uint32_t max_per_peer = 0;     // logins in progress per peer; 0 = no limit
  RateLimit rate;                     // new connections per peer; off = no limit
  std::size_t max_idle_peers = 4096;  // peers kept only for their refilling bucket

  bool operator==(const LoginLimits& o) const {
    return max_per_peer == o.max_per_peer && rate.per_second == o.rate.per_second &&
           rate.burst == o.rate.burst && max_idle_peers == o.max_idle_peers;
  }
};

enum class LoginVerdict {
  Admitted,     // counted until end()
  TooMany,      // the peer already has max_per_peer logins in progress
  RateLimited,  // the peer's bucket is empty
};

class LoginGate {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit LoginGate(LoginLimits limits = {});

  LoginVerdict begin(const PeerKey& peer, TimePoint now);
  // The end of an admitted login (authenticated or closed). A peer with no login in progress is
  // ignored (false): a double end() is harmless.
  bool end(const PeerKey& peer, TimePoint now);

  // New limits (a reload): logins in progress are kept even above a lowered maximum; buckets keep
  // their history (TokenBucket::reconfigure).
  void set_limits(const LoginLimits& limits, TimePoint now);
  const LoginLimits& limits() const { return limits_; }

  std::uint32_t in_progress(const PeerKey& peer) const;  // 0 for an unknown peer
  std::size_t peers() const { return entries_.size(); }  // entries kept now
  // Recomputes the idle list from the entries and checks the bounds; the first mismatch, if any.
  std::optional<std::string> check_invariants() const;

 private:
  struct Entry {
    std::uint32_t logins = 0;
    TokenBucket bucket;
    bool idle = false;                     // in idle_ (logins == 0, bucket still refilling)
    std::list<PeerKey>::iterator idle_at;  // its place there, when idle
  };
  bool refilled(const Entry& e, TimePoint now) const;
  // Forgets idle peers whose bucket is full again (oldest first) and the oldest beyond the bound.
  void trim(TimePoint now);

  LoginLimits limits_;
  std::unordered_map<PeerKey, Entry, PeerKeyHash> entries_;
  std::list<PeerKey> idle_;  // peers with no login in progress, oldest first
};

}  // namespace sluice::pools
