#include "config/auth_file.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using sluice::config::AuthFile;
using sluice::config::load_auth_file;
using sluice::config::parse_auth_file;

namespace {

constexpr const char* kVerifier =
    "SCRAM-SHA-256$4096:c2FsdA==$nGiYBe3jnbFR8gC6VyNzuUTHHY6TwBxrt6WBCgbR1dc=:"
    "ykB+X/yi2TaZ7Ko2Lvj+H1qZ0B5mJyGx/6xSwOe0LS8=";

std::vector<std::string> errors_of(const std::string& text) {
  const auto parsed = parse_auth_file(text, "users.txt");
  REQUIRE_FALSE(parsed);
  std::vector<std::string> out;
  for (const auto& d : parsed.error()) out.push_back(d.to_string());
  return out;
}

}  // namespace

TEST_CASE("the auth file maps users to plain, md5 and SCRAM secrets", "[config]") {
  const std::string text = std::string(
                               "; PgBouncer-style comment\n"
                               "# another comment\n"
                               "\n"
                               "\"alice\" \"plain secret\"\n"
                               "  \"bob\"\t\"md5b0a5c4a8c5cc8e3ac4f8c85d2e5b3a2f\"  \n"
                               "\"carol\" \"") +
                           kVerifier + "\"\n\"dave\"\"\" \"\"\"quoted\"\"\"\n\"eve\" \"\"";
  const auto parsed = parse_auth_file(text, "users.txt");
  REQUIRE(parsed);
  const AuthFile expected{
      {"alice", "plain secret"},
      {"bob", "md5b0a5c4a8c5cc8e3ac4f8c85d2e5b3a2f"},
      {"carol", kVerifier},
      {"dave\"", "\"quoted\""},
      {"eve", ""},
  };
  CHECK(*parsed == expected);
}

TEST_CASE("CRLF line ends and a missing final newline are accepted", "[config]") {
  const auto parsed = parse_auth_file("\"a\" \"1\"\r\n\"b\" \"2\"", "users.txt");
  REQUIRE(parsed);
  CHECK(*parsed == AuthFile{{"a", "1"}, {"b", "2"}});
}

TEST_CASE("an empty auth file has no users", "[config]") {
  const auto parsed = parse_auth_file("", "users.txt");
  REQUIRE(parsed);
  CHECK(parsed->empty());
}

TEST_CASE("each malformed auth file line is reported with its number", "[config]") {
  const auto [line, reason] = GENERATE(table<std::string, std::string>({
      {"alice \"x\"", "expected a quoted user name"},
      {"\"alice \"x\"", "expected a quoted secret after the user"},
      {"\"alice", "unterminated quote in the user name"},
      {"\"alice\"\"", "unterminated quote in the user name"},
      {"\"alice\"", "missing the secret after the user"},
      {"\"alice\"   ", "missing the secret after the user"},
      {"\"alice\" secret", "expected a quoted secret after the user"},
      {"\"alice\" \"secret", "unterminated quote in the secret"},
      {"\"alice\" \"secret\" junk", "unexpected text after the secret"},
      {"\"alice\" \"secret\" # comment", "unexpected text after the secret"},
      {"\"alice\" \"a\" \"b\"", "unexpected text after the secret"},
      {"\"\" \"secret\"", "empty user name"},
      {"\"alice\" \"SCRAM-SHA-256$4096:salt\"",
       "malformed SCRAM verifier for user \"alice\" (expected "
       "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"},
      {"\"alice\" \"SCRAM-SHA-256$x:c2FsdA==$a:b\"",
       "malformed SCRAM verifier for user \"alice\" (expected "
       "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"},
      {"\"alice\" \"SCRAM-SHA-256$4096:c2FsdA==$a:\"",
       "malformed SCRAM verifier for user \"alice\" (expected "
       "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)"},
  }));
  CAPTURE(line);
  CHECK(errors_of("# users\n\"ok\" \"ok\"\n" + line + "\n") ==
        std::vector<std::string>{"users.txt:3: auth_file: " + reason});
}

TEST_CASE("a user listed twice is an error naming the first line", "[config]") {
  CHECK(errors_of("\"alice\" \"one\"\n\"bob\" \"x\"\n\"alice\" \"two\"\n") ==
        std::vector<std::string>{
            "users.txt:3: auth_file: user \"alice\" is already defined on line 1"});
}

TEST_CASE("every bad line of the auth file is reported, not just the first", "[config]") {
  CHECK(errors_of("oops\n\"a\" \"1\"\n\"\" \"2\"\n\"b\" \"3\" x\n") ==
        std::vector<std::string>{
            "users.txt:1: auth_file: expected a quoted user name",
            "users.txt:3: auth_file: empty user name",
            "users.txt:4: auth_file: unexpected text after the secret",
        });
}

TEST_CASE("a missing auth file is a diagnostic naming the path", "[config]") {
  const auto loaded = load_auth_file("no-such-dir/userlist.txt");
  REQUIRE_FALSE(loaded);
  REQUIRE(loaded.error().size() == 1);
  CHECK(loaded.error()[0].to_string() ==
        "no-such-dir/userlist.txt: auth_file: cannot read the file: No such file or directory");
}
