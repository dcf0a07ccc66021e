// PostgreSQL's MD5 password scheme, over OpenSSL's EVP MD5.
//   stored secret:  "md5" + hex(md5(password + user))
//   wire response:  "md5" + hex(md5(hex(md5(password + user)) + salt))
// Pure functions; any thread.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace sluice::auth {

// "md5" + 32 hex digits of md5(password + user).
std::string md5_secret(std::string_view password, std::string_view user);
// True if `secret` looks like "md5" followed by 32 lowercase hex digits.
bool is_md5_secret(std::string_view secret);
// The response a client sends to AuthenticationMD5Password, from a stored md5 secret.
std::string md5_response_from_secret(std::string_view md5_secret, std::array<unsigned char, 4> salt);
// Constant-time comparison for secrets and responses.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace sluice::auth
