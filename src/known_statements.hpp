// KnownStatements: the backend statements (transaction pooling's `sluice_…` names) that some
// backend of one pool has parsed without error, so that a client's PQprepare of one of them can be
// answered without a backend (issue 13, item 3).
//
// A Parse followed by a Sync outside a transaction only prepares. Answering it from the definition
// alone keeps a client that prepares synchronously from waiting for a backend its own thread's
// other clients hold (pgbench -M prepared), but PostgreSQL reports an invalid statement at that
// Parse, and applications validate statements by preparing them. So Sluice answers it itself only
// for a definition a backend of the same (database, user) pool has already accepted; any other
// goes to a backend like any message, within the client's bulkhead's max_wait. Beyond kCapacity
// names, the least recently confirmed are forgotten first. What it cannot see: a statement that was
// valid and no longer is (its table dropped since), or one whose meaning depends on the client's
// search_path; those report their error at the first Bind, as before.
//
// Thread-safe: the sessions of a pool on every event loop share it.
#pragma once

#include "protocol/statements.hpp"

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {

class KnownStatements {
 public:
  static constexpr std::size_t kCapacity = 2048;

  bool contains(std::string_view backend_name) {
    std::lock_guard lock(mu_);
    return names_.find(backend_name) != nullptr;
  }
  // A backend answered ParseComplete for `backend_name`.
  void confirmed(const std::string& backend_name) {
    std::lock_guard lock(mu_);
    if (names_.find(backend_name) != nullptr) return;  // now the most recently confirmed
    names_.add(backend_name, kNoBody, evicted_);
    evicted_.clear();
  }
  std::size_t size() {
    std::lock_guard lock(mu_);
    return names_.size();
  }

 private:
  inline static const std::shared_ptr<const std::string> kNoBody =
      std::make_shared<const std::string>();
  std::mutex mu_;
  protocol::BackendStatementCache names_{kCapacity};  // names only; the bodies stay empty
  std::vector<std::string> evicted_;
};

}  // namespace sluice
