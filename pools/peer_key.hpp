// PeerKey: who counts as one peer for the per-peer limits (cancel requests, logins). 16 opaque
// bytes that src/ derives from a client's address (src/peer_address.hpp: an IPv4 address, an
// IPv6 /64, or every Unix-socket client together); pools/ only compares and hashes them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

namespace sluice::pools {

using PeerKey = std::array<unsigned char, 16>;

struct PeerKeyHash {
  std::size_t operator()(const PeerKey& k) const {
    std::uint64_t hi = 0;
    std::uint64_t lo = 0;
    std::memcpy(&hi, k.data(), 8);
    std::memcpy(&lo, k.data() + 8, 8);
    return std::hash<std::uint64_t>()(hi ^ (lo * 0x9e3779b97f4a7c15ULL));
  }
};

}  // namespace sluice::pools
