// AuthStore: the users Sluice can authenticate, from the auth file, with their secrets parsed once.
//
// A secret is a plain password, an md5 secret or a SCRAM verifier. For SCRAM logins a plain
// password is turned into a verifier once per load (random salt). Immutable after construction and
// shared as std::shared_ptr<const AuthStore>; any thread may read it. Reload builds a new one.
#pragma once

#include "config/auth_file.hpp"
#include "src/auth/scram.hpp"

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

namespace sluice {

struct UserSecret {
  enum class Kind { Plain, Md5, Scram };
  Kind kind = Kind::Plain;
  std::string text;         // plain password or "md5..." secret; empty for Scram
  auth::ScramSecret scram;  // verifier (for Plain: derived once)
};

// The UserSecret of one "user" "secret" pair, as the auth file's entries are built (also used for
// secrets found by auth_query): a SCRAM verifier, an md5 secret, or a plain password (from which
// a SCRAM verifier with `scram_iterations` PBKDF2 iterations and a random salt is derived, so this
// costs CPU). nullopt for an empty secret, which never authenticates anyone. Any thread.
std::optional<UserSecret> make_user_secret(const std::string& secret,
                                           std::uint32_t scram_iterations);

class AuthStore {
 public:
  AuthStore() = default;
  AuthStore(const config::AuthFile& users, std::uint32_t scram_iterations);
  const UserSecret* find(const std::string& user) const;
  // A deterministic fake verifier for users that do not exist, so a SCRAM exchange for an unknown
  // user looks like one for a known user until the proof fails (as PostgreSQL does).
  auth::ScramSecret mock_secret(const std::string& user) const;
  std::size_t size() const { return users_.size(); }

 private:
  std::unordered_map<std::string, UserSecret> users_;
  std::string mock_key_;
};

}  // namespace sluice
