// Logging: one named spdlog logger per component; lines are a stable event name followed by
// key=value fields (spdlog 1.10 has no MDC). Never log passwords, SCRAM payloads or SQL text at
// info or above. Loggers are created once in init_logging() and are thread-safe.
//
// Text that a client or a server chose (user, database, application_name, a peer's address, a
// server's error message, an exception's text) goes into a field only through log::value() or,
// inside a quoted field (`error="{}"`), log::escaped(), so that it can neither start a new line
// nor forge a key=value field (issue 12, item 11). As a second line of defence the sink escapes
// every control character left in a message (a call site that forgot), so one event is always
// exactly one line.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>

namespace sluice::log {

void init_logging(const std::string& level);
void set_level(const std::string& level);

spdlog::logger& session();
spdlog::logger& pool();
spdlog::logger& config();
spdlog::logger& main();

// The formatter of the loggers' sink: spdlog's pattern formatter for `pattern`, except that a
// message still holding a control character is written with it escaped (\n, \xNN), so that every
// event is one line whatever its fields carry.
std::unique_ptr<spdlog::formatter> make_line_formatter(std::string pattern);

// Appends `text` to `out` with every byte that could end a line or a quoted value escaped:
// backslash and double quote as \\ and \", newline, carriage return and tab as \n \r \t, other
// control characters (C0 and DEL) and bytes that are not well-formed UTF-8 as \xNN, and the code
// points some viewers break lines at (C1 controls U+0080..U+009F, U+2028, U+2029) as \u{NNNN}.
// Everything else, including well-formed UTF-8, is copied as it is.
void append_escaped(std::string_view text, std::string& out);
// `text` escaped as above.
std::string escape(std::string_view text);
// A field value: escape(text), in double quotes when it is empty or holds a space, '=', or
// anything escape() changed; "alice" stays alice, "x y=1" becomes "x y=1" in quotes.
std::string quote(std::string_view text);

// What log::escaped() and log::value() return: formatted (and only then escaped) by the
// fmt::formatter below, so a debug line that is filtered out costs no copy.
struct Escaped {
  std::string_view text;
  bool quote = false;  // quote() rather than escape()
};
// For a field whose quotes are in the format string: `error="{}"`.
inline Escaped escaped(std::string_view text) { return Escaped{text, false}; }
// For an unquoted field: `user={}`.
inline Escaped value(std::string_view text) { return Escaped{text, true}; }

}  // namespace sluice::log

template <>
struct fmt::formatter<sluice::log::Escaped> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  template <typename FormatContext>
  auto format(const sluice::log::Escaped& e, FormatContext& ctx) const {
    const std::string s = e.quote ? sluice::log::quote(e.text) : sluice::log::escape(e.text);
    return std::copy(s.begin(), s.end(), ctx.out());
  }
};
