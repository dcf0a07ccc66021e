#include "protocol/builders.hpp"

#include <algorithm>
#include <cstddef>
#include <iterator>

namespace sluice::protocol {
namespace {

std::string_view up_to_nul(std::string_view s) { return s.substr(0, s.find('\0')); }

void build_error_or_notice(Buffer& out, char type, const ErrorInfo& e) {
  MessageWriter w(out);
  const std::string_view severity = to_string(e.severity);
  w.begin(type);
  w.add_u8('S').add_cstring(severity);
  w.add_u8('V').add_cstring(severity);
  w.add_u8('C').add_cstring(e.sqlstate);
  w.add_u8('M').add_cstring(e.message);
  if (!e.detail.empty()) w.add_u8('D').add_cstring(e.detail);
  if (!e.hint.empty()) w.add_u8('H').add_cstring(e.hint);
  w.add_u8(0);
  w.finish();
}

void build_auth(Buffer& out, AuthCode code, std::span<const std::byte> data) {
  MessageWriter(out)
      .begin(be::kAuthentication)
      .add_u32(static_cast<std::uint32_t>(code))
      .add_bytes(data)
      .finish();
}

void build_auth(Buffer& out, AuthCode code, std::string_view data) {
  MessageWriter(out)
      .begin(be::kAuthentication)
      .add_u32(static_cast<std::uint32_t>(code))
      .add_bytes(data)
      .finish();
}

void build_empty(Buffer& out, char type) { MessageWriter(out).begin(type).finish(); }

}  // namespace

// ---- MessageWriter ----

MessageWriter& MessageWriter::begin(char type) {
  if (type != 0) out_.push_back(static_cast<std::byte>(type));
  start_ = out_.size();
  return add_u32(0);  // patched by finish()
}

MessageWriter& MessageWriter::add_u8(std::uint8_t v) {
  out_.push_back(static_cast<std::byte>(v));
  return *this;
}

MessageWriter& MessageWriter::add_u16(std::uint16_t v) {
  out_.push_back(static_cast<std::byte>(v >> 8));
  out_.push_back(static_cast<std::byte>(v));
  return *this;
}

MessageWriter& MessageWriter::add_u32(std::uint32_t v) {
  out_.push_back(static_cast<std::byte>(v >> 24));
  out_.push_back(static_cast<std::byte>(v >> 16));
  out_.push_back(static_cast<std::byte>(v >> 8));
  out_.push_back(static_cast<std::byte>(v));
  return *this;
}

MessageWriter& MessageWriter::add_i32(std::int32_t v) {
  return add_u32(static_cast<std::uint32_t>(v));
}

MessageWriter& MessageWriter::add_cstring(std::string_view s) {
  add_bytes(up_to_nul(s));
  return add_u8(0);
}

MessageWriter& MessageWriter::add_bytes(std::span<const std::byte> b) {
  out_.insert(out_.end(), b.begin(), b.end());
  return *this;
}

MessageWriter& MessageWriter::add_bytes(std::string_view b) {
  append(out_, b);
  return *this;
}

void MessageWriter::finish() {
  const auto length = static_cast<std::uint32_t>(out_.size() - start_);
  out_[start_] = static_cast<std::byte>(length >> 24);
  out_[start_ + 1] = static_cast<std::byte>(length >> 16);
  out_[start_ + 2] = static_cast<std::byte>(length >> 8);
  out_[start_ + 3] = static_cast<std::byte>(length);
}

void append(Buffer& out, std::string_view s) {
  std::transform(s.begin(), s.end(), std::back_inserter(out),
                 [](char c) { return static_cast<std::byte>(c); });
}

std::string_view to_string(Severity s) {
  switch (s) {
    case Severity::Error:
      return "ERROR";
    case Severity::Fatal:
      return "FATAL";
    case Severity::Panic:
      return "PANIC";
    case Severity::Warning:
      return "WARNING";
    case Severity::Notice:
      return "NOTICE";
    case Severity::Debug:
      return "DEBUG";
    case Severity::Info:
      return "INFO";
    case Severity::Log:
      return "LOG";
  }
  return "ERROR";
}

// ---- server role ----

void build_error_response(Buffer& out, const ErrorInfo& e) {
  build_error_or_notice(out, be::kErrorResponse, e);
}

void build_notice_response(Buffer& out, const ErrorInfo& e) {
  build_error_or_notice(out, be::kNoticeResponse, e);
}

void build_ready_for_query(Buffer& out, TxStatus status) {
  MessageWriter(out).begin(be::kReadyForQuery).add_u8(static_cast<std::uint8_t>(status)).finish();
}

void build_auth_ok(Buffer& out) { build_auth(out, AuthCode::Ok, std::string_view{}); }

void build_auth_cleartext(Buffer& out) {
  build_auth(out, AuthCode::CleartextPassword, std::string_view{});
}

void build_auth_md5(Buffer& out, std::span<const std::byte, 4> salt) {
  build_auth(out, AuthCode::MD5Password, std::span<const std::byte>(salt));
}

void build_auth_sasl(Buffer& out, std::span<const std::string_view> mechanisms) {
  MessageWriter w(out);
  w.begin(be::kAuthentication).add_u32(static_cast<std::uint32_t>(AuthCode::SASL));
  for (std::string_view m : mechanisms) w.add_cstring(m);
  w.add_u8(0).finish();
}

void build_auth_sasl_continue(Buffer& out, std::string_view data) {
  build_auth(out, AuthCode::SASLContinue, data);
}

void build_auth_sasl_final(Buffer& out, std::string_view data) {
  build_auth(out, AuthCode::SASLFinal, data);
}

void build_parameter_status(Buffer& out, std::string_view name, std::string_view value) {
  MessageWriter(out).begin(be::kParameterStatus).add_cstring(name).add_cstring(value).finish();
}

void build_backend_key_data(Buffer& out, std::uint32_t pid, std::uint32_t secret) {
  MessageWriter(out).begin(be::kBackendKeyData).add_u32(pid).add_u32(secret).finish();
}

void build_negotiate_protocol_version(Buffer& out, std::uint32_t newest_minor,
                                      std::span<const std::string_view> unrecognized_options) {
  MessageWriter w(out);
  w.begin(be::kNegotiateProtocolVersion)
      .add_u32(newest_minor)
      .add_u32(static_cast<std::uint32_t>(unrecognized_options.size()));
  for (std::string_view option : unrecognized_options) w.add_cstring(option);
  w.finish();
}

void build_command_complete(Buffer& out, std::string_view tag) {
  MessageWriter(out).begin(be::kCommandComplete).add_cstring(tag).finish();
}

void build_empty_query_response(Buffer& out) { build_empty(out, be::kEmptyQueryResponse); }

void build_parse_complete(Buffer& out) { build_empty(out, be::kParseComplete); }

void build_row_description(Buffer& out, std::span<const Column> columns) {
  MessageWriter w(out);
  w.begin(be::kRowDescription).add_u16(static_cast<std::uint16_t>(columns.size()));
  for (const Column& c : columns) {
    w.add_cstring(c.name)
        .add_u32(0)  // not a column of a table
        .add_u16(0)  // attribute number
        .add_u32(c.type_oid)
        .add_u16(static_cast<std::uint16_t>(c.type_size))
        .add_i32(-1)  // type modifier
        .add_u16(0);  // text format
  }
  w.finish();
}

void build_data_row(Buffer& out, std::span<const std::string_view> values,
                    std::span<const bool> is_null) {
  MessageWriter w(out);
  w.begin(be::kDataRow).add_u16(static_cast<std::uint16_t>(values.size()));
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i < is_null.size() && is_null[i]) {
      w.add_i32(-1);
    } else {
      w.add_u32(static_cast<std::uint32_t>(values[i].size())).add_bytes(values[i]);
    }
  }
  w.finish();
}

