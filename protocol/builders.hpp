// Builders for the messages Sluice sends, in either role (server towards clients, client towards
// backends). Each appends to a caller-owned buffer and patches the length field when finished
// (PgBouncer's pktbuf start/finish), so a caller can batch several messages into one write.
// Pure; any thread.
#pragma once

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol {

using Buffer = std::vector<std::byte>;

// Low-level writer: begin(type) ... add_*() ... finish(). type 0 means an untyped startup-phase
// packet (length first).
class MessageWriter {
 public:
  explicit MessageWriter(Buffer& out) : out_(out) {}
  MessageWriter& begin(char type);
  MessageWriter& add_u8(std::uint8_t v);
  MessageWriter& add_u16(std::uint16_t v);
  MessageWriter& add_u32(std::uint32_t v);
  MessageWriter& add_i32(std::int32_t v);
  // Bytes then a NUL. A string holding a NUL is cut there, so the message stays well framed.
  MessageWriter& add_cstring(std::string_view s);
  MessageWriter& add_bytes(std::span<const std::byte> b);
  MessageWriter& add_bytes(std::string_view b);
  void finish();  // patches the int32 length of the message begun last

 private:
  Buffer& out_;
  std::size_t start_ = 0;  // offset of the length field
};

// Append `s` to `out` as bytes.
void append(Buffer& out, std::string_view s);

// Severity as sent in both 'S' and 'V' fields.
enum class Severity { Error, Fatal, Panic, Warning, Notice, Debug, Info, Log };
std::string_view to_string(Severity s);

struct ErrorInfo {
  Severity severity = Severity::Error;
  std::string_view sqlstate;  // five characters, e.g. "53300"
  std::string_view message;
  std::string_view detail;  // omitted when empty
  std::string_view hint;    // omitted when empty
};

// ---- server role (Sluice -> client) ----
void build_error_response(Buffer& out, const ErrorInfo& e);
void build_notice_response(Buffer& out, const ErrorInfo& e);
void build_ready_for_query(Buffer& out, TxStatus status);
void build_auth_ok(Buffer& out);
void build_auth_cleartext(Buffer& out);
void build_auth_md5(Buffer& out, std::span<const std::byte, 4> salt);
void build_auth_sasl(Buffer& out, std::span<const std::string_view> mechanisms);
void build_auth_sasl_continue(Buffer& out, std::string_view data);
void build_auth_sasl_final(Buffer& out, std::string_view data);
void build_parameter_status(Buffer& out, std::string_view name, std::string_view value);
void build_backend_key_data(Buffer& out, std::uint32_t pid, std::uint32_t secret);
void build_negotiate_protocol_version(Buffer& out, std::uint32_t newest_minor,
                                      std::span<const std::string_view> unrecognized_options);
void build_command_complete(Buffer& out, std::string_view tag);
void build_empty_query_response(Buffer& out);
void build_parse_complete(Buffer& out);

// Row descriptions for result sets Sluice produces itself (admin console).
struct Column {
  std::string_view name;
  std::uint32_t type_oid = 25;  // text
  std::int16_t type_size = -1;
};
inline constexpr std::uint32_t kOidBool = 16;
inline constexpr std::uint32_t kOidInt8 = 20;
inline constexpr std::uint32_t kOidInt4 = 23;
inline constexpr std::uint32_t kOidText = 25;
inline constexpr std::uint32_t kOidFloat8 = 701;
void build_row_description(Buffer& out, std::span<const Column> columns);
// A DataRow of text values; NULL (length -1) is written where `is_null[i]` is true. `is_null` may
// be shorter than `values` (missing entries are not NULL).
void build_data_row(Buffer& out, std::span<const std::string_view> values,
                    std::span<const bool> is_null = {});

// ---- client role (Sluice -> backend) ----
void build_startup_message(Buffer& out,
                           std::span<const std::pair<std::string, std::string>> params);
void build_password_message(Buffer& out, std::string_view password);
void build_sasl_initial_response(Buffer& out, std::string_view mechanism, std::string_view data);
void build_sasl_response(Buffer& out, std::string_view data);
void build_query(Buffer& out, std::string_view sql);
void build_sync(Buffer& out);
void build_terminate(Buffer& out);
void build_cancel_request(Buffer& out, std::uint32_t pid, std::uint32_t secret);
void build_ssl_request(Buffer& out);
void build_gss_enc_request(Buffer& out);

}  // namespace sluice::protocol
