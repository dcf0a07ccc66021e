// Message-type tables and readers for the messages Sluice inspects.
//
// Readers take the complete message (type byte included, exactly `Frame::size()` bytes) and return
// views into it: no allocation except where a list must be built (startup parameters, error
// fields). On malformed input they return std::nullopt; they never throw or read past the span.
// Names follow the PostgreSQL protocol documentation ("Message Formats").
#pragma once

#include "protocol/framing.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol {

// Frontend (client -> server) type bytes.
namespace fe {
inline constexpr char kBind = 'B';
inline constexpr char kClose = 'C';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyFail = 'f';
inline constexpr char kDescribe = 'D';
inline constexpr char kExecute = 'E';
inline constexpr char kFlush = 'H';
inline constexpr char kFunctionCall = 'F';
inline constexpr char kParse = 'P';
// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share 'p'.
inline constexpr char kPassword = 'p';
inline constexpr char kQuery = 'Q';
inline constexpr char kSync = 'S';
inline constexpr char kTerminate = 'X';
}  // namespace fe

// Backend (server -> client) type bytes.
namespace be {
inline constexpr char kAuthentication = 'R';
inline constexpr char kBackendKeyData = 'K';
inline constexpr char kBindComplete = '2';
inline constexpr char kCloseComplete = '3';
inline constexpr char kCommandComplete = 'C';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyInResponse = 'G';
inline constexpr char kCopyOutResponse = 'H';
inline constexpr char kCopyBothResponse = 'W';
inline constexpr char kDataRow = 'D';
inline constexpr char kEmptyQueryResponse = 'I';
inline constexpr char kErrorResponse = 'E';
inline constexpr char kFunctionCallResponse = 'V';
inline constexpr char kNegotiateProtocolVersion = 'v';
inline constexpr char kNoData = 'n';
inline constexpr char kNoticeResponse = 'N';
inline constexpr char kNotificationResponse = 'A';
inline constexpr char kParameterDescription = 't';
inline constexpr char kParameterStatus = 'S';
inline constexpr char kParseComplete = '1';
inline constexpr char kPortalSuspended = 's';
inline constexpr char kReadyForQuery = 'Z';
inline constexpr char kRowDescription = 'T';
}  // namespace be

// Name of a message type as in the PostgreSQL docs ("ReadyForQuery"), or nullptr if `type` is not
// a valid type byte for `dir`. One table per direction is the single source of truth for this and
// for peek_frame's type check.
const char* message_name(Direction dir, char type);

// One row of a direction's message table. Lengths are declared-length values (they count the four
// length bytes, not the type byte): the smallest length the body layout allows, and for
// fixed-size messages the largest (0: bounded only by the caller's cap). peek_frame enforces both.
struct MessageType {
  char type = 0;
  const char* name = nullptr;
  std::uint32_t min_length = 4;
  std::uint32_t max_length = 0;
};
// The row for `type`, or nullptr if `type` is not valid for `dir`.
const MessageType* find_message_type(Direction dir, char type);
// Every row of `dir`'s table (for tests, fuzzers and diagnostics).
std::span<const MessageType> message_types(Direction dir);

// Authentication request codes ('R' messages).
enum class AuthCode : std::uint32_t {
  Ok = 0,
  KerberosV5 = 2,
  CleartextPassword = 3,
  MD5Password = 5,
  GSS = 7,
  GSSContinue = 8,
  SSPI = 9,
  SASL = 10,
  SASLContinue = 11,
  SASLFinal = 12,
};

// ---- startup phase (untyped packets; `msg` is the whole packet) ----

struct StartupMessage {
  std::uint32_t protocol = 0;  // e.g. kProtocolVersion3
  // Parameters in wire order ("user", "database", "options", "application_name", ...).
  std::vector<std::pair<std::string_view, std::string_view>> params;
  std::string_view get(std::string_view name) const;  // "" if absent
};
// Requires the packet to end with the terminating zero byte and every name to have a value;
// a missing "user" is not checked here (the caller answers 08P01/28000 as PostgreSQL does).
std::optional<StartupMessage> read_startup_message(ByteView msg);

