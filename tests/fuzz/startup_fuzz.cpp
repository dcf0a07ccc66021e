// Fuzzes the startup phase: walks the input as a sequence of untyped packets (SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage), reads each complete one and rebuilds it.
#include "tests/fuzz/fuzz_support.hpp"

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::protocol::fuzz {
namespace {

StartupFrameResult checked_peek_startup(ByteView rest) {
  const StartupFrameResult r = peek_startup(rest);
  if (r.status == DecodeStatus::NeedMore) {
    SLUICE_FUZZ_CHECK(r.error == FrameError::None);
    SLUICE_FUZZ_CHECK(rest.size() < 8 || rest.size() < read_u32(rest.data()));
    return r;
  }
  if (r.status == DecodeStatus::Error) {
    SLUICE_FUZZ_CHECK(r.error != FrameError::None && rest.size() >= 4);
    return r;
  }
  SLUICE_FUZZ_CHECK(r.error == FrameError::None);
  // Never Ok with a size beyond what was declared, nor before all of it is present.
  SLUICE_FUZZ_CHECK(rest.size() >= 8 && r.length == read_u32(rest.data()));
  SLUICE_FUZZ_CHECK(r.length >= 8 && r.length <= kMaxStartupLength && r.length <= rest.size());
  SLUICE_FUZZ_CHECK(r.code == read_u32(rest.data() + 4));
  switch (r.kind) {
    case StartupKind::CancelRequest:
      SLUICE_FUZZ_CHECK(r.code == kCancelRequestCode && r.length == 16);
      break;
    case StartupKind::SslRequest:
      SLUICE_FUZZ_CHECK(r.code == kSslRequestCode && r.length == 8);
      break;
    case StartupKind::GssEncRequest:
      SLUICE_FUZZ_CHECK(r.code == kGssEncRequestCode && r.length == 8);
      break;
    case StartupKind::Startup:
      SLUICE_FUZZ_CHECK(r.code >> 16 == 3);
      break;
  }
  // One byte short of the packet is never enough.
  SLUICE_FUZZ_CHECK(peek_startup(rest.first(r.length - 1)).status == DecodeStatus::NeedMore);
  return r;
}

void check_startup_message(ByteView pkt) {
  const auto m = read_startup_message(pkt);
  if (!m) return;
  SLUICE_FUZZ_CHECK(m->protocol == read_u32(pkt.data() + 4));
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& [name, value] : m->params) {
    SLUICE_FUZZ_CHECK(inside(name, pkt) && inside(value, pkt) && !name.empty());
    params.emplace_back(name, value);
  }
  // get() answers with the last occurrence of a name (checked on the first few, to stay fast).
  for (std::size_t i = 0; i < m->params.size() && i < 16; ++i) {
    const std::string_view name = m->params[i].first;
    std::string_view last;
    for (const auto& [n, v] : m->params) {
      if (n == name) last = v;
    }
    SLUICE_FUZZ_CHECK(m->get(name).data() == last.data());
  }
  Buffer out;
  build_startup_message(out, params);
  // The builder always writes 3.0; the rest must match byte for byte.
  SLUICE_FUZZ_CHECK(out.size() == pkt.size());
  for (std::size_t i = 0; i < 4; ++i) out[4 + i] = pkt[4 + i];
  SLUICE_FUZZ_CHECK(same(out, pkt));
}

void check_packet(ByteView pkt, StartupKind kind) {
  const auto cancel = read_cancel_request(pkt);
  SLUICE_FUZZ_CHECK(cancel.has_value() == (kind == StartupKind::CancelRequest));
  if (kind != StartupKind::Startup) SLUICE_FUZZ_CHECK(!read_startup_message(pkt));
  Buffer out;
  switch (kind) {
    case StartupKind::CancelRequest:
      build_cancel_request(out, cancel->pid, cancel->secret);
      SLUICE_FUZZ_CHECK(same(out, pkt));
      break;
    case StartupKind::SslRequest:
      build_ssl_request(out);
      SLUICE_FUZZ_CHECK(same(out, pkt));
      break;
    case StartupKind::GssEncRequest:
      build_gss_enc_request(out);
      SLUICE_FUZZ_CHECK(same(out, pkt));
      break;
    case StartupKind::Startup:
      check_startup_message(pkt);
      break;
  }
}

}  // namespace
}  // namespace sluice::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::protocol;
  const ByteView input(reinterpret_cast<const std::byte*>(data), size);
  ByteView rest = input;
  while (!rest.empty()) {
    const StartupFrameResult r = fuzz::checked_peek_startup(rest);
    if (r.status != DecodeStatus::Ok) break;
    const ByteView pkt = rest.first(r.length);
    fuzz::check_packet(pkt, r.kind);
    rest = rest.subspan(r.length);
  }
  return 0;
}
