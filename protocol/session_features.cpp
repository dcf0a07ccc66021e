#include "protocol/session_features.hpp"

#include "protocol/text.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace sluice::protocol {
namespace {

// One table lookup per character instead of <cctype> calls (profiled: bench/PROFILE.md, C3).
struct CharClass {
  std::array<bool, 256> ident{};
  std::array<bool, 256> space{};
  std::array<bool, 256> digit{};
  std::array<bool, 256> word{};  // ident characters other than digits and '$'; see the prefilter
  constexpr CharClass() {
    for (int c = 0; c < 256; ++c) {
      ident[static_cast<std::size_t>(c)] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                           (c >= '0' && c <= '9') || c == '_' || c == '$' ||
                                           c >= 0x80;
      space[static_cast<std::size_t>(c)] =
          c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
      digit[static_cast<std::size_t>(c)] = c >= '0' && c <= '9';
      word[static_cast<std::size_t>(c)] =
          ident[static_cast<std::size_t>(c)] && !digit[static_cast<std::size_t>(c)] && c != '$';
    }
  }
};
constexpr CharClass kClass{};
bool is_ident_char(char c) { return kClass.ident[static_cast<unsigned char>(c)]; }
bool is_space(char c) { return kClass.space[static_cast<unsigned char>(c)]; }
bool is_digit(char c) { return kClass.digit[static_cast<unsigned char>(c)]; }
bool is_word_char(char c) { return kClass.word[static_cast<unsigned char>(c)]; }

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

// SET or RESET (w[0]) of one statement.
SessionUse classify_set(const std::vector<std::string_view>& w, bool reset) {
  SessionUse use;
  std::size_t i = 1;
  bool session_scope = false;
  if (i < w.size() && (iequals(w[i], "SESSION") || iequals(w[i], "LOCAL"))) {
    if (iequals(w[i], "LOCAL")) return use;  // ends with the transaction
    session_scope = true;
    ++i;
  }
  if (i >= w.size()) return use;
  std::string_view name = w[i];
  if (!reset && (iequals(name, "TRANSACTION") || iequals(name, "CONSTRAINTS"))) {
    return use;  // transaction-scoped
  }
  // Who the session acts as: neither shows in pg_settings nor may be handed to another client.
  // Resetting them is harmless (a client that set them is pinned already).
  if (iequals(name, "ROLE") || iequals(name, "session_authorization") ||
      (session_scope && iequals(name, "AUTHORIZATION"))) {
    if (!reset) use.pin = SessionFeature::SetRole;
    return use;
  }
  if (iequals(name, "TIME") && i + 1 < w.size() && iequals(w[i + 1], "ZONE")) name = "TimeZone";
  if (iequals(name, "NAMES")) name = "client_encoding";
  // ParameterStatus tells Sluice the new value of a reported parameter; any other change (RESET
  // ALL, SESSION CHARACTERISTICS, an unreported name) is read back from the server.
  use.settings = !is_reported_parameter(name);
  return use;
}

// A statement name only Sluice's backend statements have ("sluice_…", in any case).
bool is_reserved_word(std::string_view w) {
  constexpr std::string_view kPrefix = "sluice_";
  return w.size() > kPrefix.size() && iequals(w.substr(0, kPrefix.size()), kPrefix);
}

// One statement's words.
SessionUse classify(const std::vector<std::string_view>& w) {
  SessionUse use;
  if (w.empty()) return use;
  for (std::string_view word : w) {
    if (is_advisory_lock_function(word)) use.pin = SessionFeature::AdvisoryLock;
    if (iequals(word, "set_config")) use.settings = true;  // either scope: reading back is safe
  }
  if (use.pin != SessionFeature::None) return use;
  // SELECT … INTO TEMP[ORARY] [TABLE] t creates a temporary table too.
  for (std::size_t i = 1; i + 1 < w.size(); ++i) {
    if (iequals(w[i], "INTO") && (iequals(w[i + 1], "TEMP") || iequals(w[i + 1], "TEMPORARY"))) {
      use.pin = SessionFeature::TempObject;
      return use;
    }
  }
  std::string_view first = w[0];
  if (iequals(first, "LISTEN")) {
    use.pin = SessionFeature::Listen;
  } else if (iequals(first, "PREPARE")) {
    use.pin = SessionFeature::Prepare;
  } else if (iequals(first, "DECLARE")) {
    for (std::size_t i = 1; i + 1 < w.size(); ++i) {
      if (iequals(w[i], "WITH") && iequals(w[i + 1], "HOLD")) use.pin = SessionFeature::HoldCursor;
    }
  } else if (iequals(first, "CREATE")) {
    for (std::size_t i = 1; i < w.size() && i < 4; ++i) {
      if (iequals(w[i], "TEMP") || iequals(w[i], "TEMPORARY")) use.pin = SessionFeature::TempObject;
    }
  } else if (iequals(first, "SET") || iequals(first, "RESET")) {
    SessionUse set = classify_set(w, iequals(first, "RESET"));
    use.pin = set.pin;
    use.settings = use.settings || set.settings;
  } else if (iequals(first, "DISCARD")) {
    // DISCARD ALL is RESET ALL plus DEALLOCATE ALL (and more); the other forms keep both.
    if (w.size() == 2 && iequals(w[1], "ALL")) use.settings = use.drops_statements = true;
  } else if (iequals(first, "DEALLOCATE")) {
    const std::size_t i = w.size() > 1 && iequals(w[1], "PREPARE") ? 2 : 1;
    if (w.size() == i + 1 && iequals(w[i], "ALL")) use.drops_statements = true;
    use.reserved_name = i < w.size() && is_reserved_word(w[i]);
  } else if (iequals(first, "EXECUTE")) {
    use.reserved_name = w.size() > 1 && is_reserved_word(w[1]);
  }
  return use;
}

// ---- Prefilter: text in which the lexer cannot find anything (bench/PROFILE.md, C3) -----------
//
// classify() reports something only for a statement whose first word is LISTEN, PREPARE, DECLARE,
// CREATE, SET, RESET, DISCARD, DEALLOCATE or EXECUTE, or that has a word naming an advisory-lock
// function (each name contains "advisory") or set_config (which contains "config"). Every word the
// lexer yields is a piece of the text (an identifier, or the inside of a quoted identifier),
// compared with iequals, which folds ASCII only (Sluice never changes the C locale). So text in
// which none of these words occurs, ignoring ASCII case, needs no lexing. Doubtful cases count as
// occurrences: a false alarm only costs the lexer's pass.

struct Trigger {
  std::string_view word;  // lower case
  bool first_word;        // only as a statement's first word (else anywhere, even inside a word)
};
constexpr std::array<Trigger, 12> kTriggers = {{{"advisory", false},
                                                {"config", false},
                                                {"create", true},
                                                {"deallocate", true},
                                                {"declare", true},
                                                {"discard", true},
                                                {"execute", true},
                                                {"listen", true},
                                                {"prepare", true},
                                                {"reset", true},
                                                {"set", true},
                                                {"temp", false}}};

struct TriggerTable {
  // For each byte: the triggers starting with it (either case), one bit each.
  std::array<std::uint16_t, 256> starting{};
  constexpr TriggerTable() {
    for (std::size_t t = 0; t < kTriggers.size(); ++t) {
      const auto lower = static_cast<unsigned char>(kTriggers[t].word[0]);
      for (unsigned char c : {lower, static_cast<unsigned char>(lower & ~0x20u)}) {
        starting[c] = static_cast<std::uint16_t>(starting[c] | (1u << t));
      }
    }
  }
};
constexpr TriggerTable kTriggerTable{};

// Lower-case ASCII letters only (fold() compares them), at least two, and few enough for the
// table's bits.
constexpr bool triggers_well_formed() {
  if (kTriggers.size() > 16) return false;
  for (const Trigger& t : kTriggers) {
    if (t.word.size() < 2) return false;
    for (char c : t.word) {
      if (c < 'a' || c > 'z') return false;
    }
  }
  return true;
}
static_assert(triggers_well_formed());

unsigned char fold(char c) { return static_cast<unsigned char>(c) | 0x20; }  // exact for letters

// Whether the keyword at s[i, end) may be the lexer's first word of a statement. It is not when an
// identifier character follows it (the word goes on), or when a letter, '_' or non-ASCII byte
// precedes it with only blanks in between and no newline: that character then belongs to an
// earlier word of the same statement, or to the same comment or quoted text as the keyword (of
// those only a line comment can end in a blank, at '\n'). Anything else before it may end what
// precedes the statement: a digit (numbers are skipped, "1set" yields the word "set"), '$' (a
// dollar quote's end), quotes, comment ends, punctuation. And an unclosed quoted identifier's word
// lacks its last character, so a keyword just before the end of the text counts whatever follows.
bool may_start_statement(std::string_view s, std::size_t i, std::size_t end) {
  if (end + 1 < s.size() && is_ident_char(s[end])) return false;
  for (; i > 0 && is_space(s[i - 1]); --i) {
    if (s[i - 1] == '\n') return true;
  }
  return i == 0 || !is_word_char(s[i - 1]);
}

// Whether a trigger occurs at s[i].
bool trigger_at(std::string_view s, std::size_t i) {
  for (unsigned bits = kTriggerTable.starting[static_cast<unsigned char>(s[i])]; bits != 0;
       bits &= bits - 1) {
    const Trigger& t = kTriggers[static_cast<std::size_t>(std::countr_zero(bits))];
    if (s.size() - i < t.word.size()) continue;
    bool same = true;
    for (std::size_t k = 1; k < t.word.size() && same; ++k) {
      same = fold(s[i + k]) == static_cast<unsigned char>(t.word[k]);
    }
    if (same && (!t.first_word || may_start_statement(s, i, i + t.word.size()))) return true;
  }
  return false;
}

// Looks for a trigger starting in s[from, to), to < s.size().
bool scan_triggers(std::string_view s, std::size_t from, std::size_t to) {
  for (std::size_t i = from; i < to; ++i) {
    if (kTriggerTable.starting[static_cast<unsigned char>(s[i])] != 0 && trigger_at(s, i)) {
      return true;
    }
  }
  return false;
}

#if defined(__GNUC__)
// 16 positions at a time with GCC's portable vector extension (SSE2 on x86-64, NEON on ARM).
using Bytes16 = unsigned char __attribute__((vector_size(16)));

Bytes16 load16(const char* p) {
  Bytes16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// 0xff in the lanes where trigger I's first two letters are (first) and (second), else 0.
template <std::size_t I>
Bytes16 trigger_lanes(Bytes16 first, Bytes16 second) {
  constexpr auto a = static_cast<unsigned char>(kTriggers[I].word[0]);
  constexpr auto b = static_cast<unsigned char>(kTriggers[I].word[1]);
  return reinterpret_cast<Bytes16>((first == a) & (second == b));
}
template <std::size_t... I>
Bytes16 any_trigger_lanes(Bytes16 first, Bytes16 second, std::index_sequence<I...>) {
  return (trigger_lanes<I>(first, second) | ...);
}

// Bit k set when a trigger's first two letters start at p[k], k < 16; reads p[0, 17).
std::uint32_t candidate_bits(const char* p) {
  const Bytes16 blank = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
                         ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
  const Bytes16 weight = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  const Bytes16 first = load16(p) | blank;  // folded as fold() does
  const Bytes16 second = load16(p + 1) | blank;
  const Bytes16 bits =
      any_trigger_lanes(first, second, std::make_index_sequence<kTriggers.size()>{}) & weight;
  // Each half's byte sum is its 8-bit mask (distinct powers of two: no carries), in either
  // byte order.
  std::uint64_t half[2];
  std::memcpy(half, &bits, sizeof half);
  constexpr std::uint64_t kSumBytes = 0x0101010101010101;
  return static_cast<std::uint32_t>((half[0] * kSumBytes) >> 56) |
         static_cast<std::uint32_t>((half[1] * kSumBytes) >> 56) << 8;
}
#endif

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
    case SessionFeature::SetRole:
      return "set_role";
    case SessionFeature::NamedStatement:
      return "named_statement";
    case SessionFeature::SettingsUnread:
      return "settings_unread";
    case SessionFeature::Uninspected:
      return "uninspected_sql";
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

SessionUse inspect_session_use(std::string_view sql) {
  // Most SQL contains none of the trigger words: skip the lexer (bench/PROFILE.md, C3).
  if (!detail::may_use_session_state(sql)) return {};
  return detail::inspect_session_use_lexer(sql);
}

namespace detail {

bool may_use_session_state(std::string_view sql) {
  if (sql.size() < 2) return false;
#if defined(__GNUC__)
  if (sql.size() > 16) {
    // Blocks of 16 positions up to the last one where two letters fit (sql.size() - 2). The last
    // block may overlap the one before: the positions looked at already are masked off.
    const std::size_t last = sql.size() - 17;
    for (std::size_t done = 0; done < sql.size() - 1;) {
      const std::size_t at = std::min(done, last);
      std::uint32_t bits = candidate_bits(sql.data() + at) & (~0u << (done - at));
      for (; bits != 0; bits &= bits - 1) {
        if (trigger_at(sql, at + static_cast<std::size_t>(std::countr_zero(bits)))) return true;
      }
      done = at + 16;
    }
    return false;
  }
#endif
  return scan_triggers(sql, 0, sql.size() - 1);
}

SessionUse inspect_session_use_lexer(std::string_view sql) {
  Lexer lexer(sql);
  // Called for every Query and Parse under transaction pooling: reuse the word list's storage.
  thread_local std::vector<std::string_view> words;
  SessionUse use;
  while (lexer.next_statement(words)) {
    const SessionUse one = classify(words);
    if (use.pin == SessionFeature::None) use.pin = one.pin;
    use.settings = use.settings || one.settings;
    use.drops_statements = use.drops_statements || one.drops_statements;
    use.reserved_name = use.reserved_name || one.reserved_name;
  }
  return use;
}

}  // namespace detail
}  // namespace sluice::protocol
