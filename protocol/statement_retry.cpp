#include "protocol/statement_retry.hpp"

#include "protocol/messages.hpp"

#include <algorithm>

namespace sluice::protocol {

namespace {

bool is_extended(char type) {
  switch (type) {
    case fe::kParse:
    case fe::kBind:
    case fe::kDescribe:
    case fe::kExecute:
    case fe::kClose:
    case fe::kFlush:
    case fe::kSync:
      return true;
    default:
      return false;
  }
}

}  // namespace

void GroupRetry::on_client_message(char type, ByteView msg, bool starts_idle) {
  switch (state_) {
    case State::Empty:
      if (!starts_idle || !is_extended(type)) return;
      state_ = State::Recording;
      [[fallthrough]];
    case State::Recording:
      if (!is_extended(type) || msg.empty() || messages_.size() + msg.size() > kMaxBytes) {
        spoil();
        return;
      }
      if (type == fe::kParse && leading_parses_ == messages_count_) ++leading_parses_;
      ++messages_count_;
      last_type_ = type;
      messages_.insert(messages_.end(), msg.begin(), msg.end());
      if (type == fe::kSync) state_ = State::Complete;
      return;
    case State::Complete:
      spoil();  // a later group: it would run before the retry
      return;
    case State::Held:
      state_ = State::HeldLate;
      return;
    case State::HeldLate:
    case State::SyncSent:
    case State::Retried:
    case State::Spoiled:
      return;
  }
}

void GroupRetry::spoil() {
  if (state_ == State::Recording || state_ == State::Complete) {
    state_ = State::Spoiled;
    forget_messages();
  } else if (state_ == State::Held) {
    state_ = State::HeldLate;
  }
}

void GroupRetry::on_answer_forwarded() { spoil(); }

void GroupRetry::on_parse_answered() {
  if ((state_ == State::Recording || state_ == State::Complete) &&
      answered_parses_ < leading_parses_) {
    ++answered_parses_;
  } else {
    spoil();
  }
}

ByteView GroupRetry::messages() const {
  ByteView rest(messages_.data(), messages_.size());
  for (std::size_t i = 0; i < answered_parses_ && rest.size() >= 5; ++i) {
    rest = rest.subspan(std::min<std::size_t>(rest.size(), 1 + read_u32(rest.data() + 1)));
  }
  return rest;
}

GroupRetry::OnLost GroupRetry::on_lost_statement(ByteView error, bool can_send) {
  if (state_ == State::Complete) {
    state_ = State::Held;
    error_.assign(error.begin(), error.end());
    return OnLost::Hold;
  }
  if (state_ == State::Recording && last_type_ == fe::kFlush && can_send) return OnLost::SyncNow;
  return OnLost::Forward;
}

GroupRetry::AtReady GroupRetry::on_ready_for_query(bool idle, bool can_send) {
  switch (state_) {
    case State::Held:
      if (idle && can_send) return AtReady::Retry;
      [[fallthrough]];
    case State::HeldLate:
      // held_error() stays readable until the next group's answer.
      state_ = State::Empty;
      forget_messages();
      return AtReady::ForwardHeldError;
    case State::SyncSent:
      state_ = State::Retried;
      return AtReady::Drop;
    default:
      reset();
      return AtReady::Forward;
  }
}

void GroupRetry::retry_sent(bool after_sync) {
  state_ = after_sync ? State::SyncSent : State::Retried;
  error_.clear();
}

void GroupRetry::reset() {
  state_ = State::Empty;
  forget_messages();
  error_.clear();
  // A large group's memory is not kept for the next one.
  if (messages_.capacity() > 4096) Buffer().swap(messages_);
  if (error_.capacity() > 4096) Buffer().swap(error_);
}

void GroupRetry::forget_messages() {
  messages_.clear();
  messages_count_ = leading_parses_ = answered_parses_ = 0;
  last_type_ = 0;
}

void GroupRetry::release() {
  state_ = State::Empty;
  forget_messages();
  Buffer().swap(messages_);
  Buffer().swap(error_);
}

}  // namespace sluice::protocol
