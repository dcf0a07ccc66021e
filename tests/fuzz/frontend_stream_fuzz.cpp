// Fuzzes the client-to-server stream after startup: frames every message, runs every frontend
// reader on each complete one, and rebuilds what was read to compare it byte for byte.
#include "tests/fuzz/fuzz_support.hpp"

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <utility>

namespace sluice::protocol::fuzz {
namespace {

void check_password_family(ByteView msg) {
  if (const auto p = read_password_message(msg)) {
    SLUICE_FUZZ_CHECK(inside(*p, msg));
    Buffer out;
    build_password_message(out, *p);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (const auto s = read_sasl_initial_response(msg)) {
    SLUICE_FUZZ_CHECK(inside(s->mechanism, msg) && inside(s->data, msg));
    SLUICE_FUZZ_CHECK(!s->mechanism.empty());
    if (s->has_data) {
      Buffer out;
      build_sasl_initial_response(out, s->mechanism, s->data);
      SLUICE_FUZZ_CHECK(same(out, msg));
    } else {
      SLUICE_FUZZ_CHECK(s->data.empty());
      Buffer out;
      MessageWriter(out).begin(fe::kPassword).add_cstring(s->mechanism).add_i32(-1).finish();
      SLUICE_FUZZ_CHECK(same(out, msg));
    }
  }
  // Any 'p' message is a valid SASLResponse: its body is opaque.
  const auto r = read_sasl_response(msg);
  SLUICE_FUZZ_CHECK(r.has_value() == (type_of(msg) == fe::kPassword));
  if (r) {
    SLUICE_FUZZ_CHECK(inside(*r, msg));
    Buffer out;
    build_sasl_response(out, *r);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
}

void check_extended_query(ByteView msg) {
  if (const auto p = read_parse(msg)) {
    SLUICE_FUZZ_CHECK(inside(p->statement, msg) && inside(p->query, msg));
    SLUICE_FUZZ_CHECK(inside(p->param_types, msg));
    SLUICE_FUZZ_CHECK(p->param_types.size() == std::size_t{p->param_type_count} * 4);
    Buffer out;
    MessageWriter(out)
        .begin(fe::kParse)
        .add_cstring(p->statement)
        .add_cstring(p->query)
        .add_u16(p->param_type_count)
        .add_bytes(p->param_types)
        .finish();
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (const auto b = read_bind_names(msg)) {
    SLUICE_FUZZ_CHECK(inside(b->portal, msg) && inside(b->statement, msg));
    SLUICE_FUZZ_CHECK(b->rest_offset <= msg.size());
    Buffer out;
    MessageWriter(out)
        .begin(fe::kBind)
        .add_cstring(b->portal)
        .add_cstring(b->statement)
        .add_bytes(msg.subspan(b->rest_offset))
        .finish();
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  for (const auto& [reader, type] :
       {std::pair{&read_describe, fe::kDescribe}, std::pair{&read_close, fe::kClose}}) {
    if (const auto t = reader(msg)) {
      SLUICE_FUZZ_CHECK(inside(t->name, msg));
      SLUICE_FUZZ_CHECK(t->kind == 'S' || t->kind == 'P');
      Buffer out;
      MessageWriter(out)
          .begin(type)
          .add_u8(static_cast<std::uint8_t>(t->kind))
          .add_cstring(t->name)
          .finish();
      SLUICE_FUZZ_CHECK(same(out, msg));
    }
  }
  if (const auto e = read_execute(msg)) {
    SLUICE_FUZZ_CHECK(inside(e->portal, msg));
    Buffer out;
    MessageWriter(out).begin(fe::kExecute).add_cstring(e->portal).add_u32(e->max_rows).finish();
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
}

void check_simple(ByteView msg) {
  if (const auto q = read_query(msg)) {
    SLUICE_FUZZ_CHECK(inside(*q, msg));
    Buffer out;
    build_query(out, *q);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  // Fixed-size messages: framing alone guarantees their only valid shape.
  if (type_of(msg) == fe::kSync) {
    Buffer out;
    build_sync(out);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (type_of(msg) == fe::kTerminate) {
    Buffer out;
    build_terminate(out);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
}

void check_message(ByteView msg) {
  check_type_gates(msg);
  check_password_family(msg);
  check_extended_query(msg);
  check_simple(msg);
}

}  // namespace
}  // namespace sluice::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::protocol;
  const ByteView input(reinterpret_cast<const std::byte*>(data), size);
  fuzz::walk_frames(input, Direction::Frontend, kDefaultMaxMessageLength, fuzz::check_message);
  // A small cap exercises LengthTooLong on realistic inputs too.
  fuzz::walk_frames(input, Direction::Frontend, 64, fuzz::check_message);
  return 0;
}
