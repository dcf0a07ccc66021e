#include "src/auth_store.hpp"

#include "src/auth/md5.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace sluice {

std::optional<UserSecret> make_user_secret(const std::string& secret,
                                           std::uint32_t scram_iterations) {
  // An empty secret never authenticates anyone (PostgreSQL refuses empty passwords too).
  if (secret.empty()) return std::nullopt;
  UserSecret s;
  if (auto v = auth::parse_scram_verifier(secret)) {
    s.kind = UserSecret::Kind::Scram;
    s.scram = *v;
  } else if (auth::is_md5_secret(secret)) {
    s.kind = UserSecret::Kind::Md5;
    s.text = secret;
  } else {
    s.kind = UserSecret::Kind::Plain;
    s.text = secret;
    s.scram = auth::make_scram_secret(secret, auth::random_bytes(16), scram_iterations);
  }
  return s;
}

AuthStore::AuthStore(const config::AuthFile& users, std::uint32_t scram_iterations)
    : mock_key_(auth::random_bytes(32)) {
  for (const auto& [user, secret] : users) {
    if (auto s = make_user_secret(secret, scram_iterations)) users_.emplace(user, std::move(*s));
  }
}

const UserSecret* AuthStore::find(const std::string& user) const {
  auto it = users_.find(user);
  return it == users_.end() ? nullptr : &it->second;
}

auth::ScramSecret AuthStore::mock_secret(const std::string& user) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), mock_key_.data(), static_cast<int>(mock_key_.size()),
       reinterpret_cast<const unsigned char*>(user.data()), user.size(), digest, &len);
  auth::ScramSecret s;
  s.iterations = 4096;
  s.salt.assign(reinterpret_cast<const char*>(digest), 16);
  // Keys nobody can match: derived from the secret mock key, never from a password.
  std::copy(digest, digest + 32, s.stored_key.begin());
  std::copy(digest, digest + 32, s.server_key.begin());
  s.stored_key[0] ^= 0x5a;
  return s;
}

}  // namespace sluice
