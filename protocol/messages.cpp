#include "protocol/messages.hpp"

#include <cstddef>
#include <cstring>

namespace sluice::protocol {
namespace {

constexpr std::size_t kHeaderSize = 5;  // type byte + int32 length

std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A bounds-checked read position in one message. Every accessor returns nullopt instead of
// reading past the span, and moves the position only on success.
class Cursor {
 public:
  Cursor(ByteView buf, std::size_t pos) : buf_(buf), pos_(pos) {}

  std::size_t offset() const { return pos_; }
  std::size_t remaining() const { return buf_.size() - pos_; }
  bool at_end() const { return pos_ == buf_.size(); }

  std::optional<ByteView> bytes(std::size_t n) {
    if (n > remaining()) return std::nullopt;
    const ByteView b = buf_.subspan(pos_, n);
    pos_ += n;
    return b;
  }

  ByteView rest() {
    const ByteView b = buf_.subspan(pos_);
    pos_ = buf_.size();
    return b;
  }

  std::optional<std::uint8_t> u8() {
    const auto b = bytes(1);
    if (!b) return std::nullopt;
    return std::to_integer<std::uint8_t>((*b)[0]);
  }

  std::optional<std::uint16_t> u16() {
    const auto b = bytes(2);
    if (!b) return std::nullopt;
    return read_u16(b->data());
  }

  std::optional<std::uint32_t> u32() {
    const auto b = bytes(4);
    if (!b) return std::nullopt;
    return read_u32(b->data());
  }

  std::optional<std::int32_t> i32() {
    const auto v = u32();
    if (!v) return std::nullopt;
    return static_cast<std::int32_t>(*v);
  }

  // A NUL-terminated string; the view excludes the NUL. memchr: a word or vector at a time
  // instead of a byte (a Query's whole SQL text is one; bench/PROFILE.md, C3).
  std::optional<std::string_view> cstring() {
    const ByteView tail = buf_.subspan(pos_);
    if (tail.empty()) return std::nullopt;
    const void* nul = std::memchr(tail.data(), 0, tail.size());
    if (nul == nullptr) return std::nullopt;
    const auto n = static_cast<std::size_t>(static_cast<const std::byte*>(nul) - tail.data());
    pos_ += n + 1;
    return as_chars(tail.first(n));
  }

