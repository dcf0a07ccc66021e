#include "src/cancel_registry.hpp"

#include "src/auth/scram.hpp"

#include <cstring>

namespace sluice {
namespace {
std::uint32_t random_u32() {
  std::string r = auth::random_bytes(4);
  std::uint32_t v = 0;
  std::memcpy(&v, r.data(), 4);
  return v;
}
}  // namespace

// Keys start at a random point so they do not look like (or collide with) real PostgreSQL pids
// in a predictable way; the secret is what makes a key unguessable.
CancelRegistry::CancelRegistry() : next_pid_((random_u32() % 0x3fffffff) + 1) {}

std::pair<std::uint32_t, std::uint32_t> CancelRegistry::add(std::weak_ptr<ClientSession> session) {
  std::uint32_t secret = random_u32();
  std::lock_guard lock(mu_);
  std::uint32_t pid;
  do {
    pid = next_pid_++;
    if (next_pid_ > 0x7fffffff) next_pid_ = 1;  // stay a positive int32, as libpq stores it
  } while (pid == 0 || entries_.count(pid) != 0);
  entries_.emplace(pid, Entry{.secret = secret, .session = std::move(session)});
  return {pid, secret};
}

void CancelRegistry::remove(std::uint32_t pid) {
  std::lock_guard lock(mu_);
  entries_.erase(pid);
}

void CancelRegistry::set_target(std::uint32_t pid, std::optional<CancelTarget> target) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  if (it != entries_.end()) it->second.target = std::move(target);
}

std::optional<CancelTarget> CancelRegistry::lookup(std::uint32_t pid, std::uint32_t secret) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(pid);
  if (it == entries_.end() || it->second.secret != secret) return std::nullopt;
  return it->second.target;
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

}  // namespace sluice
