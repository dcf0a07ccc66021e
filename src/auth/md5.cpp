// PostgreSQL's MD5 password scheme over OpenSSL 3's EVP_Digest with EVP_md5().
#include "src/auth/md5.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <stdexcept>

namespace sluice::auth {
namespace {

constexpr std::string_view kPrefix = "md5";
constexpr std::size_t kHexDigits = 32;

// "md5" + lowercase hex of MD5(data); PostgreSQL compares these strings case-sensitively.
std::string prefixed_md5_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP_md5() is unavailable under a FIPS-only provider configuration; that is an environment
  // problem, not an input one.
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 ||
      len * 2 != kHexDigits) {
    throw std::runtime_error("MD5 digest failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kPrefix);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0x0f];
  }
  return out;
}

}  // namespace

std::string md5_secret(std::string_view password, std::string_view user) {
  std::string input(password);
  input.append(user);
  std::string out = prefixed_md5_hex(input);
  OPENSSL_cleanse(input.data(), input.size());
  return out;
}

bool is_md5_secret(std::string_view secret) {
  if (secret.size() != kPrefix.size() + kHexDigits || secret.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  return std::all_of(secret.begin() + kPrefix.size(), secret.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Throws std::invalid_argument unless is_md5_secret(secret): the caller checks the stored
// secret's kind before choosing the MD5 exchange.
std::string md5_response_from_secret(std::string_view secret, std::array<unsigned char, 4> salt) {
  if (!is_md5_secret(secret)) throw std::invalid_argument("not an md5 secret");
  std::string input(secret.substr(kPrefix.size()));
  for (unsigned char b : salt) input += static_cast<char>(b);
  return prefixed_md5_hex(input);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // The length is not secret (every response and secret kind has a fixed length); the contents are.
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sluice::auth
