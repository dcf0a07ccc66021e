#include "protocol/stream_scanner.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include "protocol/builders.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <tuple>
#include <vector>

namespace sluice::protocol {
namespace {

using test::Bytes;
using test::raw;
using test::view;
using Kind = ScanStep::Kind;

struct Recorded {
  Kind kind;
  std::size_t n;
  Frame frame;
  FrameError error;
  Bytes bytes;  // the `n` bytes the step covered
};

// Drives `scanner` the way the relay does: bytes arrive in chunks ending at `cuts` (then the rest),
// the caller consumes exactly `n` bytes per step and asks again until NeedMore or Error.
struct Driver {
  StreamScanner& scanner;
  Bytes pending;
  std::vector<Recorded> steps;
  bool failed = false;

  void feed(const Bytes& input, std::size_t from, std::size_t to) {
    pending.insert(pending.end(), input.begin() + static_cast<std::ptrdiff_t>(from),
                   input.begin() + static_cast<std::ptrdiff_t>(to));
    drain();
  }
  void drain() {
    while (!failed) {
      const ScanStep s = scanner.next(view(pending));
      if (s.kind == Kind::NeedMore) {
        REQUIRE(s.n == 0);
        return;
      }
      if (s.kind == Kind::Error) {
        steps.push_back(Recorded{s.kind, s.n, s.frame, s.error, {}});
        failed = true;
        return;
      }
      REQUIRE(s.n > 0);
      REQUIRE(s.n <= pending.size());
      Bytes covered(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(s.n));
      steps.push_back(Recorded{s.kind, s.n, s.frame, s.error, std::move(covered)});
      pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(s.n));
    }
  }
  void feed_split(const Bytes& input, const std::vector<std::size_t>& cuts) {
    std::size_t from = 0;
    for (std::size_t cut : cuts) {
      feed(input, from, cut);
      from = cut;
    }
    feed(input, from, input.size());
  }
};

struct Stream {
  Bytes bytes;
  std::vector<Bytes> messages;
};

Stream build_stream(const std::vector<std::string>& queries) {
  Stream s;
  auto add = [&](auto&& build) {
    Buffer one;
    build(one);
    s.messages.push_back(one);
    s.bytes.insert(s.bytes.end(), one.begin(), one.end());
  };
  for (const std::string& q : queries) add([&](Buffer& b) { build_query(b, q); });
  add([](Buffer& b) {
    MessageWriter(b).begin('P').add_cstring("s1").add_cstring("SELECT $1").add_u16(0).finish();
  });
  add([](Buffer& b) { MessageWriter(b).begin('H').finish(); });  // streamed, empty body
  add([](Buffer& b) {
    MessageWriter(b)
        .begin('B')
        .add_cstring("")
        .add_cstring("s1")
        .add_u16(0)
        .add_u16(1)
        .add_u32(3)
        .add_bytes("abc")
        .add_u16(0)
        .finish();
  });
  add(build_sync);
  add([](Buffer& b) { MessageWriter(b).begin('E').add_cstring("").add_u32(0).finish(); });
  return s;
}

const StreamScanner::InspectSet kQuerySync = make_inspect_set('Q', 'S');

// Checks the recorded steps against the messages of `stream`: every byte accounted for once, in
// order; inspected messages reported whole in one Message step; every other message as one Header
// and Body steps that add up to its size.
void check_steps(const std::vector<Recorded>& steps, const Stream& stream,
                 const StreamScanner::InspectSet& inspect, std::size_t inspect_max,
                 std::size_t min_prefix) {
  std::size_t total = 0;
  Bytes joined;
  for (const Recorded& r : steps) {
    REQUIRE(r.kind != Kind::Error);
    total += r.n;
    joined.insert(joined.end(), r.bytes.begin(), r.bytes.end());
  }
  CHECK(total == stream.bytes.size());
  CHECK(joined == stream.bytes);

  std::size_t i = 0;
  for (const Bytes& msg : stream.messages) {
    REQUIRE(i < steps.size());
    const Recorded& first = steps[i++];
    CHECK(first.frame.type == static_cast<char>(msg[0]));
    CHECK(first.frame.size() == msg.size());
    const bool whole = inspect[static_cast<unsigned char>(msg[0])] && msg.size() <= inspect_max;
    if (whole) {
      CHECK(first.kind == Kind::Message);
      CHECK(first.bytes == msg);
      continue;
    }
    CHECK(first.kind == Kind::Header);
    CHECK(first.n >= std::min(msg.size(), min_prefix));
    std::size_t covered = first.n;
    while (covered < msg.size()) {
      REQUIRE(i < steps.size());
      CHECK(steps[i].kind == Kind::Body);
      covered += steps[i++].n;
    }
    CHECK(covered == msg.size());
  }
  CHECK(i == steps.size());
}

TEST_CASE("a stream split at every byte boundary is scanned the same way", "[protocol]") {
  const Stream stream = build_stream({"SELECT 1", "SELECT 'a longer query text'"});
  const std::size_t min_prefix = GENERATE(std::size_t{0}, std::size_t{7}, std::size_t{12});
  CAPTURE(min_prefix);
  for (std::size_t cut = 0; cut <= stream.bytes.size(); ++cut) {
    CAPTURE(cut);
    StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync, SIZE_MAX,
                          min_prefix);
    Driver d{scanner, {}, {}};
    d.feed_split(stream.bytes, {cut});
    CHECK(d.pending.empty());
    CHECK_FALSE(scanner.in_body());
    check_steps(d.steps, stream, kQuerySync, SIZE_MAX, min_prefix);
  }
}