struct CancelRequest {
  std::uint32_t pid = 0;
  std::uint32_t secret = 0;
};
std::optional<CancelRequest> read_cancel_request(ByteView msg);

// ---- typed messages (`msg` starts with the type byte) ----

struct Authentication {
  AuthCode code = AuthCode::Ok;
  ByteView data;  // bytes after the code: MD5 salt (4 bytes), SASL mechanism list, SASL data
};
std::optional<Authentication> read_authentication(ByteView msg);
// Splits an AuthenticationSASL mechanism list (NUL-terminated names, then an empty name).
std::optional<std::vector<std::string_view>> read_sasl_mechanisms(ByteView data);

struct ParameterStatus {
  std::string_view name;
  std::string_view value;
};
std::optional<ParameterStatus> read_parameter_status(ByteView msg);

struct BackendKeyData {
  std::uint32_t pid = 0;
  std::uint32_t secret = 0;
};
std::optional<BackendKeyData> read_backend_key_data(ByteView msg);

// Transaction status from ReadyForQuery: 'I' idle, 'T' in a transaction block, 'E' failed block.
enum class TxStatus : char { Idle = 'I', InTransaction = 'T', Failed = 'E' };
std::optional<TxStatus> read_ready_for_query(ByteView msg);

// ErrorResponse / NoticeResponse: (field code, value) pairs.
struct ErrorFields {
  std::vector<std::pair<char, std::string_view>> fields;
  std::string_view get(char code) const;  // "" if absent
  std::string_view severity() const { return get('V').empty() ? get('S') : get('V'); }
  std::string_view sqlstate() const { return get('C'); }
  std::string_view message() const { return get('M'); }
};
std::optional<ErrorFields> read_error_fields(ByteView msg);

// PasswordMessage ('p' after AuthenticationCleartextPassword/MD5Password): the password string.
std::optional<std::string_view> read_password_message(ByteView msg);

// SASLInitialResponse ('p' after AuthenticationSASL): mechanism name and initial client response.
// `data` is empty and `has_data` false when the int32 length is -1. The inner length must match
// the remaining bytes exactly.
struct SaslInitialResponse {
  std::string_view mechanism;
  bool has_data = false;
  std::string_view data;
};
std::optional<SaslInitialResponse> read_sasl_initial_response(ByteView msg);

// SASLResponse ('p' during a SASL exchange): the whole body.
std::optional<std::string_view> read_sasl_response(ByteView msg);

// Query ('Q'): the SQL text (without the terminating NUL).
std::optional<std::string_view> read_query(ByteView msg);

// Parse ('P'): statement name, query text, parameter type OIDs (raw bytes, count given).
struct Parse {
  std::string_view statement;
  std::string_view query;
  std::uint16_t param_type_count = 0;
  ByteView param_types;  // param_type_count * 4 bytes
};
std::optional<Parse> read_parse(ByteView msg);

// Bind ('B'): only the names are returned; the rest of the body (formats, values, result formats)
// is checked for layout and carried as bytes.
struct BindNames {
  std::string_view portal;
  std::string_view statement;
  std::size_t rest_offset = 0;  // offset in msg of the bytes after the statement name
};
std::optional<BindNames> read_bind_names(ByteView msg);

// Describe ('D') and Close ('C'): 'S' statement or 'P' portal, and its name.
struct Target {
  char kind = 'S';
  std::string_view name;
};
std::optional<Target> read_describe(ByteView msg);
std::optional<Target> read_close(ByteView msg);

// Execute ('E'): portal name and row limit.
struct Execute {
  std::string_view portal;
  std::uint32_t max_rows = 0;
};
std::optional<Execute> read_execute(ByteView msg);

// CommandComplete ('C'): the command tag.
std::optional<std::string_view> read_command_complete(ByteView msg);

// DataRow ('D'): its column values as text or bytes (nullopt for SQL NULL). Fails when the
// declared lengths do not cover the body exactly.
std::optional<std::vector<std::optional<std::string_view>>> read_data_row(ByteView msg);

}  // namespace sluice::protocol
