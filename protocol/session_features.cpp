#include "protocol/session_features.hpp"

#include "protocol/text.hpp"

#include <array>
#include <string>
#include <vector>

namespace sluice::protocol {
namespace {

// One table lookup per character instead of <cctype> calls (profiled: bench/PROFILE.md, C3).
struct CharClass {
  std::array<bool, 256> ident{};
  std::array<bool, 256> space{};
  std::array<bool, 256> digit{};
  constexpr CharClass() {
    for (int c = 0; c < 256; ++c) {
      ident[static_cast<std::size_t>(c)] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                           (c >= '0' && c <= '9') || c == '_' || c == '$' ||
                                           c >= 0x80;
      space[static_cast<std::size_t>(c)] =
          c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
      digit[static_cast<std::size_t>(c)] = c >= '0' && c <= '9';
    }
  }
};
constexpr CharClass kClass{};
bool is_ident_char(char c) { return kClass.ident[static_cast<unsigned char>(c)]; }
bool is_space(char c) { return kClass.space[static_cast<unsigned char>(c)]; }
bool is_digit(char c) { return kClass.digit[static_cast<unsigned char>(c)]; }

// Tokens of one statement: words (identifiers and keywords, quoted identifiers unquoted) only;
// literals, numbers and punctuation other than ';' are dropped.
class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  // Appends the words of the next statement to `words`; false at the end of the input.
  bool next_statement(std::vector<std::string_view>& words) {
    words.clear();
    if (pos_ >= s_.size()) return false;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ';') {
        ++pos_;
        return true;
      }
      if (is_space(c)) {
        ++pos_;
      } else if (c == '-' && peek(1) == '-') {
        while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
      } else if (c == '/' && peek(1) == '*') {
        skip_block_comment();
      } else if (c == '\'') {
        skip_quoted('\'', false);
      } else if ((c == 'E' || c == 'e') && peek(1) == '\'') {
        ++pos_;
        skip_quoted('\'', true);
      } else if (c == '"') {
        std::size_t start = pos_ + 1;
        skip_quoted('"', false);
        words.push_back(s_.substr(start, pos_ > start ? pos_ - start - 1 : 0));
      } else if (c == '$' && dollar_tag_length() > 0) {
        skip_dollar_quoted();
      } else if (is_ident_char(c) && !is_digit(c)) {
        std::size_t start = pos_;
        while (pos_ < s_.size() && is_ident_char(s_[pos_])) ++pos_;
        words.push_back(s_.substr(start, pos_ - start));
      } else {
        ++pos_;
      }
    }
    return true;
  }

 private:
  char peek(std::size_t ahead) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }
  void skip_block_comment() {  // nested, as PostgreSQL allows
    int depth = 0;
    while (pos_ < s_.size()) {
      if (s_[pos_] == '/' && peek(1) == '*') {
        ++depth;
        pos_ += 2;
      } else if (s_[pos_] == '*' && peek(1) == '/') {
        pos_ += 2;
        if (--depth == 0) return;
      } else {
        ++pos_;
      }
    }
  }
  void skip_quoted(char q, bool backslash_escapes) {
    ++pos_;  // opening quote
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (backslash_escapes && c == '\\') {
        pos_ += 2;
      } else if (c == q) {
        if (peek(1) == q) {
          pos_ += 2;  // doubled quote
        } else {
          ++pos_;
          return;
        }
      } else {
        ++pos_;
      }
    }
  }
  // Length of a dollar-quote tag ($$ or $name$) at pos_, or 0.
  std::size_t dollar_tag_length() const {
    std::size_t i = pos_ + 1;
    while (i < s_.size() && s_[i] != '$') {
      if (!is_ident_char(s_[i]) || s_[i] == '$') return 0;
      ++i;
    }
    if (i >= s_.size()) return 0;
    if (i > pos_ + 1 && is_digit(s_[pos_ + 1])) return 0;
    return i - pos_ + 1;
  }
  void skip_dollar_quoted() {
    std::size_t len = dollar_tag_length();
    std::string_view tag = s_.substr(pos_, len);
    std::size_t end = s_.find(tag, pos_ + len);
    pos_ = end == std::string_view::npos ? s_.size() : end + len;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

bool is_advisory_lock_function(std::string_view w) {
  // Cheap filter first: the four names are 16 to 27 characters long and start with "pg_".
  if (w.size() < 16 || w.size() > 27 || (w[0] != 'p' && w[0] != 'P')) return false;
  return iequals(w, "pg_advisory_lock") || iequals(w, "pg_advisory_lock_shared") ||
         iequals(w, "pg_try_advisory_lock") || iequals(w, "pg_try_advisory_lock_shared");
}

SessionFeature classify_set(const std::vector<std::string_view>& w, bool reset) {
  std::size_t i = 1;
  if (i < w.size() && (iequals(w[i], "SESSION") || iequals(w[i], "LOCAL"))) {
    if (iequals(w[i], "LOCAL")) return SessionFeature::None;  // ends with the transaction
    ++i;
  }
  if (i >= w.size()) return SessionFeature::None;
  std::string_view name = w[i];
  if (!reset && (iequals(name, "TRANSACTION") || iequals(name, "CONSTRAINTS"))) {
    return SessionFeature::None;  // transaction-scoped
  }
  if (iequals(name, "TIME") && i + 1 < w.size() && iequals(w[i + 1], "ZONE")) name = "TimeZone";
  if (iequals(name, "NAMES")) name = "client_encoding";
  // RESET ALL returns every parameter to its default: nothing session-specific remains.
  if (reset && iequals(name, "ALL")) return SessionFeature::None;
  return is_reported_parameter(name) ? SessionFeature::None : SessionFeature::SetUnreported;
}

SessionFeature classify(const std::vector<std::string_view>& w) {
  if (w.empty()) return SessionFeature::None;
  for (std::string_view word : w) {
    if (is_advisory_lock_function(word)) return SessionFeature::AdvisoryLock;
  }
  std::string_view first = w[0];
  if (iequals(first, "LISTEN")) return SessionFeature::Listen;
  if (iequals(first, "PREPARE")) return SessionFeature::Prepare;
  if (iequals(first, "DECLARE")) {
    for (std::size_t i = 1; i + 1 < w.size(); ++i) {
      if (iequals(w[i], "WITH") && iequals(w[i + 1], "HOLD")) return SessionFeature::HoldCursor;
    }
    return SessionFeature::None;
  }
  if (iequals(first, "CREATE")) {
    for (std::size_t i = 1; i < w.size() && i < 4; ++i) {
      if (iequals(w[i], "TEMP") || iequals(w[i], "TEMPORARY")) return SessionFeature::TempObject;
    }
    return SessionFeature::None;
  }
  if (iequals(first, "SET")) return classify_set(w, false);
  if (iequals(first, "RESET")) return classify_set(w, true);
  return SessionFeature::None;
}

}  // namespace

