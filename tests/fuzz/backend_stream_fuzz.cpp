// Fuzzes the server-to-client stream: frames every message, runs every backend reader on each
// complete one, and rebuilds what was read with the builders to compare it byte for byte.
#include "tests/fuzz/fuzz_support.hpp"

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace sluice::protocol::fuzz {
namespace {

Buffer rebuild_authentication(const Authentication& a) {
  Buffer out;
  switch (a.code) {
    case AuthCode::Ok:
      build_auth_ok(out);
      break;
    case AuthCode::CleartextPassword:
      build_auth_cleartext(out);
      break;
    case AuthCode::MD5Password:
      build_auth_md5(out, std::span<const std::byte, 4>(a.data.data(), 4));
      break;
    case AuthCode::SASL: {
      const auto names = read_sasl_mechanisms(a.data);
      SLUICE_FUZZ_CHECK(names.has_value());
      build_auth_sasl(out, *names);
      break;
    }
    case AuthCode::SASLContinue:
      build_auth_sasl_continue(out, as_chars(a.data));
      break;
    case AuthCode::SASLFinal:
      build_auth_sasl_final(out, as_chars(a.data));
      break;
    default:  // no builder: Sluice never asks for these
      MessageWriter(out)
          .begin(be::kAuthentication)
          .add_u32(static_cast<std::uint32_t>(a.code))
          .add_bytes(a.data)
          .finish();
      break;
  }
  return out;
}

void check_authentication(ByteView msg) {
  const auto a = read_authentication(msg);
  if (!a) return;
  SLUICE_FUZZ_CHECK(inside(a->data, msg));
  if (a->code == AuthCode::MD5Password) SLUICE_FUZZ_CHECK(a->data.size() == 4);
  if (a->code == AuthCode::SASL) {
    const auto names = read_sasl_mechanisms(a->data);
    SLUICE_FUZZ_CHECK(names.has_value());
    for (std::string_view name : *names) {
      SLUICE_FUZZ_CHECK(inside(name, a->data) && !name.empty());
    }
  }
  SLUICE_FUZZ_CHECK(same(rebuild_authentication(*a), msg));
}

std::optional<Severity> parse_severity(std::string_view s) {
  for (Severity v : {Severity::Error, Severity::Fatal, Severity::Panic, Severity::Warning,
                     Severity::Notice, Severity::Debug, Severity::Info, Severity::Log}) {
    if (to_string(v) == s) return v;
  }
  return std::nullopt;
}

// What build_error_response writes for `info`, in order, for an exact comparison.
std::vector<std::pair<char, std::string_view>> builder_fields(const ErrorInfo& info) {
  std::vector<std::pair<char, std::string_view>> f{{'S', to_string(info.severity)},
                                                   {'V', to_string(info.severity)},
                                                   {'C', info.sqlstate},
                                                   {'M', info.message}};
  if (!info.detail.empty()) f.emplace_back('D', info.detail);
  if (!info.hint.empty()) f.emplace_back('H', info.hint);
  return f;
}

void check_error_fields(ByteView msg) {
  const auto e = read_error_fields(msg);
  if (!e) return;
  Buffer out;
  MessageWriter w(out);
  w.begin(type_of(msg));
  for (const auto& [code, value] : e->fields) {
    SLUICE_FUZZ_CHECK(code != 0 && inside(value, msg));
    w.add_u8(static_cast<std::uint8_t>(code)).add_cstring(value);
  }
  w.add_u8(0).finish();
  SLUICE_FUZZ_CHECK(same(out, msg));

  // Builder -> reader: what Sluice would send from these fields reads back the same.
  const auto severity = parse_severity(e->severity());
  if (!severity) return;
  const ErrorInfo info{*severity, e->sqlstate(), e->message(), e->get('D'), e->get('H')};
  Buffer built;
  if (type_of(msg) == be::kErrorResponse) {
    build_error_response(built, info);
  } else {
    build_notice_response(built, info);
  }
  const auto back = read_error_fields(built);
  SLUICE_FUZZ_CHECK(back.has_value());
  SLUICE_FUZZ_CHECK(back->fields == builder_fields(info));
  if (e->fields == back->fields) SLUICE_FUZZ_CHECK(same(built, msg));
}

void check_status(ByteView msg) {
  if (const auto s = read_parameter_status(msg)) {
    SLUICE_FUZZ_CHECK(inside(s->name, msg) && inside(s->value, msg));
    Buffer out;
    build_parameter_status(out, s->name, s->value);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (const auto k = read_backend_key_data(msg)) {
    Buffer out;
    build_backend_key_data(out, k->pid, k->secret);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (const auto z = read_ready_for_query(msg)) {
    Buffer out;
    build_ready_for_query(out, *z);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (const auto c = read_command_complete(msg)) {
    SLUICE_FUZZ_CHECK(inside(*c, msg));
    Buffer out;
    build_command_complete(out, *c);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
  if (type_of(msg) == be::kEmptyQueryResponse) {
    Buffer out;
    build_empty_query_response(out);
    SLUICE_FUZZ_CHECK(same(out, msg));
  }
}

void check_message(ByteView msg) {
  check_type_gates(msg);
  check_authentication(msg);
  check_error_fields(msg);
  check_status(msg);
}

}  // namespace
}  // namespace sluice::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::protocol;
  const ByteView input(reinterpret_cast<const std::byte*>(data), size);
  fuzz::walk_frames(input, Direction::Backend, kDefaultMaxMessageLength, fuzz::check_message);
  // A small cap exercises LengthTooLong on realistic inputs too.
  fuzz::walk_frames(input, Direction::Backend, 64, fuzz::check_message);
  return 0;
}
