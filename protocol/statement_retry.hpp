// Transaction pooling: one extended-protocol group (a client's messages up to and including a
// Sync) kept while it is outstanding on a backend, so that Sluice can send it again, once, when
// the backend answers it with 26000 ("prepared statement does not exist") for a statement Sluice
// believed prepared there. A backend loses statements in ways Sluice cannot see (a DEALLOCATE run
// by a function, say); the client never learns of it.
//
// A group is sent again only where that cannot be observed:
//   - it began with nothing outstanding and the backend idle, so the error rolls back an implicit
//     transaction and nothing of it has run (its ReadyForQuery must say idle again);
//   - the client has seen no answer to it yet, but ParseComplete for Parse messages at its start
//     (the error is its first other answer; answers to messages Sluice injected do not count).
//     Those Parse messages are not sent again: the client has its answer, and the statements they
//     define are prepared anew by the Bind or Describe that needs them;
//   - no later client message was sent to the backend before the retry (it would run first);
//   - it was kept whole: complete messages only, at most kMaxBytes in all;
//   - it is not itself a retry.
// Otherwise the error goes to the client as before, late by at most the rest of the group.
//
// A client that ends its messages with a Flush, not a Sync, waits for their answers (asyncpg
// prepares so: Parse, Describe, Flush). The backend skips to a Sync after the error, so Sluice
// sends one of its own at once (its ReadyForQuery dropped), then the messages again; the client's
// later messages go on from there.
//
// Pure and single-threaded: one per client session; the caller feeds it what it sends and what it
// forwards.
#pragma once

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"

#include <cstddef>

namespace sluice::protocol {

class GroupRetry {
 public:
  static constexpr std::size_t kMaxBytes = 64 * 1024;

  // A client message the backend is sent. `msg` is the whole message, or empty when only part of
  // it is at hand (a message too long to hold). `starts_idle`: nothing was outstanding on the
  // backend and it was idle before this message.
  void on_client_message(char type, ByteView msg, bool starts_idle);
  // Sluice answered or replaced a message of the group itself (a refusal): not sent again.
  void spoil();
  // Something of the group's answer reached the client.
  void on_answer_forwarded();
  // A ParseComplete reached the client.
  void on_parse_answered();
  enum class OnLost {
    Forward,  // forward the error as usual
    Hold,     // drop it for now: on_ready_for_query() decides
    SyncNow,  // drop it, and send a Sync then messages() again at once (then retry_sent(true))
  };
  // A backend's ErrorResponse 26000 for one of Sluice's statement names; `error` is what the
  // client would get. `can_send`: the caller can send to the backend now.
  OnLost on_lost_statement(ByteView error, bool can_send);

  enum class AtReady {
    Forward,           // forward the ReadyForQuery as usual
    Retry,             // drop it, and send messages() again (then retry_sent())
    ForwardHeldError,  // forward held_error(), then the ReadyForQuery
    Drop,              // drop it: it answers Sluice's own Sync (OnLost::SyncNow)
  };
  // The ReadyForQuery that ends the group; `idle`: its status is idle. `can_send`: the caller can
  // send the group again now (nothing of the client's is being written to the backend).
  AtReady on_ready_for_query(bool idle, bool can_send);
  // The kept messages to send again, whole, as the client sent them (without the Parse messages
  // already answered).
  ByteView messages() const;
  // The error held back (after hold_error(), until the next group is answered).
  ByteView held_error() const { return error_; }
  // The group was sent again (after a Sync of Sluice's: `after_sync`): its answer goes to the
  // client whatever it is.
  void retry_sent(bool after_sync = false);
  // Forgets everything and gives the memory back (the backend was handed back).
  void release();

 private:
  enum class State {
    Empty,      // nothing kept
    Recording,  // the group's messages so far
    Complete,   // up to its Sync; awaiting the backend's answer
    Held,       // its 26000 is held back until its ReadyForQuery
    HeldLate,   // held, but a later client message went out: the error is forwarded after all
    SyncSent,   // sent again after Sluice's Sync, whose ReadyForQuery is still to come
    Retried,    // sent again: not kept
    Spoiled,    // cannot be retried: its answer goes to the client
  };
  void reset();
  void forget_messages();

  State state_ = State::Empty;
  Buffer messages_;
  std::size_t messages_count_ = 0;   // messages in messages_
  char last_type_ = 0;               // of the last message kept
  std::size_t leading_parses_ = 0;   // Parse messages at the start of messages_
  std::size_t answered_parses_ = 0;  // of those, answered to the client
  Buffer error_;
};

}  // namespace sluice::protocol
