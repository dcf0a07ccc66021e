// CancelRegistry: every live client session, keyed by the BackendKeyData Sluice issued to it.
//
// A CancelRequest carries (pid, secret); the registry answers where to forward it: the backend
// the session is using right now, if any. It also lets shutdown reach every session.
// Thread-safety: all members may be called from any thread (one mutex, short sections).
#pragma once

#include "src/asio_prelude.hpp"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace sluice {

class ClientSession;

struct CancelTarget {
  Endpoint endpoint;
  std::uint32_t pid = 0;
  std::uint32_t secret = 0;
};

class CancelRegistry {
 public:
  CancelRegistry();
  // Registers a session; returns the (pid, secret) key to send it in BackendKeyData.
  std::pair<std::uint32_t, std::uint32_t> add(std::weak_ptr<ClientSession> session);
  void remove(std::uint32_t pid);
  void set_target(std::uint32_t pid, std::optional<CancelTarget> target);
  // The target for a CancelRequest, if the key matches a session that is using a backend.
  std::optional<CancelTarget> lookup(std::uint32_t pid, std::uint32_t secret);
  // The session with this key, if the secret matches (a CancelRequest for a queued session).
  std::shared_ptr<ClientSession> session_for(std::uint32_t pid, std::uint32_t secret);
  // The session with this pid (KILL_CLIENT).
  std::shared_ptr<ClientSession> find(std::uint32_t pid);
  std::vector<std::shared_ptr<ClientSession>> sessions();
  std::size_t size();

 private:
  struct Entry {
    std::uint32_t secret = 0;
    std::weak_ptr<ClientSession> session;
    std::optional<CancelTarget> target;
  };
  std::mutex mu_;  // guards everything below
  std::unordered_map<std::uint32_t, Entry> entries_;
  std::uint32_t next_pid_;
};

}  // namespace sluice
