// StreamScanner::next_run (a run of forwarded-only messages as one step) against next(): same
// bytes forwarded, same messages reported, same errors, on randomized streams.
#include "protocol/messages.hpp"
#include "protocol/stream_scanner.hpp"

#include <catch2/catch.hpp>

#include <random>
#include <string>
#include <vector>

using namespace sluice::protocol;
using Bytes = std::vector<std::byte>;

static void msg(Bytes& out, char type, std::size_t body) {
  out.push_back(std::byte(type));
  std::uint32_t len = static_cast<std::uint32_t>(body + 4);
  for (int s = 24; s >= 0; s -= 8) out.push_back(std::byte((len >> s) & 0xff));
  for (std::size_t i = 0; i < body; ++i) out.push_back(std::byte('a' + i % 26));
}

struct Out {
  Bytes forwarded;  // every byte covered by Header/Body/Message steps
  std::vector<std::pair<std::size_t, Bytes>> messages;  // offset and bytes of Message steps
  std::size_t error_at = SIZE_MAX;
  FrameError error = FrameError::None;
  std::size_t steps = 0;
};

static Out drive(bool run, const Bytes& input, const std::vector<std::size_t>& cuts,
                 const StreamScanner::InspectSet& inspect, std::size_t inspect_max,
                 std::size_t min_prefix, Direction dir) {
  StreamScanner sc(dir, 1 << 20, inspect, inspect_max, min_prefix);
  Out o;
  Bytes pending;
  std::size_t consumed = 0, fed = 0;
  auto feed_to = [&](std::size_t to) {
    pending.insert(pending.end(), input.begin() + fed, input.begin() + to);
    fed = to;
    for (;;) {
      ByteView v(pending.data(), pending.size());
      ScanStep s = run ? sc.next_run(v) : sc.next(v);
      if (s.kind == ScanStep::Kind::NeedMore) return true;
      if (s.kind == ScanStep::Kind::Error) {
        o.error_at = consumed;
        o.error = s.error;
        return false;
      }
      REQUIRE(s.n > 0);
      REQUIRE(s.n <= pending.size());
      if (s.kind == ScanStep::Kind::Message)
        o.messages.emplace_back(consumed, Bytes(pending.begin(), pending.begin() + s.n));
      o.forwarded.insert(o.forwarded.end(), pending.begin(), pending.begin() + s.n);
      pending.erase(pending.begin(), pending.begin() + s.n);
      consumed += s.n;
      ++o.steps;
    }
  };
  for (std::size_t c : cuts)
    if (!feed_to(c)) return o;
  feed_to(input.size());
  REQUIRE(!(o.error == FrameError::None && sc.in_body()));
  return o;
}

