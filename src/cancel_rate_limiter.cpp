#include "src/cancel_rate_limiter.hpp"

#include "src/peer_address.hpp"

#include <algorithm>

namespace sluice {

CancelRateLimiter::CancelRateLimiter(pools::RateLimit rate, std::size_t max_peers)
    : rate_(rate), max_peers_(max_peers), overflow_(rate) {}

void CancelRateLimiter::sweep(TimePoint now) {
  if (last_sweep_ && now - *last_sweep_ < std::chrono::seconds(1)) return;
  last_sweep_ = now;
  const std::uint32_t full = std::max<std::uint32_t>(1, rate_.burst);
  std::erase_if(buckets_, [&](const auto& entry) { return entry.second.available(now) >= full; });
}

bool CancelRateLimiter::try_take(const std::optional<asio::ip::address>& peer, TimePoint now) {
  if (!rate_.enabled()) return true;
  const pools::PeerKey key = peer_key(peer);
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
