// When a group a backend answered with 26000 may be sent again (protocol/statement_retry.hpp):
// only where the client cannot tell.
#include "protocol/statement_retry.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include "protocol/messages.hpp"

#include <catch2/catch.hpp>

namespace sluice::protocol {
namespace {

using test::Body;
using test::Bytes;
using test::message;
using test::view;
using AtReady = GroupRetry::AtReady;
using OnLost = GroupRetry::OnLost;

const Bytes kBind = message(fe::kBind, Body().cstr("").cstr("s1").u16(0).u16(0).u16(0));
const Bytes kExecute = message(fe::kExecute, Body().cstr("").i32(0));
const Bytes kSync = message(fe::kSync, Body());
const Bytes kQuery = message(fe::kQuery, Body().cstr("SELECT 1"));
const Bytes kError = message(be::kErrorResponse, Body().u8('C').cstr("26000").u8(0));

// Bind, Execute, Sync sent to an idle backend with nothing outstanding.
void send_group(GroupRetry& r) {
  r.on_client_message(fe::kBind, view(kBind), true);
  r.on_client_message(fe::kExecute, view(kExecute), false);
  r.on_client_message(fe::kSync, view(kSync), false);
}

Bytes kept(const GroupRetry& r) { return Bytes(r.messages().begin(), r.messages().end()); }

TEST_CASE("a group whose first answer is 26000 is sent again, whole, once") {
  GroupRetry r;
  send_group(r);
  CHECK(kept(r) == test::concat({kBind, kExecute, kSync}));
  REQUIRE(r.on_lost_statement(view(kError), true) == OnLost::Hold);
  REQUIRE(r.on_ready_for_query(true, true) == AtReady::Retry);
  CHECK(kept(r) == test::concat({kBind, kExecute, kSync}));
  r.retry_sent();
  // The retry's own 26000 goes to the client.
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  CHECK(r.on_ready_for_query(true, true) == AtReady::Forward);
  // The next group is kept again.
  send_group(r);
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Hold);
}

TEST_CASE("Parse messages at the start of a group that were answered are not sent again") {
  const Bytes parse = message(fe::kParse, Body().cstr("s1").cstr("SELECT 1").u16(0));
  const Bytes describe = message(fe::kDescribe, Body().u8('S').cstr("s1"));
  GroupRetry r;
  r.on_client_message(fe::kParse, view(parse), true);
  r.on_client_message(fe::kDescribe, view(describe), false);
  r.on_client_message(fe::kSync, view(kSync), false);
  r.on_parse_answered();  // the client has its ParseComplete
  REQUIRE(r.on_lost_statement(view(kError), true) == OnLost::Hold);
  REQUIRE(r.on_ready_for_query(true, true) == AtReady::Retry);
  CHECK(kept(r) == test::concat({describe, kSync}));
}

TEST_CASE("a ParseComplete for anything but a leading Parse makes the retry impossible") {
  const Bytes parse = message(fe::kParse, Body().cstr("s2").cstr("SELECT 2").u16(0));
  GroupRetry r;
  r.on_client_message(fe::kBind, view(kBind), true);
  r.on_client_message(fe::kParse, view(parse), false);
  r.on_client_message(fe::kSync, view(kSync), false);
  r.on_parse_answered();
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
}

TEST_CASE("a group is not retried once the client has seen part of its answer") {
  GroupRetry r;
  send_group(r);
  r.on_answer_forwarded();  // e.g. a BindComplete of an earlier Bind
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  CHECK(r.on_ready_for_query(true, true) == AtReady::Forward);
}

TEST_CASE("a group that did not start on an idle backend is not kept") {
  GroupRetry r;
  r.on_client_message(fe::kBind, view(kBind), false);  // inside a transaction, say
  r.on_client_message(fe::kSync, view(kSync), false);
  CHECK(r.messages().empty());
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
}

TEST_CASE("a group neither ended by a Sync nor waiting after a Flush is not retried") {
  GroupRetry r;
  r.on_client_message(fe::kBind, view(kBind), true);
  r.on_client_message(fe::kExecute, view(kExecute), false);
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
}

TEST_CASE("a later group sent first makes the retry impossible") {
  GroupRetry r;
  send_group(r);
  SECTION("before the error") {
    r.on_client_message(fe::kBind, view(kBind), false);
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
    CHECK(r.on_ready_for_query(true, true) == AtReady::Forward);
  }
  SECTION("while the error is held: it is forwarded at the ReadyForQuery") {
    REQUIRE(r.on_lost_statement(view(kError), true) == OnLost::Hold);
    r.on_client_message(fe::kBind, view(kBind), false);
    CHECK(r.on_ready_for_query(true, true) == AtReady::ForwardHeldError);
    CHECK(Bytes(r.held_error().begin(), r.held_error().end()) == kError);
    CHECK(r.messages().empty());
  }
}

TEST_CASE("a held error is forwarded when the backend is not idle or cannot be written") {
  for (auto [idle, can_send] : {std::pair{false, true}, std::pair{true, false}}) {
    GroupRetry r;
    send_group(r);
    REQUIRE(r.on_lost_statement(view(kError), true) == OnLost::Hold);
    CHECK(r.on_ready_for_query(idle, can_send) == AtReady::ForwardHeldError);
    CHECK(Bytes(r.held_error().begin(), r.held_error().end()) == kError);
    // And the next group starts afresh.
    CHECK(r.on_ready_for_query(true, true) == AtReady::Forward);
    CHECK(r.held_error().empty());
  }
}

TEST_CASE("groups that cannot be kept whole are not retried") {
  SECTION("a simple Query") {
    GroupRetry r;
    r.on_client_message(fe::kQuery, view(kQuery), true);
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  }
  SECTION("a message only partly at hand") {
    GroupRetry r;
    r.on_client_message(fe::kBind, ByteView(), true);
    r.on_client_message(fe::kSync, view(kSync), false);
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  }
  SECTION("more than kMaxBytes") {
    GroupRetry r;
    const Bytes big = message(fe::kBind, Body().cstr("").cstr("s1").str(std::string(70000, 'x')));
    r.on_client_message(fe::kBind, view(big), true);
    r.on_client_message(fe::kSync, view(kSync), false);
    CHECK(r.messages().empty());
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  }
  SECTION("a message Sluice refused") {
    GroupRetry r;
    r.on_client_message(fe::kBind, view(kBind), true);
    r.spoil();
    r.on_client_message(fe::kSync, view(kSync), false);
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  }
}

TEST_CASE("a client waiting after a Flush has its messages sent again after a Sync of Sluice's") {
  const Bytes parse = message(fe::kParse, Body().cstr("s1").cstr("SELECT 1").u16(0));
  const Bytes describe = message(fe::kDescribe, Body().u8('S').cstr("s1"));
  const Bytes flush = message(fe::kFlush, Body());
  GroupRetry r;
  r.on_client_message(fe::kParse, view(parse), true);
  r.on_client_message(fe::kDescribe, view(describe), false);
  r.on_client_message(fe::kFlush, view(flush), false);
  r.on_parse_answered();
  SECTION("sent again at once") {
    REQUIRE(r.on_lost_statement(view(kError), true) == OnLost::SyncNow);
    CHECK(kept(r) == test::concat({describe, flush}));
    r.retry_sent(true);
    // The client goes on with the rest of its series; Sluice's Sync is answered first.
    r.on_client_message(fe::kBind, view(kBind), false);
    r.on_client_message(fe::kSync, view(kSync), false);
    CHECK(r.on_ready_for_query(true, true) == AtReady::Drop);
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);  // once only
    CHECK(r.on_ready_for_query(true, true) == AtReady::Forward);
  }
  SECTION("not when the backend cannot be written now") {
    CHECK(r.on_lost_statement(view(kError), false) == OnLost::Forward);
  }
  SECTION("not when the client's last message was no Flush") {
    r.on_client_message(fe::kBind, view(kBind), false);
    CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
  }
}

TEST_CASE("release() gives everything back") {
  GroupRetry r;
  send_group(r);
  r.release();
  CHECK(r.messages().empty());
  CHECK(r.on_lost_statement(view(kError), true) == OnLost::Forward);
}

}  // namespace
}  // namespace sluice::protocol