TEST_CASE("a stream fed one byte at a time is scanned the same way", "[protocol]") {
  const Stream stream = build_stream({"SELECT 1", "BEGIN"});
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < stream.bytes.size(); ++i) cuts.push_back(i);
  StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync);
  Driver d{scanner, {}, {}};
  d.feed_split(stream.bytes, cuts);
  CHECK(d.pending.empty());
  check_steps(d.steps, stream, kQuerySync, SIZE_MAX, 0);
}

TEST_CASE("inspected messages over inspect_max are streamed as headers", "[protocol]") {
  const std::string long_query(100, 'x');
  const Stream stream = build_stream({"SELECT 1", long_query, "SELECT 2"});
  constexpr std::size_t kInspectMax = 20;
  for (std::size_t cut = 0; cut <= stream.bytes.size(); ++cut) {
    CAPTURE(cut);
    StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync, kInspectMax);
    Driver d{scanner, {}, {}};
    d.feed_split(stream.bytes, {cut});
    check_steps(d.steps, stream, kQuerySync, kInspectMax, 0);
    // The long Query is the second message: a Header, never a Message.
    CHECK(d.steps.at(1).kind == Kind::Header);
    CHECK(d.steps.at(1).frame.type == 'Q');
  }
}

TEST_CASE("an inspected message is held back until all of it is buffered", "[protocol]") {
  Buffer q;
  build_query(q, "SELECT 1");
  StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync);
  for (std::size_t have = 0; have < q.size(); ++have) {
    CAPTURE(have);
    const ScanStep s = scanner.next(ByteView(q.data(), have));
    CHECK(s.kind == Kind::NeedMore);
    CHECK(s.n == 0);
    // Once the header is in, the frame tells the caller how much to buffer.
    if (have >= 5) CHECK(s.frame.size() == q.size());
  }
  const ScanStep s = scanner.next(view(q));
  CHECK(s.kind == Kind::Message);
  CHECK(s.n == q.size());
}

TEST_CASE("min_prefix holds back a header until the prefix is buffered", "[protocol]") {
  Buffer bind;
  MessageWriter(bind)
      .begin('B')
      .add_cstring("portal")
      .add_cstring("statement")
      .add_u16(0)
      .add_u16(1)
      .add_u32(40)
      .add_bytes(std::string(40, 'v'))
      .add_u16(0)
      .finish();
  constexpr std::size_t kPrefix = 24;
  StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync, SIZE_MAX,
                        kPrefix);
  for (std::size_t have = 0; have < kPrefix; ++have) {
    CAPTURE(have);
    const ScanStep s = scanner.next(ByteView(bind.data(), have));
    CHECK(s.kind == Kind::NeedMore);
    if (have >= 5) CHECK(s.frame.type == 'B');
  }
  CHECK_FALSE(scanner.in_body());
  const ScanStep s = scanner.next(ByteView(bind.data(), kPrefix));
  CHECK(s.kind == Kind::Header);
  CHECK(s.n == kPrefix);
  CHECK(scanner.in_body());

  SECTION("a message shorter than the prefix is reported once whole") {
    Buffer flush;
    MessageWriter(flush).begin('H').finish();
    StreamScanner small(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync, SIZE_MAX,
                        kPrefix);
    CHECK(small.next(ByteView(flush.data(), 4)).kind == Kind::NeedMore);
    const ScanStep f = small.next(view(flush));
    CHECK(f.kind == Kind::Header);
    CHECK(f.n == 5);
    CHECK_FALSE(small.in_body());
  }
}

