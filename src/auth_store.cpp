#include "src/auth_store.hpp"

#include "src/auth/md5.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <map>

namespace sluice {
namespace {

// Drawn once per process: mock verifiers and derived salts stay the same across reloads, as a
// real verifier's salt does.
const std::string& process_key() {
  static const std::string key = auth::random_bytes(32);
  return key;
}

// HMAC-SHA-256 under the process key of `purpose` and `user`, separated by a NUL byte.
std::array<unsigned char, 32> keyed_digest(std::string_view purpose, const std::string& user) {
  std::string input(purpose);
  input += '\0';
  input += user;
  const std::string& key = process_key();
  std::array<unsigned char, 32> digest{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest.data(), &len);
  return digest;
}

}  // namespace

std::string scram_salt(const std::string& user) {
  const auto digest = keyed_digest("salt", user);
  return std::string(reinterpret_cast<const char*>(digest.data()), 16);
}

std::optional<UserSecret> make_user_secret(const std::string& user, const std::string& secret,
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
    s.scram = auth::make_scram_secret(secret, scram_salt(user), scram_iterations);
  }
  return s;
}

AuthStore::AuthStore(const config::AuthFile& users, std::uint32_t scram_iterations)
    : mock_iterations_(scram_iterations) {
  std::map<std::uint32_t, std::size_t> iterations;  // count -> verifiers using it
  std::size_t scram_users = 0;
  std::size_t md5_users = 0;
  for (const auto& [user, secret] : users) {
    auto s = make_user_secret(user, secret, scram_iterations);
    if (!s) continue;
    if (s->kind == UserSecret::Kind::Scram) {
      ++scram_users;
    } else {
      ++md5_users;
    }
    if (s->kind != UserSecret::Kind::Md5) ++iterations[s->scram.iterations];
    users_.emplace(user, std::move(*s));
  }
  unknown_gets_scram_ = scram_users > md5_users;
  std::size_t most = 0;
  for (const auto& [count, n] : iterations) {
    // Strictly more, or as many as the configured default's: ties go to scram_iterations.
    if (n > most || (n == most && count == scram_iterations)) {
      most = n;
      mock_iterations_ = count;
    }
  }
}

const UserSecret* AuthStore::find(const std::string& user) const {
  auto it = users_.find(user);
  return it == users_.end() ? nullptr : &it->second;
}

auth::ScramSecret AuthStore::mock_secret(const std::string& user) const {
  auth::ScramSecret s;
  s.iterations = mock_iterations_;
  s.salt = scram_salt(user);
  // Keys nobody can match: derived from the secret process key, never from a password.
  const auto keys = keyed_digest("mock", user);
  std::copy(keys.begin(), keys.end(), s.stored_key.begin());
  std::copy(keys.begin(), keys.end(), s.server_key.begin());
  s.stored_key[0] ^= 0x5a;
  return s;
}

}  // namespace sluice