TEST_CASE("next_run forwards the same bytes and reports the same messages as next") {
  std::mt19937 rng(12345);
  const auto be_inspect =
      make_inspect_set(be::kReadyForQuery, be::kParameterStatus, be::kErrorResponse);
  const auto fe_inspect = make_inspect_set(fe::kTerminate, fe::kQuery, fe::kParse, fe::kBind);
  const char be_types[] = {'T', 'D', 'D', 'D', 'C', 'Z', 'S', 'E', 'N', 'd', '2'};
  const char fe_types[] = {'Q', 'P', 'B', 'E', 'S', 'D', 'd', 'H'};
  std::size_t fewer = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    const bool backend = iter % 2 == 0;
    Bytes input;
    int count = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < count; ++i) {
      char t = backend ? be_types[rng() % sizeof be_types] : fe_types[rng() % sizeof fe_types];
      std::size_t body = rng() % 5 == 0 ? rng() % 3000 : rng() % 40;
      if (t == 'Z') body = 1;
      if (t == 'S' && !backend) body = 0;
      if (t == 'H') body = 0;
      if (t == 'E' && backend) body = 1 + body;
      if (t == 'S' && backend) body = std::max<std::size_t>(body, 2);
      if (t == 'C' && backend) body = std::max<std::size_t>(body, 1);
      if (t == 'D' && backend) body = std::max<std::size_t>(body, 2);
      if (t == 'T') body = std::max<std::size_t>(body, 2);
      if (t == 'N') body = std::max<std::size_t>(body, 1);
      if (t == '2') body = 0;
      if (!backend && t == 'P') body = std::max<std::size_t>(body, 4);
      if (!backend && t == 'B') body = std::max<std::size_t>(body, 8);
      if (!backend && t == 'E') body = std::max<std::size_t>(body, 5);
      if (!backend && t == 'D') body = std::max<std::size_t>(body, 2);
      if (!backend && t == 'Q') body = std::max<std::size_t>(body, 1);
      msg(input, t, body);
    }
    if (rng() % 10 == 0) {
      input.push_back(std::byte('?'));
      for (int k = 0; k < 4; ++k) input.push_back(std::byte(0));
      input.back() = std::byte(9);
    }
    std::vector<std::size_t> cuts;
    std::size_t ncuts = rng() % 8;
    for (std::size_t i = 0; i < ncuts; ++i) cuts.push_back(rng() % (input.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    std::size_t inspect_max = rng() % 3 == 0 ? 100 : SIZE_MAX;
    std::size_t min_prefix = rng() % 3 == 0 ? 16 : 0;
    Direction dir = backend ? Direction::Backend : Direction::Frontend;
    const auto& ins = backend ? be_inspect : fe_inspect;
    Out a = drive(false, input, cuts, ins, inspect_max, min_prefix, dir);
    Out b = drive(true, input, cuts, ins, inspect_max, min_prefix, dir);
    REQUIRE(a.forwarded == b.forwarded);
    REQUIRE(a.messages == b.messages);
    REQUIRE(a.error == b.error);
    REQUIRE(a.error_at == b.error_at);
    REQUIRE(b.steps <= a.steps);
    if (b.steps < a.steps) ++fewer;
  }
  REQUIRE(fewer > 1000);
}

TEST_CASE("next_run: a result of many DataRows is one step") {
  const auto inspect = make_inspect_set(be::kReadyForQuery);
  Bytes in;
  msg(in, 'T', 20);
  for (int i = 0; i < 100; ++i) msg(in, 'D', 30);
  msg(in, 'C', 10);
  msg(in, 'Z', 1);
  StreamScanner sc(Direction::Backend, 1 << 20, inspect);
  ByteView v(in.data(), in.size());
  ScanStep s = sc.next_run(v);
  CHECK(s.kind == ScanStep::Kind::Header);
  CHECK(s.frame.type == 'T');
  CHECK(s.n == in.size() - 6);
  s = sc.next_run(v.subspan(s.n));
  CHECK(s.kind == ScanStep::Kind::Message);
  CHECK(s.frame.type == 'Z');
  // A partial DataRow at the end is included and remembered as a body to come.
  Bytes part;
  msg(part, 'D', 30);
  msg(part, 'D', 30);
  StreamScanner sc2(Direction::Backend, 1 << 20, inspect);
  ScanStep p = sc2.next_run(ByteView(part.data(), part.size() - 7));
  CHECK(p.n == part.size() - 7);
  CHECK(sc2.in_body());
  p = sc2.next_run(ByteView(part.data() + part.size() - 7, 7));
  CHECK(p.kind == ScanStep::Kind::Body);
  CHECK(p.n == 7);
  CHECK(!sc2.in_body());
}

TEST_CASE("next_run: a message of an inspected type too long to hold starts its own step") {
  const auto inspect = make_inspect_set(be::kErrorResponse, be::kReadyForQuery);
  Bytes in;
  msg(in, 'D', 30);
  msg(in, 'E', 500);  // over inspect_max: streamed, but its type must be seen
  msg(in, 'Z', 1);
  StreamScanner sc(Direction::Backend, 1 << 20, inspect, 100);
  ByteView v(in.data(), in.size());
  ScanStep first = sc.next_run(v);
  REQUIRE(first.kind == ScanStep::Kind::Header);
  CHECK(first.frame.type == 'D');
  CHECK(first.n == 35);
  ScanStep error = sc.next_run(v.subspan(first.n));
  REQUIRE(error.kind == ScanStep::Kind::Header);
  CHECK(error.frame.type == 'E');
  CHECK(error.n == 505);
  ScanStep ready = sc.next_run(v.subspan(first.n + error.n));
  CHECK(ready.kind == ScanStep::Kind::Message);
}
