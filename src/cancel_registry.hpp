// CancelRegistry: every live client session, keyed by the BackendKeyData Sluice issued to it.
//
// A CancelRequest carries (pid, secret); the registry answers where to forward it: the backend
// the session is using right now, if any. It also lets shutdown reach every session.
// Both halves of a key are random (OpenSSL RAND_bytes): the pid, unique among live sessions, in
// 1..2^31-1 (libpq and the drivers keep it in a signed 32-bit int), and the 32-bit secret, so
// a key cannot be predicted from another session's (issue 12, item 10). CancelRequests are
// rate-limited per peer address by the registry's CancelRateLimiter (allow_cancel_request).
// Thread-safety: all members may be called from any thread (one mutex, short sections), except
// that a Slot's target is written by its own session only.
//
// Per transaction a session sets and clears its target (bench/PROFILE.md C6). Through its Slot
// (slot(pid), kept by the session) that is two atomic stores without the registry's lock: the
// target is the backend's pid and secret in one 64-bit word and the index of its endpoint,
// interned once per backend. A CancelRequest reads them under the lock and puts the CancelTarget
// together then. Memory (M5): an entry is 40 bytes; a generic endpoint (144 bytes) is kept once
// per distinct backend address in a table of the registry.
#pragma once

#include "src/asio_prelude.hpp"
#include "src/cancel_rate_limiter.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

namespace sluice {

class Backend;
class ClientSession;

struct CancelTarget {
  Endpoint endpoint;
  std::uint32_t pid = 0;
  std::uint32_t secret = 0;
};

class CancelRegistry {
 public:
  // A session's cancel target, written without the registry's lock. Stable from add() until
  // remove() of its pid; written only by its session (set_target(Slot&, ...), clear_target).
  class Slot {
   private:
    friend class CancelRegistry;
    std::atomic<std::uint32_t> endpoint_{0};  // 1 + index into endpoints_; 0: no target
    std::atomic<std::uint64_t> key_{0};       // the target's pid << 32 | secret
  };

  CancelRegistry();
  // Registers a session; returns the (pid, secret) key to send it in BackendKeyData.
  std::pair<std::uint32_t, std::uint32_t> add(std::weak_ptr<ClientSession> session);
  void remove(std::uint32_t pid);
  // The Slot of a registered pid (null if none); valid until remove(pid).
  Slot* slot(std::uint32_t pid);

  // The backend the session now uses (its remote endpoint, pid and secret; no target if it has
  // none), and no backend. Through the Slot: no lock except the first time per backend.
  void set_target(Slot& slot, Backend& backend);
  static void clear_target(Slot& slot);

  // What a CancelRequest's key designates: the session (null if no live session has this key)
  // and, if it is using a backend now, the target to forward the request to. One lock.
  struct Match {
    std::shared_ptr<ClientSession> session;
    std::optional<CancelTarget> target;
  };
  Match match(std::uint32_t pid, std::uint32_t secret);
  // The target for a CancelRequest, if the key matches a session that is using a backend.
  std::optional<CancelTarget> lookup(std::uint32_t pid, std::uint32_t secret);
  // The session with this key, if the secret matches (a CancelRequest for a queued session).
  std::shared_ptr<ClientSession> session_for(std::uint32_t pid, std::uint32_t secret);
  // The session with this pid (KILL_CLIENT).
  std::shared_ptr<ClientSession> find(std::uint32_t pid);
  std::vector<std::shared_ptr<ClientSession>> sessions();
  std::size_t size();

  // Whether a CancelRequest from `peer` (nullopt: a Unix-socket client) may be acted on now, per
  // CancelRateLimiter's per-peer token bucket; false means drop it.
  bool allow_cancel_request(const std::optional<asio::ip::address>& peer);

 private:
  struct Entry {
    std::uint32_t secret = 0;
    Slot slot;
    std::weak_ptr<ClientSession> session;
  };
  // The 1-based index of the backend's endpoint in endpoints_ (interned under mu_ the first
  // time, then remembered in the Backend); 0 if it has no remote endpoint.
  std::uint32_t endpoint_of(Backend& backend);
  // Called with mu_ held: the target of a matched entry, if it is using a backend.
  std::optional<CancelTarget> target_of(const Entry& entry) const;
  // Called with mu_ held: the 1-based index of `ep` in endpoints_, added if new.
  std::uint32_t intern(const Endpoint& ep);
  static void store(Slot& slot, std::uint32_t endpoint, std::uint32_t pid, std::uint32_t secret);

  const std::uint32_t id_;  // this registry among all (Backend::cancel_endpoint names it)
  std::mutex mu_;           // guards everything below
  std::unordered_map<std::uint32_t, Entry> entries_;  // node-based: a Slot never moves
  // Every distinct backend address seen (a handful: one per server address); never shrinks.
  std::vector<Endpoint> endpoints_;
  CancelRateLimiter cancel_limiter_;  // its own lock
};

}  // namespace sluice