const char* to_string(SessionFeature f) {
  switch (f) {
    case SessionFeature::None:
      return "none";
    case SessionFeature::Listen:
      return "listen";
    case SessionFeature::Prepare:
      return "sql_prepare";
    case SessionFeature::HoldCursor:
      return "hold_cursor";
    case SessionFeature::TempObject:
      return "temp_object";
    case SessionFeature::AdvisoryLock:
      return "advisory_lock";
    case SessionFeature::SetUnreported:
      return "set_unreported";
    case SessionFeature::NamedStatement:
      return "named_statement";
  }
  return "unknown";
}

bool is_reported_parameter(std::string_view name) {
  static constexpr std::array<std::string_view, 13> kReported = {"application_name",
                                                                 "client_encoding",
                                                                 "DateStyle",
                                                                 "default_transaction_read_only",
                                                                 "in_hot_standby",
                                                                 "integer_datetimes",
                                                                 "IntervalStyle",
                                                                 "is_superuser",
                                                                 "server_encoding",
                                                                 "server_version",
                                                                 "session_authorization",
                                                                 "standard_conforming_strings",
                                                                 "TimeZone"};
  for (std::string_view r : kReported) {
    if (iequals(r, name)) return true;
  }
  return false;
}

SessionFeature detect_session_feature(std::string_view sql) {
  Lexer lexer(sql);
  // Called for every Query and Parse under transaction pooling: reuse the word list's storage.
  thread_local std::vector<std::string_view> words;
  while (lexer.next_statement(words)) {
    SessionFeature f = classify(words);
    if (f != SessionFeature::None) return f;
  }
  return SessionFeature::None;
}

}  // namespace sluice::protocol