// ---- client role ----

void build_startup_message(Buffer& out,
                           std::span<const std::pair<std::string, std::string>> params) {
  MessageWriter w(out);
  w.begin(0).add_u32(kProtocolVersion3);
  for (const auto& [name, value] : params) w.add_cstring(name).add_cstring(value);
  w.add_u8(0).finish();
}

void build_password_message(Buffer& out, std::string_view password) {
  MessageWriter(out).begin(fe::kPassword).add_cstring(password).finish();
}

void build_sasl_initial_response(Buffer& out, std::string_view mechanism, std::string_view data) {
  MessageWriter(out)
      .begin(fe::kPassword)
      .add_cstring(mechanism)
      .add_u32(static_cast<std::uint32_t>(data.size()))
      .add_bytes(data)
      .finish();
}

void build_sasl_response(Buffer& out, std::string_view data) {
  MessageWriter(out).begin(fe::kPassword).add_bytes(data).finish();
}

void build_query(Buffer& out, std::string_view sql) {
  MessageWriter(out).begin(fe::kQuery).add_cstring(sql).finish();
}

void build_sync(Buffer& out) { build_empty(out, fe::kSync); }

void build_terminate(Buffer& out) { build_empty(out, fe::kTerminate); }

void build_cancel_request(Buffer& out, std::uint32_t pid, std::uint32_t secret) {
  MessageWriter(out).begin(0).add_u32(kCancelRequestCode).add_u32(pid).add_u32(secret).finish();
}

void build_ssl_request(Buffer& out) {
  MessageWriter(out).begin(0).add_u32(kSslRequestCode).finish();
}

void build_gss_enc_request(Buffer& out) {
  MessageWriter(out).begin(0).add_u32(kGssEncRequestCode).finish();
}

}  // namespace sluice::protocol