TEST_CASE("in_body is true from a partial header to the end of its body", "[protocol]") {
  Buffer parse;
  MessageWriter(parse).begin('P').add_cstring("").add_cstring("SELECT 1").add_u16(0).finish();
  Buffer both = parse;
  build_sync(both);
  StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync);
  CHECK_FALSE(scanner.in_body());

  ScanStep s = scanner.next(ByteView(both.data(), 8));
  CHECK(s.kind == Kind::Header);
  CHECK(s.n == 8);
  CHECK(scanner.in_body());

  // Nothing buffered: nothing to forward yet.
  s = scanner.next(ByteView(both.data() + 8, 0));
  CHECK(s.kind == Kind::NeedMore);
  CHECK(scanner.in_body());

  s = scanner.next(ByteView(both.data() + 8, 3));
  CHECK(s.kind == Kind::Body);
  CHECK(s.n == 3);
  CHECK(scanner.in_body());

  // More than the body: only the body's remaining bytes, the Sync after it is left alone.
  s = scanner.next(ByteView(both.data() + 11, both.size() - 11));
  CHECK(s.kind == Kind::Body);
  CHECK(s.n == parse.size() - 11);
  CHECK_FALSE(scanner.in_body());

  s = scanner.next(ByteView(both.data() + parse.size(), both.size() - parse.size()));
  CHECK(s.kind == Kind::Message);
  CHECK(s.frame.type == 'S');
  CHECK(s.n == 5);
}

TEST_CASE("a bad header is an error once its five bytes are in", "[protocol]") {
  using Row = std::tuple<Bytes, FrameError>;
  const auto [bytes, error] =
      GENERATE(Row{raw({'Q', 0, 0, 0, 3}), FrameError::LengthTooShort},
               Row{raw({'Q', 0, 0, 0, 0, 'x'}), FrameError::LengthTooShort},
               Row{raw({'S', 0, 0, 0, 5, 0}), FrameError::LengthTooLong},  // Sync is exactly 4
               Row{raw({'Q', 0, 0, 4, 1}), FrameError::LengthTooLong},  // over the 1024 cap below
               Row{raw({'P', 0x7f, 0xff, 0xff, 0xff}), FrameError::LengthTooLong},
               Row{raw({'z', 0, 0, 0, 4}), FrameError::UnknownType},
               Row{raw({'1', 0, 0, 0, 4}), FrameError::UnknownType});  // backend-only type
  StreamScanner scanner(Direction::Frontend, 1024, kQuerySync);
  for (std::size_t have = 0; have < 5; ++have) {
    CHECK(scanner.next(ByteView(bytes.data(), have)).kind == Kind::NeedMore);
  }
  const ScanStep s = scanner.next(view(bytes));
  CHECK(s.kind == Kind::Error);
  CHECK(s.error == error);
  CHECK(s.n == 0);
}

TEST_CASE("a bad header after good messages stops the scan there", "[protocol]") {
  const Stream stream = build_stream({"SELECT 1"});
  Bytes input = stream.bytes;
  const Bytes bad = raw({'Q', 0, 0, 0, 2});
  input.insert(input.end(), bad.begin(), bad.end());
  StreamScanner scanner(Direction::Frontend, kDefaultMaxMessageLength, kQuerySync);
  Driver d{scanner, {}, {}};
  d.feed_split(input, {7});
  REQUIRE(d.failed);
  CHECK(d.steps.back().kind == Kind::Error);
  CHECK(d.steps.back().error == FrameError::LengthTooShort);
  CHECK(d.pending == bad);
}

TEST_CASE("the backend direction checks backend type bytes", "[protocol]") {
  const auto inspect = make_inspect_set('Z', 'E');
  Buffer in;
  build_ready_for_query(in, TxStatus::Idle);
  build_command_complete(in, "SELECT 1");
  build_ready_for_query(in, TxStatus::InTransaction);
  StreamScanner scanner(Direction::Backend, kDefaultMaxMessageLength, inspect);
  Driver d{scanner, {}, {}};
  d.feed_split(in, {3});
  REQUIRE(d.steps.size() == 3);
  CHECK(d.steps[0].kind == Kind::Message);
  CHECK(d.steps[1].kind == Kind::Header);
  CHECK(d.steps[1].frame.type == 'C');
  CHECK(d.steps[2].kind == Kind::Message);
  CHECK(d.steps[2].bytes == raw({'Z', 0, 0, 0, 5, 'T'}));
  // 'Q' is not a backend message.
  StreamScanner other(Direction::Backend, kDefaultMaxMessageLength, inspect);
  CHECK(other.next(view(raw({'Q', 0, 0, 0, 5, 0}))).error == FrameError::UnknownType);
}

}  // namespace
}  // namespace sluice::protocol
