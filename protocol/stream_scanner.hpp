// StreamScanner: walks a byte stream of typed messages without copying bodies.
//
// The relay reads whatever the socket gives it and asks the scanner, step by step, what the bytes
// at the front are: a message header to stream through (the caller forwards `n` bytes and the
// scanner remembers how much of that body is still to come), the rest of such a body, or a
// complete message the caller wants to inspect (ReadyForQuery, ErrorResponse, ...), which the
// scanner only reports once all of it is in the buffer. "Inspect headers, stream bodies"
// (STYLE.md §3; PgBouncer's SBuf).
//
// next_run() is next() for a caller that only forwards streamed messages: one step covers a run
// of them (a result's DataRows), so the caller's per-message work disappears.
//
// Pure, no allocation; one scanner per direction of one connection; not thread-safe.
#pragma once

#include "protocol/framing.hpp"

#include <array>
#include <cstddef>
#include <cstdint>

namespace sluice::protocol {

struct ScanStep {
  enum class Kind {
    NeedMore,  // read more bytes; nothing at the front can be consumed yet
    Header,    // a streamed message starts here: forward `n` bytes (header + available body)
    Body,      // continuation of a streamed body: forward `n` bytes
    Message,   // a complete message to inspect occupies the first `n` bytes
    Error,     // framing lost: `error` says why; the connection must be closed
  };
  Kind kind = Kind::NeedMore;
  std::size_t n = 0;
  Frame frame{};  // Header and Message
  FrameError error = FrameError::None;
};

class StreamScanner {
 public:
  // `inspect[type]` true means the caller wants messages of that type whole.
  using InspectSet = std::array<bool, 256>;

  // Inspected messages longer than `inspect_max` bytes are streamed as headers instead, so a
  // huge message never has to fit in the buffer.
  // A streamed message is reported only once its first `min_prefix` bytes (or all of it, if
  // shorter) are buffered, so a caller can rewrite the fields at its front.
  StreamScanner(Direction dir, std::uint32_t max_length, const InspectSet& inspect,
                std::size_t inspect_max = SIZE_MAX, std::size_t min_prefix = 0)
      : dir_(dir),
        max_length_(max_length),
        inspect_(&inspect),
        inspect_max_(inspect_max),
        min_prefix_(min_prefix) {}

  // Looks at `buf` (the unconsumed bytes) and says what its front is. The caller must consume
  // exactly `n` bytes for Header/Body/Message before calling again.
  ScanStep next(ByteView buf) {
    if (remaining_ > 0) {
      std::size_t n = buf.size() < remaining_ ? buf.size() : remaining_;
      if (n == 0) return {};
      remaining_ -= n;
      return ScanStep{.kind = ScanStep::Kind::Body, .n = n};
    }
    FrameResult r = peek_frame(buf, dir_, max_length_);
    if (r.status == DecodeStatus::NeedMore) return {};
    if (r.status == DecodeStatus::Error) {
      return ScanStep{.kind = ScanStep::Kind::Error, .error = r.error};
    }
    const std::size_t size = r.frame.size();
    if ((*inspect_)[static_cast<unsigned char>(r.frame.type)] && size <= inspect_max_) {
      if (buf.size() < size) return ScanStep{.kind = ScanStep::Kind::NeedMore, .frame = r.frame};
      return ScanStep{.kind = ScanStep::Kind::Message, .n = size, .frame = r.frame};
    }
    const std::size_t prefix = size < min_prefix_ ? size : min_prefix_;
    if (buf.size() < prefix) return ScanStep{.kind = ScanStep::Kind::NeedMore, .frame = r.frame};
    std::size_t n = buf.size() < size ? buf.size() : size;
    remaining_ = size - n;
    return ScanStep{.kind = ScanStep::Kind::Header, .n = n, .frame = r.frame};
  }

  // Like next(), but when the front is a streamed message that is complete in `buf`, the step
  // also covers the streamed messages right after it: complete ones, and the available part of
  // one whose body is still arriving (remembered as next() would). It stops before a message to
  // inspect (or of a type to inspect but too long, which the next step reports as a Header), an
  // incomplete header, a message shorter than its `min_prefix`, or framing that is
  // wrong (reported by the following call). `frame` is the first message's header and the step
  // may cover many messages, so this suits a caller that does nothing with streamed messages but
  // forward them (the backend-to-client pump: a result of N DataRows is one step, not N).
  ScanStep next_run(ByteView buf) {
    ScanStep step = next(buf);
    if (step.kind != ScanStep::Kind::Header || remaining_ > 0) return step;
    std::size_t n = step.n;
    for (;;) {
      const ByteView rest = buf.subspan(n);
      const FrameResult r = peek_frame(rest, dir_, max_length_);
      if (r.status != DecodeStatus::Ok) break;
      const std::size_t size = r.frame.size();
      // A message of an inspected type starts its own step even when it is too long to hold
      // whole: the caller still sees its type (as a Header).
      if ((*inspect_)[static_cast<unsigned char>(r.frame.type)]) break;
      if (rest.size() >= size) {
        n += size;
        continue;
      }
      if (rest.size() < (size < min_prefix_ ? size : min_prefix_)) break;
      remaining_ = size - rest.size();
      n += rest.size();
      break;
    }
    step.n = n;
    return step;
  }

  // Whether messages of `type` are reported whole (up to inspect_max) rather than streamed.
  bool inspects(char type) const { return (*inspect_)[static_cast<unsigned char>(type)]; }

  // True between a streamed header and the end of its body.
  bool in_body() const { return remaining_ > 0; }

 private:
  Direction dir_;
  std::uint32_t max_length_;
  const InspectSet* inspect_;
  std::size_t inspect_max_;
  std::size_t min_prefix_;
  std::size_t remaining_ = 0;
};

// Builds an InspectSet from a list of type bytes.
template <typename... Types>
constexpr StreamScanner::InspectSet make_inspect_set(Types... types) {
  StreamScanner::InspectSet set{};
  ((set[static_cast<unsigned char>(types)] = true), ...);
  return set;
}

}  // namespace sluice::protocol
