#include "src/http/status_access.hpp"

#include "protocol/text.hpp"
#include "src/auth/scram.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <array>
#include <optional>
#include <string>

namespace sluice::http {
namespace {

using Digest = std::array<unsigned char, SHA256_DIGEST_LENGTH>;

Digest sha256(std::string_view text) {
  Digest d{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d.data());
  return d;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The password a credential presents: Bearer's token, or Basic's part after the first ':' of
// base64(user:password) (RFC 7617; a user name cannot contain ':').
std::optional<std::string> presented_password(std::string_view authorization) {
  authorization = trim(authorization);
  const std::size_t space = authorization.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view scheme = authorization.substr(0, space);
  const std::string_view credentials = trim(authorization.substr(space + 1));
  if (protocol::iequals(scheme, "Bearer")) return std::string(credentials);
  if (!protocol::iequals(scheme, "Basic")) return std::nullopt;
  std::optional<std::string> decoded = auth::base64_decode(credentials);
  if (!decoded) return std::nullopt;
  const std::size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return decoded->substr(colon + 1);
}

}  // namespace

bool status_authorized(std::string_view authorization, std::string_view password) {
  if (password.empty()) return false;
  const std::optional<std::string> presented = presented_password(authorization);
  // Without credentials the digest of "" is compared anyway: the same work either way.
  const Digest a = sha256(presented.value_or(std::string()));
  const Digest b = sha256(password);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0 && presented.has_value();
}

}  // namespace sluice::http
