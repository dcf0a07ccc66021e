// The auth file (PgBouncer's userlist.txt format): one user per line,
//   "user name" "secret"
// where secret is a plain-text password, "md5" + 32 hex digits, or a SCRAM verifier
// "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>". Double quotes inside a field are doubled
// (""). Blank lines and lines starting with ';' or '#' are ignored. Pure; any thread.
#pragma once

#include "base/result.hpp"
#include "config/config.hpp"

#include <map>
#include <string>

namespace sluice::config {

using AuthFile = std::map<std::string, std::string>;  // user -> secret

// Errors are reported as "FILE:LINE: auth_file: reason".
Result<AuthFile, Diagnostics> parse_auth_file(const std::string& text, const std::string& source);
Result<AuthFile, Diagnostics> load_auth_file(const std::string& path);

}  // namespace sluice::config
