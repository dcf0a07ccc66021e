#include "src/cancel_rate_limiter.hpp"

#include <algorithm>
#include <cstring>

namespace sluice {

CancelRateLimiter::CancelRateLimiter(pools::RateLimit rate, std::size_t max_peers)
    : rate_(rate), max_peers_(max_peers), overflow_(rate) {}

std::size_t CancelRateLimiter::KeyHash::operator()(const Key& k) const {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  std::memcpy(&hi, k.data(), 8);
  std::memcpy(&lo, k.data() + 8, 8);
  return std::hash<std::uint64_t>()(hi ^ (lo * 0x9e3779b97f4a7c15ULL));
}

CancelRateLimiter::Key CancelRateLimiter::key_of(const std::optional<asio::ip::address>& peer) {
  Key key{};  // all zero (::, which no peer has): Unix-socket clients
  if (!peer) return key;
  if (peer->is_v4()) {
    return asio::ip::make_address_v6(asio::ip::v4_mapped, peer->to_v4()).to_bytes();
  }
  const asio::ip::address_v6 v6 = peer->to_v6();
  key = v6.to_bytes();
  if (!v6.is_v4_mapped()) std::fill(key.begin() + 8, key.end(), 0);  // its /64
  return key;
}

void CancelRateLimiter::sweep(TimePoint now) {
  if (last_sweep_ && now - *last_sweep_ < std::chrono::seconds(1)) return;
  last_sweep_ = now;
  const std::uint32_t full = std::max<std::uint32_t>(1, rate_.burst);
  std::erase_if(buckets_, [&](const auto& entry) { return entry.second.available(now) >= full; });
}

bool CancelRateLimiter::try_take(const std::optional<asio::ip::address>& peer, TimePoint now) {
  if (!rate_.enabled()) return true;
  const Key key = key_of(peer);
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_peers_) sweep(now);
    if (buckets_.size() >= max_peers_) return overflow_.try_take(now);
    it = buckets_.emplace(key, pools::TokenBucket(rate_)).first;
  }
  return it->second.try_take(now);
}

std::size_t CancelRateLimiter::peers() {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

}  // namespace sluice
