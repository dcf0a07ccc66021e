// AuthStore before the password is checked (issue 12, item 13): a user that cannot answer SCRAM
// (unknown, or stored as an md5 secret) is shown the same kind of salt and iteration count as a
// real one, the same on every attempt and across reloads; under auth_type md5 an unknown user
// gets the method most real users get.
#include "src/auth_store.hpp"

#include "src/auth/md5.hpp"
#include "src/auth/scram.hpp"

#include <catch2/catch.hpp>

#include <string>

namespace {

using sluice::AuthStore;
using sluice::UserSecret;
namespace auth = sluice::auth;

std::string verifier(const std::string& password, std::uint32_t iterations) {
  return auth::format_scram_verifier(
      auth::make_scram_secret(password, auth::random_bytes(16), iterations));
}

}  // namespace

TEST_CASE("the mock verifier's salt is per user, 16 bytes, stable across attempts and reloads",
          "[src]") {
  const AuthStore store({{"alice", "alice-secret"}}, 4096);
  const auth::ScramSecret a = store.mock_secret("nobody");
  const auth::ScramSecret b = store.mock_secret("nobody");
  CHECK(a.salt.size() == 16);  // as PostgreSQL's verifiers
  CHECK(a.salt == b.salt);
  CHECK(a.iterations == 4096);
  CHECK(a.salt != store.mock_secret("nobody2").salt);
  // A reload builds a new store: the same salt (a real verifier's salt does not change either).
  const AuthStore reloaded({{"alice", "alice-secret"}, {"bob", "bob-secret"}}, 4096);
  CHECK(reloaded.mock_secret("nobody").salt == a.salt);
  // Nobody can match it: its keys are not those of an empty or guessable password.
  const auth::ScramSecret empty = auth::make_scram_secret("", a.salt, a.iterations);
  CHECK(empty.stored_key != a.stored_key);
}

TEST_CASE("a plain password's verifier uses the salt a mock verifier would show", "[src]") {
  const AuthStore store({{"alice", "alice-secret"}}, 4096);
  const UserSecret* alice = store.find("alice");
  REQUIRE(alice != nullptr);
  REQUIRE(alice->kind == UserSecret::Kind::Plain);
  CHECK(alice->scram.salt == store.mock_secret("alice").salt);
  CHECK(alice->scram.salt == sluice::scram_salt("alice"));
  CHECK(alice->scram.iterations == 4096);
  // make_user_secret (auth_query's secrets too) derives it the same way.
  auto queried = sluice::make_user_secret("alice", "alice-secret", 4096);
  REQUIRE(queried.has_value());
  CHECK(queried->scram.salt == alice->scram.salt);
  CHECK(queried->scram.stored_key == alice->scram.stored_key);
}

TEST_CASE("the mock's iteration count is the one most real verifiers use", "[src]") {
  SECTION("no verifiers: scram_iterations") {
    CHECK(AuthStore({}, 4096).mock_iterations() == 4096);
    CHECK(AuthStore({{"bob", auth::md5_secret("x", "bob")}}, 5000).mock_iterations() == 5000);
  }
  SECTION("stored verifiers outvote the derived ones") {
    const AuthStore store(
        {{"a", verifier("a", 10000)}, {"b", verifier("b", 10000)}, {"c", "plain-c"}}, 4096);
    CHECK(store.mock_iterations() == 10000);
    CHECK(store.mock_secret("nobody").iterations == 10000);
  }
  SECTION("a tie goes to scram_iterations") {
    const AuthStore store({{"a", verifier("a", 10000)}, {"c", "plain-c"}}, 4096);
    CHECK(store.mock_iterations() == 4096);
  }
}

TEST_CASE("under auth_type md5 an unknown user gets the method most users get", "[src]") {
  const std::string scram = verifier("pw", 4096);
  const std::string md5 = auth::md5_secret("pw", "u");
  // SCRAM verifiers get SCRAM; md5 secrets and plain passwords get md5; a tie is md5.
  CHECK_FALSE(AuthStore({}, 4096).unknown_user_gets_scram_under_md5());
  CHECK_FALSE(AuthStore({{"a", md5}, {"b", "plain"}}, 4096).unknown_user_gets_scram_under_md5());
  CHECK(AuthStore({{"a", scram}, {"b", scram}}, 4096).unknown_user_gets_scram_under_md5());
  CHECK(AuthStore({{"a", scram}, {"b", scram}, {"c", md5}}, 4096)
            .unknown_user_gets_scram_under_md5());
  CHECK_FALSE(AuthStore({{"a", scram}, {"c", md5}}, 4096).unknown_user_gets_scram_under_md5());
  CHECK_FALSE(AuthStore({{"a", scram}, {"b", "plain"}, {"c", md5}}, 4096)
                  .unknown_user_gets_scram_under_md5());
}
