// AuthStore: the users Sluice can authenticate, from the auth file, with their secrets parsed once.
//
// A secret is a plain password, an md5 secret or a SCRAM verifier. For SCRAM logins a plain
// password is turned into a verifier once per load. Immutable after construction and shared as
// std::shared_ptr<const AuthStore>; any thread may read it. Reload builds a new one.
//
// Before the password is checked, a client must not learn whether its user exists or how its
// secret is stored (issue 12, item 13). So a user that cannot answer SCRAM (unknown, or with an md5
// secret) is shown a mock verifier whose salt comes from the user name and a key drawn once per
// process (the same salt on every attempt and across reloads, as a real user's), with the
// iteration count most real verifiers have; and a plain password's verifier uses that very salt.
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
// a SCRAM verifier with `scram_iterations` PBKDF2 iterations and the user's salt, scram_salt(),
// is derived, so this costs CPU). nullopt for an empty secret, which never authenticates anyone.
// Any thread.
std::optional<UserSecret> make_user_secret(const std::string& user, const std::string& secret,
                                           std::uint32_t scram_iterations);

// The SCRAM salt this process gives `user` (16 bytes, as PostgreSQL's): an HMAC of the name under
// a random key drawn once per process. Used for verifiers derived from plain passwords and for
// mock verifiers, so both show the same, stable salt. Any thread.
std::string scram_salt(const std::string& user);

class AuthStore {
 public:
  AuthStore() = default;
  AuthStore(const config::AuthFile& users, std::uint32_t scram_iterations);
  const UserSecret* find(const std::string& user) const;
  // A verifier nobody can match, for a user whose secret cannot answer SCRAM (unknown, or an md5
  // secret): salt scram_salt(user), mock_iterations(); deterministic, so a SCRAM exchange for
  // such a user looks like one for a known user until the proof fails (as PostgreSQL does).
  auth::ScramSecret mock_secret(const std::string& user) const;
  // The iteration count most of this store's SCRAM verifiers (parsed or derived) use; with none,
  // `scram_iterations` (default 4096, PostgreSQL's).
  std::uint32_t mock_iterations() const { return mock_iterations_; }
  // Under auth_type md5, whether an unknown user is offered SCRAM rather than md5: what most
  // users of the auth file get (a SCRAM verifier gets SCRAM; md5 secrets and plain passwords get
  // md5; a tie: md5). PostgreSQL picks by password_encryption for the same reason: the unknown
  // user "blends in" with most real ones.
  bool unknown_user_gets_scram_under_md5() const { return unknown_gets_scram_; }
  std::size_t size() const { return users_.size(); }

 private:
  std::unordered_map<std::string, UserSecret> users_;
  std::uint32_t mock_iterations_ = 4096;
  bool unknown_gets_scram_ = false;
};

}  // namespace sluice
