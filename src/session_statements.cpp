// ClientSession, transaction pooling's statement handling outside the relay loop: a PQprepare
// answered without a backend, and a backend that lost the statements Sluice prepared on it.
#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "src/client_session.hpp"
#include "src/log.hpp"
#include "src/pool_manager.hpp"

#include <string>
#include <string_view>

namespace sluice {

namespace pr = protocol;

// A named Parse followed by a Sync, outside a transaction, only prepares (libpq's PQprepare). When
// a backend of the pool has already parsed the same definition (src/known_statements.hpp), Sluice
// records it and answers the Parse itself (the Sync is answered without a backend too); the
// statement is parsed on a backend by its first Bind or Describe, as on any backend that lacks it.
// Otherwise a client preparing synchronously would wait for a backend that only its own thread can
// free, when that thread's other clients hold every backend in open transactions (pgbench -M
// prepared: every client prepares the same statements, so only the first waits). Any other
// definition goes to a backend, so that an invalid statement is reported by its Parse, as
// PostgreSQL does. Returns false, changing nothing, when the Parse must go to a backend.
bool ClientSession::prepare_without_backend(pr::ByteView view, const pr::ScanStep& step,
                                            std::size_t at) {
  if (!tx_mode_ || pinned_ || step.kind != pr::ScanStep::Kind::Message) return false;
  const std::size_t next = at + step.n;
  if (next >= view.size() || static_cast<char>(view[next]) != pr::fe::kSync) return false;
  pr::ByteView msg = view.subspan(at, step.n);
  auto parse = pr::read_parse(msg);
  // A statement that would pin the client is prepared on a backend, which the client then keeps.
  if (!parse || parse->statement.empty() ||
      pr::detect_session_feature(parse->query) != pr::SessionFeature::None) {
    return false;
  }
  if (!statements_.define(msg)) return false;
  const pr::StatementDef* def = statements_.find(parse->statement);
  if (def != nullptr && pool_->known_statements.contains(def->backend_name)) return true;
  statements_.forget(std::string(parse->statement));
  return false;
}

// An ErrorResponse 26000 (prepared statement does not exist) for a statement Sluice named: the
// backend lost its statements in a way Sluice did not see (a DISCARD or DEALLOCATE inside a
// function, say). Its cache is emptied, so every statement is prepared again at its next use.
// Returns whether `msg` is such an error.
bool ClientSession::forget_lost_statements(pr::ByteView msg) {
  if (backend_->statements.size() == 0) return false;
  std::string_view raw(reinterpret_cast<const char*>(msg.data()), msg.size());
  if (raw.find("\"sluice_") == std::string_view::npos) return false;
  auto fields = pr::read_error_fields(msg);
  if (!fields || fields->sqlstate() != "26000") return false;
  log::session().warn("backend_statements_lost session={} backend_pid={} cached={}", key_pid_,
                      backend_->pid, backend_->statements.size());
  backend_->statements.clear();
  return true;
}

}  // namespace sluice
