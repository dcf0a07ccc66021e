// PostgreSQL's MD5 password scheme, against values computed with md5sum and Python's hashlib.
#include "src/auth/md5.hpp"

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

using namespace std::string_literals;

TEST_CASE("The md5 secret is md5 of password then user", "[auth]") {
  // printf 'secretuser' | md5sum
  CHECK(sluice::auth::md5_secret("secret", "user") == "md520eb1b22a92b5c573dc1eb4331fc49ee");
  CHECK(sluice::auth::is_md5_secret(sluice::auth::md5_secret("", "")));
}

TEST_CASE("The md5 response hashes the secret's hex digits with the raw salt", "[auth]") {
  const std::string secret = "md520eb1b22a92b5c573dc1eb4331fc49ee";
  // hashlib.md5(b"20eb1b22a92b5c573dc1eb4331fc49ee" + bytes([1, 2, 3, 4])).hexdigest()
  CHECK(sluice::auth::md5_response_from_secret(secret, {0x01, 0x02, 0x03, 0x04}) ==
        "md5fccef98e4f1cf6cbe96b743fad4e8bd0");
  CHECK(sluice::auth::md5_response_from_secret(secret, {0xde, 0xad, 0xbe, 0xef}) ==
        "md590a95cfdc774174cda9be529cdd2ebbf");
}

TEST_CASE("The md5 response refuses a secret that is not md5", "[auth]") {
  CHECK_THROWS_AS(sluice::auth::md5_response_from_secret("pencil", {1, 2, 3, 4}),
                  std::invalid_argument);
}

TEST_CASE("Only md5 followed by 32 lowercase hex digits is an md5 secret", "[auth]") {
  CHECK(sluice::auth::is_md5_secret("md520eb1b22a92b5c573dc1eb4331fc49ee"));
  auto bad =
      GENERATE(as<std::string>{}, "", "md5", "md520eb1b22a92b5c573dc1eb4331fc49e",
               "md520eb1b22a92b5c573dc1eb4331fc49eee", "MD520eb1b22a92b5c573dc1eb4331fc49ee",
               "md520EB1b22a92b5c573dc1eb4331fc49ee", "md520eb1b22a92b5c573dc1eb4331fc49eg",
               "xyz20eb1b22a92b5c573dc1eb4331fc49ee", "md520eb1b22a92b5c573dc1eb4331fc49e\0"s,
               "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$x:y");
  CHECK_FALSE(sluice::auth::is_md5_secret(bad));
}

TEST_CASE("Constant-time comparison compares contents and length", "[auth]") {
  CHECK(sluice::auth::constant_time_equal("", ""));
  CHECK(sluice::auth::constant_time_equal("abc", "abc"));
  CHECK(sluice::auth::constant_time_equal("a\0c"s, "a\0c"s));
  CHECK_FALSE(sluice::auth::constant_time_equal("abc", "abd"));
  CHECK_FALSE(sluice::auth::constant_time_equal("abc", "ab"));
  CHECK_FALSE(sluice::auth::constant_time_equal("", "a"));
  CHECK_FALSE(sluice::auth::constant_time_equal("a\0c"s, "a\0d"s));
}
