// Property checks shared by the protocol fuzz targets. A violated property prints what failed and
// calls abort(), which libFuzzer reports as a crash and the corpus replay reports as a failed test.
#pragma once

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define SLUICE_FUZZ_CHECK(cond)                                                          \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace sluice::protocol::fuzz {

inline std::uintptr_t address(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// True if `part` lies within `whole` (an empty view anywhere within or at the end of it counts).
inline bool inside(const void* data, std::size_t size, ByteView whole) {
  const std::uintptr_t begin = address(whole.data());
  const std::uintptr_t end = begin + whole.size();
  const std::uintptr_t p = address(data);
  if (size == 0 && data == nullptr) return true;
  return p >= begin && p <= end && size <= end - p;
}
inline bool inside(std::string_view part, ByteView whole) {
  return inside(part.data(), part.size(), whole);
}
inline bool inside(ByteView part, ByteView whole) {
  return inside(part.data(), part.size(), whole);
}

inline bool same(const Buffer& built, ByteView original) {
  return built.size() == original.size() &&
         std::equal(built.begin(), built.end(), original.begin());
}

inline char type_of(ByteView msg) { return std::to_integer<char>(msg[0]); }

inline std::string_view as_chars(ByteView b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Checks one peek_frame result against the bytes it was given; returns it for the walk.
inline FrameResult checked_peek(ByteView rest, Direction dir, std::uint32_t cap) {
  const FrameResult r = peek_frame(rest, dir, cap);
  switch (r.status) {
    case DecodeStatus::NeedMore:
      SLUICE_FUZZ_CHECK(rest.size() < 5);
      SLUICE_FUZZ_CHECK(r.error == FrameError::None);
      return r;
    case DecodeStatus::Error:
      SLUICE_FUZZ_CHECK(rest.size() >= 5);
      SLUICE_FUZZ_CHECK(r.error != FrameError::None);
      break;
    case DecodeStatus::Ok: {
      SLUICE_FUZZ_CHECK(rest.size() >= 5);
      SLUICE_FUZZ_CHECK(r.error == FrameError::None);
      SLUICE_FUZZ_CHECK(r.frame.type == type_of(rest));
      // Never Ok with a size beyond what was declared.
      SLUICE_FUZZ_CHECK(r.frame.length == read_u32(rest.data() + 1));
      SLUICE_FUZZ_CHECK(r.frame.size() == std::size_t{1} + r.frame.length);
      SLUICE_FUZZ_CHECK(r.frame.length >= 4 && r.frame.length <= cap);
      const MessageType* row = find_message_type(dir, r.frame.type);
      SLUICE_FUZZ_CHECK(row != nullptr && message_name(dir, r.frame.type) == row->name);
      SLUICE_FUZZ_CHECK(r.frame.length >= row->min_length);
      SLUICE_FUZZ_CHECK(row->max_length == 0 || r.frame.length <= row->max_length);
      break;
    }
  }
  // The verdict depends on the header alone, never on how much of the body has arrived.
  const FrameResult head = peek_frame(rest.first(5), dir, cap);
  SLUICE_FUZZ_CHECK(head.status == r.status && head.error == r.error);
  SLUICE_FUZZ_CHECK(head.frame.type == r.frame.type && head.frame.length == r.frame.length);
  return r;
}

// Every typed reader on `msg`: one that accepts it must have been written for its type byte, and
// none accepts a message whose declared length disagrees with the bytes given (a truncation).
inline void check_type_gates(ByteView msg) {
  const char t = type_of(msg);
  if (read_authentication(msg)) SLUICE_FUZZ_CHECK(t == 'R');
  if (read_parameter_status(msg)) SLUICE_FUZZ_CHECK(t == 'S');
  if (read_backend_key_data(msg)) SLUICE_FUZZ_CHECK(t == 'K');
  if (read_ready_for_query(msg)) SLUICE_FUZZ_CHECK(t == 'Z');
  if (read_error_fields(msg)) SLUICE_FUZZ_CHECK(t == 'E' || t == 'N');
  if (read_command_complete(msg)) SLUICE_FUZZ_CHECK(t == 'C');
  if (read_password_message(msg)) SLUICE_FUZZ_CHECK(t == 'p');
  if (read_sasl_initial_response(msg)) SLUICE_FUZZ_CHECK(t == 'p');
  if (read_sasl_response(msg)) SLUICE_FUZZ_CHECK(t == 'p');
  if (read_query(msg)) SLUICE_FUZZ_CHECK(t == 'Q');
  if (read_parse(msg)) SLUICE_FUZZ_CHECK(t == 'P');
  if (read_bind_names(msg)) SLUICE_FUZZ_CHECK(t == 'B');
  if (read_describe(msg)) SLUICE_FUZZ_CHECK(t == 'D');
  if (read_close(msg)) SLUICE_FUZZ_CHECK(t == 'C');
  if (read_execute(msg)) SLUICE_FUZZ_CHECK(t == 'E');

  const ByteView cut = msg.first(msg.size() - 1);
  SLUICE_FUZZ_CHECK(!read_authentication(cut) && !read_parameter_status(cut));
  SLUICE_FUZZ_CHECK(!read_backend_key_data(cut) && !read_ready_for_query(cut));
  SLUICE_FUZZ_CHECK(!read_error_fields(cut) && !read_command_complete(cut));
  SLUICE_FUZZ_CHECK(!read_password_message(cut) && !read_sasl_initial_response(cut));
  SLUICE_FUZZ_CHECK(!read_sasl_response(cut) && !read_query(cut) && !read_parse(cut));
  SLUICE_FUZZ_CHECK(!read_bind_names(cut) && !read_describe(cut) && !read_close(cut));
  SLUICE_FUZZ_CHECK(!read_execute(cut));
}

// Calls `on_message` with every complete message of a stream of typed frames.
template <typename F>
void walk_frames(ByteView input, Direction dir, std::uint32_t cap, F&& on_message) {
  ByteView rest = input;
  while (!rest.empty()) {
    const FrameResult r = checked_peek(rest, dir, cap);
    if (r.status != DecodeStatus::Ok || rest.size() < r.frame.size()) return;
    const ByteView msg = rest.first(r.frame.size());
    SLUICE_FUZZ_CHECK(inside(msg, input));
    on_message(msg);
    rest = rest.subspan(r.frame.size());
  }
}

}  // namespace sluice::protocol::fuzz
