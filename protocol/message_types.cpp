// The two message tables (one per direction): the single source of truth for which type bytes are
// valid, their names as in the PostgreSQL docs, and the length bounds of their body layouts.
#include "protocol/messages.hpp"

#include <array>
#include <cstddef>
#include <iterator>
#include <span>

namespace sluice::protocol {
namespace {

// Minimum lengths follow each layout in "Message Formats": 4 length bytes plus the smallest body
// (empty strings are one NUL, counts are int16/int32). Maximums are set only for fixed-size
// messages; BackendKeyData allows the 256-byte secret keys of protocol 3.2.
constexpr MessageType kFrontendTypes[] = {
    {fe::kBind, "Bind", 12, 0},
    {fe::kClose, "Close", 6, 0},
    {fe::kCopyData, "CopyData", 4, 0},
    {fe::kCopyDone, "CopyDone", 4, 4},
    {fe::kCopyFail, "CopyFail", 5, 0},
    {fe::kDescribe, "Describe", 6, 0},
    {fe::kExecute, "Execute", 9, 0},
    {fe::kFlush, "Flush", 4, 4},
    {fe::kFunctionCall, "FunctionCall", 14, 0},
    {fe::kParse, "Parse", 8, 0},
    // Shared by PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse; the docs
    // name the byte after the first of them.
    {fe::kPassword, "PasswordMessage", 4, 0},
    {fe::kQuery, "Query", 5, 0},
    {fe::kSync, "Sync", 4, 4},
    {fe::kTerminate, "Terminate", 4, 4},
};

constexpr MessageType kBackendTypes[] = {
    {be::kAuthentication, "Authentication", 8, 0},
    {be::kBackendKeyData, "BackendKeyData", 12, 4 + 4 + 256},
    {be::kBindComplete, "BindComplete", 4, 4},
    {be::kCloseComplete, "CloseComplete", 4, 4},
    {be::kCommandComplete, "CommandComplete", 5, 0},
    {be::kCopyData, "CopyData", 4, 0},
    {be::kCopyDone, "CopyDone", 4, 4},
    {be::kCopyInResponse, "CopyInResponse", 7, 0},
    {be::kCopyOutResponse, "CopyOutResponse", 7, 0},
    {be::kCopyBothResponse, "CopyBothResponse", 7, 0},
    {be::kDataRow, "DataRow", 6, 0},
    {be::kEmptyQueryResponse, "EmptyQueryResponse", 4, 4},
    {be::kErrorResponse, "ErrorResponse", 5, 0},
    {be::kFunctionCallResponse, "FunctionCallResponse", 8, 0},
    {be::kNegotiateProtocolVersion, "NegotiateProtocolVersion", 12, 0},
    {be::kNoData, "NoData", 4, 4},
    {be::kNoticeResponse, "NoticeResponse", 5, 0},
    {be::kNotificationResponse, "NotificationResponse", 10, 0},
    {be::kParameterDescription, "ParameterDescription", 6, 0},
    {be::kParameterStatus, "ParameterStatus", 6, 0},
    {be::kParseComplete, "ParseComplete", 4, 4},
    {be::kPortalSuspended, "PortalSuspended", 4, 4},
    {be::kReadyForQuery, "ReadyForQuery", 5, 5},
    {be::kRowDescription, "RowDescription", 6, 0},
};

// Type byte -> row index + 1 (0: not a valid type), built from a table at compile time.
using TypeIndex = std::array<unsigned char, 256>;

template <std::size_t N>
constexpr TypeIndex make_index(const MessageType (&table)[N]) {
  static_assert(N < 255);
  TypeIndex index{};
  for (std::size_t i = 0; i < N; ++i) {
    index[static_cast<unsigned char>(table[i].type)] = static_cast<unsigned char>(i + 1);
  }
  return index;
}

constexpr TypeIndex kFrontendIndex = make_index(kFrontendTypes);
constexpr TypeIndex kBackendIndex = make_index(kBackendTypes);

// A repeated type byte would silently shadow a row; every row must own its slot.
constexpr std::size_t used_slots(const TypeIndex& index) {
  std::size_t n = 0;
  for (unsigned char slot : index) n += slot != 0 ? 1 : 0;
  return n;
}
static_assert(used_slots(kFrontendIndex) == std::size(kFrontendTypes));
static_assert(used_slots(kBackendIndex) == std::size(kBackendTypes));

}  // namespace

std::span<const MessageType> message_types(Direction dir) {
  if (dir == Direction::Frontend) return kFrontendTypes;
  return kBackendTypes;
}

const MessageType* find_message_type(Direction dir, char type) {
  const TypeIndex& index = dir == Direction::Frontend ? kFrontendIndex : kBackendIndex;
  const unsigned char slot = index[static_cast<unsigned char>(type)];
  if (slot == 0) return nullptr;
  return &message_types(dir)[slot - 1u];
}

const char* message_name(Direction dir, char type) {
  const MessageType* row = find_message_type(dir, type);
  return row == nullptr ? nullptr : row->name;
}

}  // namespace sluice::protocol
