// Fuzzes the SCRAM-SHA-256 server's parsing of client messages (src/auth/scram.cpp, the only src/
// file a fuzz target compiles; it needs OpenSSL's libcrypto and nothing else of src/).
//
// The input up to its first newline is a client-first-message, the rest a client-final-message,
// both given to a ScramServer holding the RFC 7677 "pencil" verifier with the RFC's server nonce
// (so the RFC exchange, seeded in the corpus, authenticates). Properties: a refused message
// leaves an error and no ClientKey, and a failed exchange stays failed; an accepted
// client-first is answered with r=<client nonce><server nonce>,s=<salt>,i=4096; an accepted
// client-final yields a ClientKey and v=<32 bytes in base64>. The whole input also goes to
// parse_scram_verifier() (whose format_scram_verifier() must read back as the same secret) and
// to base64_decode() (whose base64_encode() must decode to the same bytes).
#include "tests/fuzz/fuzz_support.hpp"

#include "src/auth/scram.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::auth::fuzz {
namespace {

constexpr std::string_view kServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
// format_scram_verifier(make_scram_secret("pencil", salt, 4096)) (tests/unit/src/scram_test.cpp).
constexpr std::string_view kPencilVerifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

const ScramSecret& pencil() {
  static const ScramSecret secret = [] {
    auto s = parse_scram_verifier(kPencilVerifier);
    SLUICE_FUZZ_CHECK(s.has_value());
    return *s;
  }();
  return secret;
}

void check_failed(const ScramServer& server) {
  SLUICE_FUZZ_CHECK(server.error() != ScramError::None && !server.client_key().has_value());
}

void check_exchange(std::string_view first, std::string_view final_message) {
  ScramServer server(pencil(), std::string(kServerNonce));
  const auto server_first = server.handle_client_first(first);
  if (!server_first) {
    check_failed(server);
    SLUICE_FUZZ_CHECK(!server.handle_client_final(final_message));
    check_failed(server);
    return;
  }
  SLUICE_FUZZ_CHECK(server.error() == ScramError::None);
  const std::string suffix = std::string(kServerNonce) + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
  SLUICE_FUZZ_CHECK(server_first->rfind("r=", 0) == 0 && server_first->size() > 2 + suffix.size());
  SLUICE_FUZZ_CHECK(
      server_first->compare(server_first->size() - suffix.size(), suffix.size(), suffix) == 0);
  // The client's nonce is echoed: it appears in the client-first message as r=<nonce>.
  const std::string_view client_nonce(server_first->data() + 2,
                                      server_first->size() - 2 - suffix.size());
  SLUICE_FUZZ_CHECK(first.find("r=" + std::string(client_nonce)) != std::string_view::npos);

  const auto server_final = server.handle_client_final(final_message);
  if (!server_final) {
    check_failed(server);
    SLUICE_FUZZ_CHECK(!server.handle_client_final(final_message));
    return;
  }
  SLUICE_FUZZ_CHECK(server.error() == ScramError::None && server.client_key().has_value());
  SLUICE_FUZZ_CHECK(server_final->rfind("v=", 0) == 0);
  const auto signature = base64_decode(std::string_view(*server_final).substr(2));
  SLUICE_FUZZ_CHECK(signature.has_value() && signature->size() == 32);
  // An exchange is single-use.
  SLUICE_FUZZ_CHECK(!server.handle_client_final(final_message));
}

void check_verifier(std::string_view text) {
  const auto secret = parse_scram_verifier(text);
  if (!secret) return;
  const auto again = parse_scram_verifier(format_scram_verifier(*secret));
  SLUICE_FUZZ_CHECK(again.has_value());
  SLUICE_FUZZ_CHECK(again->iterations == secret->iterations && again->salt == secret->salt &&
                    again->stored_key == secret->stored_key &&
                    again->server_key == secret->server_key);
}

void check_base64(std::string_view text) {
  const auto raw = base64_decode(text);
  if (!raw) return;
  const auto again = base64_decode(base64_encode(*raw));
  SLUICE_FUZZ_CHECK(again.has_value() && *again == *raw);
}

}  // namespace
}  // namespace sluice::auth::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::auth;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view first = input.substr(0, newline);
  const std::string_view final_message =
      newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  fuzz::check_exchange(first, final_message);
  fuzz::check_verifier(input);
  fuzz::check_base64(first);
  return 0;
}