 private:
  ByteView buf_;
  std::size_t pos_;
};

// Opens a typed message for reading its body: the type byte must be `type` and the declared
// length must cover exactly the bytes given (readers get whole messages, nothing more).
std::optional<Cursor> open(ByteView msg, char type) {
  if (msg.size() < kHeaderSize || std::to_integer<char>(msg[0]) != type) return std::nullopt;
  if (read_u32(msg.data() + 1) != msg.size() - 1) return std::nullopt;
  return Cursor(msg, kHeaderSize);
}

// A message whose body is one string and nothing after it (Query, PasswordMessage, ...).
std::optional<std::string_view> read_single_string(ByteView msg, char type) {
  auto c = open(msg, type);
  if (!c) return std::nullopt;
  const auto s = c->cstring();
  if (!s || !c->at_end()) return std::nullopt;
  return s;
}

std::optional<Target> read_target(ByteView msg, char type) {
  auto c = open(msg, type);
  if (!c) return std::nullopt;
  const auto kind = c->u8();
  if (!kind || (*kind != 'S' && *kind != 'P')) return std::nullopt;
  const auto name = c->cstring();
  if (!name || !c->at_end()) return std::nullopt;
  return Target{static_cast<char>(*kind), *name};
}

// A list of NUL-terminated names closed by an empty name, with nothing after it.
bool read_name_list(Cursor& c, std::vector<std::string_view>* names) {
  for (;;) {
    const auto name = c.cstring();
    if (!name) return false;
    if (name->empty()) return c.at_end();
    if (names != nullptr) names->push_back(*name);
  }
}

// Bind after the two names: parameter formats, parameter values, result formats.
bool skip_bind_rest(Cursor& c) {
  const auto format_count = c.u16();
  if (!format_count || !c.bytes(std::size_t{*format_count} * 2)) return false;
  const auto param_count = c.u16();
  if (!param_count) return false;
  for (std::uint16_t i = 0; i < *param_count; ++i) {
    const auto len = c.i32();
    if (!len || *len < -1) return false;
    if (*len >= 0 && !c.bytes(static_cast<std::size_t>(*len))) return false;
  }
  const auto result_format_count = c.u16();
  if (!result_format_count || !c.bytes(std::size_t{*result_format_count} * 2)) return false;
  return c.at_end();
}

}  // namespace

// ---- startup phase ----

std::string_view StartupMessage::get(std::string_view name) const {
  // The last occurrence wins, as in PostgreSQL's own startup packet processing.
  for (auto it = params.rbegin(); it != params.rend(); ++it) {
    if (it->first == name) return it->second;
  }
  return {};
}

std::optional<StartupMessage> read_startup_message(ByteView msg) {
  if (msg.size() < 8 || read_u32(msg.data()) != msg.size()) return std::nullopt;
  StartupMessage m;
  m.protocol = read_u32(msg.data() + 4);
  if (m.protocol >> 16 != 3) return std::nullopt;
  Cursor c(msg, 8);
  for (;;) {
    const auto name = c.cstring();
    if (!name) return std::nullopt;  // no terminating zero byte
    if (name->empty()) break;
    const auto value = c.cstring();
    if (!value) return std::nullopt;  // a name without a value
    m.params.emplace_back(*name, *value);
  }
  if (!c.at_end()) return std::nullopt;
  return m;
}

std::optional<CancelRequest> read_cancel_request(ByteView msg) {
  if (msg.size() != 16 || read_u32(msg.data()) != 16) return std::nullopt;
  if (read_u32(msg.data() + 4) != kCancelRequestCode) return std::nullopt;
  return CancelRequest{read_u32(msg.data() + 8), read_u32(msg.data() + 12)};
}

// ---- authentication ----

std::optional<Authentication> read_authentication(ByteView msg) {
  auto c = open(msg, be::kAuthentication);
  if (!c) return std::nullopt;
  const auto raw = c->u32();
  if (!raw) return std::nullopt;
  const Authentication a{static_cast<AuthCode>(*raw), c->rest()};
  switch (a.code) {
    case AuthCode::Ok:
    case AuthCode::KerberosV5:
    case AuthCode::CleartextPassword:
    case AuthCode::GSS:
    case AuthCode::SSPI:
      if (!a.data.empty()) return std::nullopt;
      return a;
    case AuthCode::MD5Password:
      if (a.data.size() != 4) return std::nullopt;
      return a;
    case AuthCode::SASL: {
      Cursor list(a.data, 0);
      if (!read_name_list(list, nullptr)) return std::nullopt;
      return a;
    }
    case AuthCode::GSSContinue:
    case AuthCode::SASLContinue:
    case AuthCode::SASLFinal:
      return a;
  }
  return std::nullopt;  // a code this protocol version does not define
}

std::optional<std::vector<std::string_view>> read_sasl_mechanisms(ByteView data) {
  std::vector<std::string_view> names;
  Cursor c(data, 0);
  if (!read_name_list(c, &names)) return std::nullopt;
  return names;
}

std::optional<std::string_view> read_password_message(ByteView msg) {
  return read_single_string(msg, fe::kPassword);
}

std::optional<SaslInitialResponse> read_sasl_initial_response(ByteView msg) {
  auto c = open(msg, fe::kPassword);
  if (!c) return std::nullopt;
  SaslInitialResponse r;
  const auto mechanism = c->cstring();
  if (!mechanism || mechanism->empty()) return std::nullopt;
  r.mechanism = *mechanism;
  const auto len = c->i32();
  if (!len) return std::nullopt;
  if (*len == -1) {
    if (!c->at_end()) return std::nullopt;
    return r;
  }
  // The inner length must describe exactly the bytes that follow: anything else is a lie about
  // the layout, and trusting it is how a pooler reads past a buffer.
  if (*len < 0 || static_cast<std::size_t>(*len) != c->remaining()) return std::nullopt;
  r.has_data = true;
  r.data = as_chars(c->rest());
  return r;
}

std::optional<std::string_view> read_sasl_response(ByteView msg) {
  auto c = open(msg, fe::kPassword);
  if (!c) return std::nullopt;
  return as_chars(c->rest());
}

// ---- backend status messages ----

std::optional<ParameterStatus> read_parameter_status(ByteView msg) {
  auto c = open(msg, be::kParameterStatus);
  if (!c) return std::nullopt;
  const auto name = c->cstring();
  if (!name) return std::nullopt;
  const auto value = c->cstring();
  if (!value || !c->at_end()) return std::nullopt;
  return ParameterStatus{*name, *value};
}

std::optional<BackendKeyData> read_backend_key_data(ByteView msg) {
  auto c = open(msg, be::kBackendKeyData);
  if (!c) return std::nullopt;
  const auto pid = c->u32();
  const auto secret = c->u32();
  if (!pid || !secret || !c->at_end()) return std::nullopt;
  return BackendKeyData{*pid, *secret};
}

std::optional<TxStatus> read_ready_for_query(ByteView msg) {
  auto c = open(msg, be::kReadyForQuery);
  if (!c) return std::nullopt;
  const auto status = c->u8();
  if (!status || !c->at_end()) return std::nullopt;
  switch (*status) {
    case 'I':
      return TxStatus::Idle;
    case 'T':
      return TxStatus::InTransaction;
    case 'E':
      return TxStatus::Failed;
    default:
      return std::nullopt;
  }
}

std::string_view ErrorFields::get(char code) const {
  // The last occurrence wins, as libpq reports a repeated field.
  for (auto it = fields.rbegin(); it != fields.rend(); ++it) {
    if (it->first == code) return it->second;
  }
  return {};
}

std::optional<ErrorFields> read_error_fields(ByteView msg) {
  if (msg.empty()) return std::nullopt;
  const char type = std::to_integer<char>(msg[0]);
  if (type != be::kErrorResponse && type != be::kNoticeResponse) return std::nullopt;
  auto c = open(msg, type);
  if (!c) return std::nullopt;
  ErrorFields e;
  for (;;) {
    const auto code = c->u8();
    if (!code) return std::nullopt;  // no terminating zero byte
    if (*code == 0) break;
    const auto value = c->cstring();
    if (!value) return std::nullopt;
    e.fields.emplace_back(static_cast<char>(*code), *value);
  }
  if (!c->at_end()) return std::nullopt;
  return e;
}

std::optional<std::string_view> read_command_complete(ByteView msg) {
  return read_single_string(msg, be::kCommandComplete);
}

std::optional<std::vector<std::optional<std::string_view>>> read_data_row(ByteView msg) {
  auto c = open(msg, be::kDataRow);
  if (!c) return std::nullopt;
  const auto count = c->u16();
  if (!count) return std::nullopt;
  std::vector<std::optional<std::string_view>> columns;
  columns.reserve(*count);
  for (std::uint16_t i = 0; i < *count; ++i) {
    const auto length = c->i32();
    if (!length || *length < -1) return std::nullopt;
    if (*length == -1) {
      columns.emplace_back(std::nullopt);
      continue;
    }
    const auto value = c->bytes(static_cast<std::size_t>(*length));
    if (!value) return std::nullopt;
    columns.emplace_back(as_chars(*value));
  }
  if (!c->at_end()) return std::nullopt;
  return columns;
}

// ---- frontend queries ----

std::optional<std::string_view> read_query(ByteView msg) {
  return read_single_string(msg, fe::kQuery);
}

std::optional<Parse> read_parse(ByteView msg) {
  auto c = open(msg, fe::kParse);
  if (!c) return std::nullopt;
  Parse p;
  const auto statement = c->cstring();
  if (!statement) return std::nullopt;
  const auto query = c->cstring();
  if (!query) return std::nullopt;
  const auto count = c->u16();
  if (!count) return std::nullopt;
  const auto types = c->bytes(std::size_t{*count} * 4);
  if (!types || !c->at_end()) return std::nullopt;
  p.statement = *statement;
  p.query = *query;
  p.param_type_count = *count;
  p.param_types = *types;
  return p;
}

std::optional<BindNames> read_bind_names(ByteView msg) {
  auto c = open(msg, fe::kBind);
  if (!c) return std::nullopt;
  const auto portal = c->cstring();
  if (!portal) return std::nullopt;
  const auto statement = c->cstring();
  if (!statement) return std::nullopt;
  const BindNames b{*portal, *statement, c->offset()};
  if (!skip_bind_rest(*c)) return std::nullopt;
  return b;
}

std::optional<Target> read_describe(ByteView msg) { return read_target(msg, fe::kDescribe); }

std::optional<Target> read_close(ByteView msg) { return read_target(msg, fe::kClose); }

std::optional<Execute> read_execute(ByteView msg) {
  auto c = open(msg, fe::kExecute);
  if (!c) return std::nullopt;
  const auto portal = c->cstring();
  if (!portal) return std::nullopt;
  const auto max_rows = c->u32();
  if (!max_rows || !c->at_end()) return std::nullopt;
  return Execute{*portal, *max_rows};
}

}  // namespace sluice::protocol
