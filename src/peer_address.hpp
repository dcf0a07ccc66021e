// The peer a client address belongs to, for the per-peer limits (CancelRateLimiter, the login
// limits of ConnectionGate): an IPv4 address; an IPv6 /64 prefix (one host usually holds a whole
// /64, so per-address limits would not bound it); or, for every Unix-socket client together,
// "local" (all zero bytes, the address ::, which no peer has). An IPv4-mapped IPv6 address counts
// as its IPv4 address. Pure; any thread.
#pragma once

#include "pools/peer_key.hpp"
#include "src/asio_prelude.hpp"

#include <algorithm>
#include <optional>

namespace sluice {

inline pools::PeerKey peer_key(const std::optional<asio::ip::address>& peer) {
  pools::PeerKey key{};
  if (!peer) return key;
  if (peer->is_v4()) {
    return asio::ip::make_address_v6(asio::ip::v4_mapped, peer->to_v4()).to_bytes();
  }
  const asio::ip::address_v6 v6 = peer->to_v6();
  key = v6.to_bytes();
  if (!v6.is_v4_mapped()) std::fill(key.begin() + 8, key.end(), 0);  // its /64
  return key;
}

}  // namespace sluice
