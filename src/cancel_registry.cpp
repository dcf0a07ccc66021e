#include "src/cancel_registry.hpp"

#include "src/auth/scram.hpp"
#include "src/backend.hpp"

#include <cstring>

namespace sluice {
namespace {
std::uint32_t random_u32() {
  std::string r = auth::random_bytes(4);
  std::uint32_t v = 0;
  std::memcpy(&v, r.data(), 4);
  return v;
}

// A random pid in 1..2^31-1: positive as a signed 32-bit int, as libpq and the drivers store it.
std::uint32_t random_pid() {
  for (;;) {
    const std::uint32_t pid = random_u32() & 0x7fffffffU;
    if (pid != 0) return pid;
  }
}
}  // namespace

CancelRegistry::CancelRegistry()
    : id_([] {
        static std::atomic<std::uint32_t> registries{0};
        return ++registries;
      }()) {}

std::pair<std::uint32_t, std::uint32_t> CancelRegistry::add(std::weak_ptr<ClientSession> session) {
  // Drawn outside the lock; a pid already taken (about one draw in 2^31 / live sessions) is
  // drawn again under it.
  const std::uint32_t secret = random_u32();
  std::uint32_t pid = random_pid();
  std::lock_guard lock(mu_);
  while (entries_.count(pid) != 0) pid = random_pid();
  auto [it, inserted] = entries_.try_emplace(pid);
  it->second.secret = secret;
  it->second.session = std::move(session);
  return {pid, secret};
}

void CancelRegistry::remove(std::uint32_t pid) {
  std::lock_guard lock(mu_);
  entries_.erase(pid);
}

CancelRegistry::Slot* CancelRegistry::slot(std::uint32_t pid) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  return it == entries_.end() ? nullptr : &it->second.slot;
}

std::uint32_t CancelRegistry::intern(const Endpoint& ep) {
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i] == ep) return static_cast<std::uint32_t>(i + 1);
  }
  endpoints_.push_back(ep);
  return static_cast<std::uint32_t>(endpoints_.size());
}

std::uint32_t CancelRegistry::endpoint_of(Backend& backend) {
  if (!backend.remote) return 0;
  // A backend's remote endpoint never changes: interned once, by the session that owns it.
  if (backend.cancel_endpoint >> 32 == id_) {
    return static_cast<std::uint32_t>(backend.cancel_endpoint);
  }
  std::uint32_t index;
  {
    std::lock_guard lock(mu_);
    index = intern(*backend.remote);
  }
  backend.cancel_endpoint = (std::uint64_t{id_} << 32) | index;
  return index;
}

// The key first, then the endpoint (release): a reader that sees the endpoint sees this key or
// a later one of the same session.
void CancelRegistry::store(Slot& slot, std::uint32_t endpoint, std::uint32_t pid,
                           std::uint32_t secret) {
  if (endpoint != 0)
    slot.key_.store((std::uint64_t{pid} << 32) | secret, std::memory_order_relaxed);
  slot.endpoint_.store(endpoint, std::memory_order_release);
}

void CancelRegistry::set_target(Slot& slot, Backend& backend) {
  store(slot, endpoint_of(backend), backend.pid, backend.secret);
}

void CancelRegistry::clear_target(Slot& slot) { store(slot, 0, 0, 0); }

std::optional<CancelTarget> CancelRegistry::target_of(const Entry& entry) const {
  const std::uint32_t endpoint = entry.slot.endpoint_.load(std::memory_order_acquire);
  if (endpoint == 0) return std::nullopt;
  const std::uint64_t key = entry.slot.key_.load(std::memory_order_relaxed);
  return CancelTarget{.endpoint = endpoints_[endpoint - 1],
                      .pid = static_cast<std::uint32_t>(key >> 32),
                      .secret = static_cast<std::uint32_t>(key)};
}

CancelRegistry::Match CancelRegistry::match(std::uint32_t pid, std::uint32_t secret) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  if (it == entries_.end() || it->second.secret != secret) return {};
  return Match{.session = it->second.session.lock(), .target = target_of(it->second)};
}

std::optional<CancelTarget> CancelRegistry::lookup(std::uint32_t pid, std::uint32_t secret) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  if (it == entries_.end() || it->second.secret != secret) return std::nullopt;
  return target_of(it->second);
}

std::shared_ptr<ClientSession> CancelRegistry::session_for(std::uint32_t pid,
                                                           std::uint32_t secret) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  if (it == entries_.end() || it->second.secret != secret) return nullptr;
  return it->second.session.lock();
}

std::shared_ptr<ClientSession> CancelRegistry::find(std::uint32_t pid) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  return it == entries_.end() ? nullptr : it->second.session.lock();
}

std::vector<std::shared_ptr<ClientSession>> CancelRegistry::sessions() {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<ClientSession>> out;
  for (auto& [pid, e] : entries_) {
    if (auto s = e.session.lock()) out.push_back(std::move(s));
  }
  return out;
}

std::size_t CancelRegistry::size() {
  std::lock_guard lock(mu_);
  return entries_.size();
}

bool CancelRegistry::allow_cancel_request(const std::optional<asio::ip::address>& peer) {
  return cancel_limiter_.try_take(peer, std::chrono::steady_clock::now());
}

}  // namespace sluice
