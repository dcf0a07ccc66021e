// ClientSession, transaction pooling: a group of extended-protocol messages that a backend
// answered with 26000 for a statement Sluice believed prepared there is prepared and sent again,
// once, where the client cannot tell (protocol/statement_retry.hpp says when). The relay records
// what it sends (record_for_retry()); the backend pump holds the error back (hold_for_retry()) and,
// at the group's ReadyForQuery, sends the group again (at_ready_for_retry(), send_retry()).
#include "protocol/messages.hpp"
#include "src/client_session.hpp"
#include "src/log.hpp"

namespace sluice {

namespace pr = protocol;

// A client message the relay has just sent on (or replaced, `refused`), before it is counted.
void ClientSession::record_for_retry(char type, pr::ByteView whole_message, bool refused) {
  const bool starts_idle =
      pending_syncs_ == 0 && !unsynced_extended_ && backend_->tx == pr::TxStatus::Idle;
  retry_.on_client_message(type, whole_message, starts_idle);
  if (refused) retry_.spoil();
}

// A backend ErrorResponse that says a statement of Sluice's was lost; `to_client` is what the
// client would get. True when it is not forwarded (held back until the group's ReadyForQuery, or
// answered by sending the group again at once).
bool ClientSession::hold_for_retry(pr::ByteView to_client) {
  const auto on_lost = retry_.on_lost_statement(to_client, !writing_to_backend_ && !retry_writing_);
  if (on_lost == pr::GroupRetry::OnLost::Forward) return false;
  log::session().info("statement_lost session={} backend_pid={} action=retry", key_pid_,
                      backend_->pid);
  if (on_lost == pr::GroupRetry::OnLost::SyncNow) send_retry(true);
  return true;
}

// The ReadyForQuery ending a group, its accounting done.
pr::GroupRetry::AtReady ClientSession::at_ready_for_retry() {
  const auto at = retry_.on_ready_for_query(backend_->tx == pr::TxStatus::Idle,
                                            !writing_to_backend_ && !retry_writing_);
  if (at == pr::GroupRetry::AtReady::Retry) send_retry(false);
  return at;
}

// The group again, rewritten for the backend as it is now (its statements prepared anew), as a
// new group (after a Sync of Sluice's when `sync_first`); written at once where the socket takes
// it, else asynchronously while relay() waits (wait_for_retry_write()).
void ClientSession::send_retry(bool sync_first) {
  retry_out_.clear();
  if (sync_first) {
    pr::build_sync(retry_out_);
    count_client_message(pr::fe::kSync);
  }
  pr::ByteView rest = retry_.messages();
  while (!rest.empty()) {
    const auto frame = pr::peek_frame(rest, pr::Direction::Frontend, max_message_);
    // The relay accepted these very messages: they frame, and rewrite, as they did then.
    const pr::ByteView msg = rest.first(frame.frame.size());
    if (statements_.rewrite(msg, backend_->statements, edits_, retry_out_) ==
        pr::StatementMapper::Outcome::Forward) {
      retry_out_.insert(retry_out_.end(), msg.begin(), msg.end());
    }
    count_client_message(frame.frame.type);
    rest = rest.subspan(msg.size());
  }
  retry_.retry_sent(sync_first);
  error_code ec;
  const std::size_t sent = send_now(backend_->socket, asio::buffer(retry_out_), ec);
  if (ec && ec != asio::error::would_block) {
    backend_failed_ = true;
    error_code ignored;
    client_.cancel(ignored);  // the relay ends the session
    return;
  }
  if (sent == retry_out_.size()) return;
  retry_writing_ = true;
  auto done = [self = shared_from_this()](error_code e, std::size_t) {
    self->retry_writing_ = false;
    if (self->retry_write_done_ != nullptr) self->retry_write_done_->cancel();
    if (e) {
      self->backend_failed_ = true;
      error_code ignored;
      self->client_.cancel(ignored);  // the relay ends the session
    }
  };
  auto rest_of_it = asio::buffer(retry_out_) + sent;
  if (backend_same_thread_) {
    asio::async_write(backend_->socket, rest_of_it, std::move(done));
  } else {
    asio::async_write(backend_->socket, rest_of_it,
                      asio::bind_executor(client_.get_executor(), std::move(done)));
  }
}

// Before the relay writes to the backend: a retry still being written goes first.
awaitable<void> ClientSession::wait_for_retry_write() {
  asio::steady_timer done(client_.get_executor(), asio::steady_timer::time_point::max());
  retry_write_done_ = &done;
  error_code ec;
  while (retry_writing_) co_await done.async_wait(ec_token(ec));
  retry_write_done_ = nullptr;
}

}  // namespace sluice
