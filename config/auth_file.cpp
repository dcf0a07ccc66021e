// The auth file parser: "user" "secret" lines, checked strictly so that a typo is an error with a
// line number rather than a user who silently cannot log in.
#include "config/auth_file.hpp"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

namespace sluice::config {
namespace {

constexpr std::string_view kScramPrefix = "SCRAM-SHA-256$";

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::size_t skip_blanks(std::string_view line, std::size_t pos) {
  while (pos < line.size() && is_blank(line[pos])) ++pos;
  return pos;
}

// Reads the quoted field starting at line[pos] == '"'; a doubled quote stands for one quote.
// Advances pos past the closing quote; nullopt if the field is not terminated on this line.
std::optional<std::string> read_quoted(std::string_view line, std::size_t& pos) {
  std::string field;
  for (std::size_t i = pos + 1; i < line.size(); ++i) {
    if (line[i] != '"') {
      field += line[i];
    } else if (i + 1 < line.size() && line[i + 1] == '"') {
      field += '"';
      ++i;
    } else {
      pos = i + 1;
      return field;
    }
  }
  return std::nullopt;
}

bool is_base64(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
  });
}

// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, as PostgreSQL stores it. Only the
// shape is checked here; src/auth decodes it.
bool is_scram_verifier_shape(std::string_view secret) {
  std::string_view rest = secret.substr(kScramPrefix.size());
  const std::size_t colon = rest.find(':');
  const std::size_t dollar = rest.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || dollar < colon) {
    return false;
  }
  const std::string_view iterations = rest.substr(0, colon);
  const std::string_view salt = rest.substr(colon + 1, dollar - colon - 1);
  const std::string_view keys = rest.substr(dollar + 1);
  const std::size_t key_colon = keys.find(':');
  if (key_colon == std::string_view::npos) return false;
  return !iterations.empty() && iterations.size() <= 9 &&
         std::all_of(iterations.begin(), iterations.end(),
                     [](char c) { return c >= '0' && c <= '9'; }) &&
         is_base64(salt) && is_base64(keys.substr(0, key_colon)) &&
         is_base64(keys.substr(key_colon + 1));
}

struct Entry {
  std::string user;
  std::string secret;
};

// Parses one non-comment line; the error is a reason.
Result<Entry, std::string> parse_line(std::string_view line, std::size_t pos) {
  if (line[pos] != '"') return unexpected(std::string("expected a quoted user name"));
  Entry entry;
  std::optional<std::string> user = read_quoted(line, pos);
  if (!user) return unexpected(std::string("unterminated quote in the user name"));
  entry.user = std::move(*user);
  if (entry.user.empty()) return unexpected(std::string("empty user name"));

  pos = skip_blanks(line, pos);
  if (pos == line.size()) return unexpected(std::string("missing the secret after the user"));
  if (line[pos] != '"') return unexpected(std::string("expected a quoted secret after the user"));
  std::optional<std::string> secret = read_quoted(line, pos);
  if (!secret) return unexpected(std::string("unterminated quote in the secret"));
  entry.secret = std::move(*secret);

  if (skip_blanks(line, pos) != line.size()) {
    return unexpected(std::string("unexpected text after the secret"));
  }
  if (entry.secret.starts_with(kScramPrefix) && !is_scram_verifier_shape(entry.secret)) {
    return unexpected("malformed SCRAM verifier for user \"" + entry.user +
                      "\" (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)");
  }
  return entry;
}

}  // namespace

Result<AuthFile, Diagnostics> parse_auth_file(const std::string& text, const std::string& source) {
  AuthFile users;
  std::map<std::string, int> defined_on;  // user -> line, for duplicate reports
  Diagnostics diagnostics;
  const auto fail = [&](int line, std::string reason) {
    diagnostics.push_back({source, line, "auth_file", std::move(reason)});
  };

  std::istringstream lines(text);
  int number = 0;
  for (std::string raw; std::getline(lines, raw);) {
    ++number;
    std::string_view line = raw;
    if (line.ends_with('\r')) line.remove_suffix(1);
    const std::size_t pos = skip_blanks(line, 0);
    if (pos == line.size() || line[pos] == ';' || line[pos] == '#') continue;

    auto entry = parse_line(line, pos);
    if (!entry) {
      fail(number, std::move(entry.error()));
      continue;
    }
    const auto [it, inserted] = defined_on.emplace(entry->user, number);
    if (!inserted) {
      fail(number,
           "user \"" + entry->user + "\" is already defined on line " + std::to_string(it->second));
      continue;
    }
    users.emplace(std::move(entry->user), std::move(entry->secret));
  }
  if (!diagnostics.empty()) return unexpected(std::move(diagnostics));
  return users;
}

Result<AuthFile, Diagnostics> load_auth_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string why = std::error_code(errno, std::generic_category()).message();
    return unexpected(Diagnostics{{path, 0, "auth_file", "cannot read the file: " + why}});
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return unexpected(Diagnostics{{path, 0, "auth_file", "cannot read the file"}});
  return parse_auth_file(text.str(), path);
}

}  // namespace sluice::config
