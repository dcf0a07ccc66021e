#include "pools/login_gate.hpp"

#include <algorithm>
#include <iterator>

namespace sluice::pools {

LoginGate::LoginGate(LoginLimits limits) : limits_(limits) {}

bool LoginGate::refilled(const Entry& e, TimePoint now) const {
  if (!limits_.rate.enabled()) return true;
  return e.bucket.available(now) >= std::max<std::uint32_t>(1, limits_.rate.burst);
}

void LoginGate::trim(TimePoint now) {
  while (!idle_.empty()) {
    auto it = entries_.find(idle_.front());
    if (idle_.size() <= limits_.max_idle_peers && !refilled(it->second, now)) break;
    entries_.erase(it);
    idle_.pop_front();
  }
}

LoginVerdict LoginGate::begin(const PeerKey& peer, TimePoint now) {
  trim(now);
  auto it = entries_.find(peer);
  if (it == entries_.end()) {
    // A new entry's bucket is full: it is never refused.
    it = entries_.emplace(peer, Entry{.bucket = TokenBucket(limits_.rate)}).first;
  }
  Entry& e = it->second;
  if (limits_.max_per_peer != 0 && e.logins >= limits_.max_per_peer) return LoginVerdict::TooMany;
  if (!e.bucket.try_take(now)) return LoginVerdict::RateLimited;
  if (e.idle) {
    idle_.erase(e.idle_at);
    e.idle = false;
  }
  ++e.logins;
  return LoginVerdict::Admitted;
}

bool LoginGate::end(const PeerKey& peer, TimePoint now) {
  auto it = entries_.find(peer);
  if (it == entries_.end() || it->second.logins == 0) return false;
  Entry& e = it->second;
  if (--e.logins == 0) {
    if (refilled(e, now)) {
      entries_.erase(it);
    } else {
      idle_.push_back(peer);
      e.idle_at = std::prev(idle_.end());
      e.idle = true;
    }
  }
  trim(now);
  return true;
}

void LoginGate::set_limits(const LoginLimits& limits, TimePoint now) {
  limits_ = limits;
  for (auto& [key, e] : entries_) e.bucket.reconfigure(limits_.rate, now);
  trim(now);
}

std::uint32_t LoginGate::in_progress(const PeerKey& peer) const {
  auto it = entries_.find(peer);
  return it == entries_.end() ? 0 : it->second.logins;
}

std::optional<std::string> LoginGate::check_invariants() const {
  std::size_t idle = 0;
  for (const auto& [key, e] : entries_) {
    if (e.idle != (e.logins == 0)) return "an entry is idle exactly when it has no login";
    if (e.idle) {
      ++idle;
      if (*e.idle_at != key) return "an idle entry's place in the idle list names another peer";
    }
  }
  if (idle != idle_.size()) return "the idle list and the idle entries differ in number";
  if (idle_.size() > limits_.max_idle_peers) return "more idle peers than max_idle_peers";
  return std::nullopt;
}

}  // namespace sluice::pools
