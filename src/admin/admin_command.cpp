#include "src/admin/admin_command.hpp"

#include "protocol/text.hpp"

#include <array>
#include <limits>
#include <optional>
#include <utility>

namespace sluice::admin {
namespace {

using protocol::iequals;

constexpr std::array kShowItems = {
    ShowItem::Bulkheads, ShowItem::Pools,     ShowItem::Clients, ShowItem::Servers, ShowItem::Stats,
    ShowItem::Config,    ShowItem::Databases, ShowItem::Lists,   ShowItem::Version, ShowItem::Help,
};

constexpr std::array<std::string_view, 8> kBulkheadKeys = {
    "reserved",          "max",
    "queue_depth",       "max_wait",
    "statement_timeout", "idle_transaction_timeout",
    "priority",          "max_clients",
};

// By AdminCommand alternative, in declaration order.
constexpr std::array<std::string_view, 7> kTags = {
    "SHOW", "SET", "RELOAD", "PAUSE", "RESUME", "KILL_CLIENT", "SHUTDOWN",
};
constexpr std::array<std::string_view, 7> kNames = {
    "SHOW", "SET BULKHEAD", "RELOAD", "PAUSE", "RESUME", "KILL_CLIENT", "SHUTDOWN",
};
static_assert(std::variant_size_v<AdminCommand> == kTags.size());
static_assert(std::variant_size_v<AdminCommand> == kNames.size());

// Longest piece of the input quoted back in an error message.
constexpr std::size_t kQuoteLimit = 40;

// ---- lexical helpers shared by the lexer and split_statements --------------------------------

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool at(std::string_view s, std::size_t pos, char a, char b) {
  return pos + 1 < s.size() && s[pos] == a && s[pos + 1] == b;
}

void skip_line_comment(std::string_view s, std::size_t& pos) {
  while (pos < s.size() && s[pos] != '\n') ++pos;
}

// `pos` is at "/*". Comments nest, as in PostgreSQL. False when the input ends first.
bool skip_block_comment(std::string_view s, std::size_t& pos) {
  std::size_t depth = 0;
  while (pos < s.size()) {
    if (at(s, pos, '/', '*')) {
      ++depth;
      pos += 2;
    } else if (at(s, pos, '*', '/')) {
      pos += 2;
      if (--depth == 0) return true;
    } else {
      ++pos;
    }
  }
  return false;
}

// `pos` is at the opening quote `q`. A doubled quote inside stands for one. Appends the content to
// `text` when given. False when the input ends before the closing quote.
bool read_quoted(std::string_view s, std::size_t& pos, char q, std::string* text) {
  ++pos;
  while (pos < s.size()) {
    const char c = s[pos++];
    if (c == q) {
      if (pos < s.size() && s[pos] == q) {
        if (text != nullptr) text->push_back(q);
        ++pos;
        continue;
      }
      return true;
    }
    if (text != nullptr) text->push_back(c);
  }
  return false;
}

// A piece of the input made safe for an error message (see AdminParseError::message).
std::string shown(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == kQuoteLimit) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(s[i]);
    if (u < 0x20 || u >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0x0f]);
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string show_items_text() {
  std::string out;
  for (std::size_t i = 0; i < kShowItems.size(); ++i) {
    if (i > 0) out += i + 1 == kShowItems.size() ? " or " : ", ";
    out += to_string(kShowItems[i]);
  }
  return out;
}

std::string bulkhead_keys_text() {
  std::string out;
  for (std::size_t i = 0; i < kBulkheadKeys.size(); ++i) {
    if (i > 0) out += ", ";
    out += kBulkheadKeys[i];
  }
  return out;
}

std::optional<std::uint32_t> parse_u32(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v > std::numeric_limits<std::uint32_t>::max()) return std::nullopt;
  }
  return static_cast<std::uint32_t>(v);
}

// ---- lexer ----------------------------------------------------------------------------------

enum class TokenKind { End, Word, QuotedName, String, Equals, Semicolon, Error };

struct Token {
  TokenKind kind = TokenKind::End;
  std::string_view raw;  // as written, quotes included
  std::string text;      // QuotedName, String: the content unquoted; Error: the message
  std::size_t begin = 0;
  std::size_t end = 0;
  // The token's value: a Word as written, a quoted one unquoted.
  std::string_view value() const { return kind == TokenKind::Word ? raw : std::string_view(text); }
};

// Words are runs of anything but blanks, ';', '=', quotes and comment starts, so "250ms",
// "server.name", "-1" and non-ASCII bytes are single words.
class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Token next() {
    Token t;
    if (!skip_blanks()) return error("unterminated /* comment");
    t.begin = pos_;
    if (pos_ == s_.size()) {
      t.end = pos_;
      return t;
    }
    const char c = s_[pos_];
    if (c == ';' || c == '=') {
      t.kind = c == ';' ? TokenKind::Semicolon : TokenKind::Equals;
      ++pos_;
    } else if (c == '\'' || c == '"') {
      if (!read_quoted(s_, pos_, c, &t.text)) {
        return error(c == '\'' ? "unterminated quoted string" : "unterminated quoted identifier");
      }
      if (c == '"' && t.text.empty()) return error("zero-length delimited identifier");
      t.kind = c == '\'' ? TokenKind::String : TokenKind::QuotedName;
    } else {
      while (pos_ < s_.size() && is_word_char()) ++pos_;
      t.kind = TokenKind::Word;
    }
    t.end = pos_;
    t.raw = s_.substr(t.begin, t.end - t.begin);
    return t;
  }

 private:
  bool is_word_char() const {
    const char c = s_[pos_];
    return !is_blank(c) && c != ';' && c != '=' && c != '\'' && c != '"' &&
           !at(s_, pos_, '-', '-') && !at(s_, pos_, '/', '*');
  }
  bool skip_blanks() {
    while (pos_ < s_.size()) {
      if (is_blank(s_[pos_])) {
        ++pos_;
      } else if (at(s_, pos_, '-', '-')) {
        skip_line_comment(s_, pos_);
      } else if (at(s_, pos_, '/', '*')) {
        if (!skip_block_comment(s_, pos_)) return false;
      } else {
        break;
      }
    }
    return true;
  }
  Token error(std::string message) {
    pos_ = s_.size();
    Token t;
    t.kind = TokenKind::Error;
    t.text = std::move(message);
    t.begin = t.end = pos_;
    return t;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// ---- parser ---------------------------------------------------------------------------------

AdminParseError failure(AdminParseErrorKind kind, std::string message) {
  return AdminParseError{kind, std::move(message)};
}
AdminParseError syntax(std::string message) {
  return failure(AdminParseErrorKind::Syntax, std::move(message));
}

// PostgreSQL's wording: "syntax error at or near "x"" / "syntax error at end of input".
std::string near(const Token& t) {
  switch (t.kind) {
    case TokenKind::End:
      return "syntax error at end of input";
    case TokenKind::Error:
      return t.text;
    default:
      return "syntax error at or near \"" + shown(t.raw) + "\"";
  }
}

bool is_keyword(const Token& t, std::string_view keyword) {
  return t.kind == TokenKind::Word && iequals(t.raw, keyword);
}

bool is_name(const Token& t) {
  return t.kind == TokenKind::Word || t.kind == TokenKind::QuotedName;
}

class Parser {
 public:
  explicit Parser(std::string_view s) : src_(s), lex_(s) {}

  AdminParseResult parse() {
    const Token verb = take();
    if (verb.kind == TokenKind::Error) return syntax(verb.text);
    if (verb.kind == TokenKind::End || verb.kind == TokenKind::Semicolon) {
      return syntax("empty command; try SHOW HELP");
    }
    AdminParseResult r = AdminParseError{};
    if (is_keyword(verb, "SHOW")) {
      r = parse_show();
    } else if (is_keyword(verb, "SET")) {
      r = parse_set();
    } else if (is_keyword(verb, "RELOAD")) {
      r = AdminCommand{ReloadCommand{}};
    } else if (is_keyword(verb, "PAUSE")) {
      r = AdminCommand{PauseCommand{optional_database()}};
    } else if (is_keyword(verb, "RESUME")) {
      r = AdminCommand{ResumeCommand{optional_database()}};
    } else if (is_keyword(verb, "KILL_CLIENT")) {
      r = parse_kill_client();
    } else if (is_keyword(verb, "SHUTDOWN")) {
      const bool wait = is_keyword(peek(), "WAIT_FOR_CLIENTS");
      if (wait) take();
      r = AdminCommand{ShutdownCommand{wait}};
    } else {
      return failure(AdminParseErrorKind::UnknownCommand,
                     "unknown command \"" + shown(verb.raw) + "\"; try SHOW HELP");
    }
    if (std::holds_alternative<AdminParseError>(r)) return r;
    return finish(std::move(r));
  }

 private:
  const Token& peek() {
    if (!peeked_) {
      ahead_ = lex_.next();
      peeked_ = true;
    }
    return ahead_;
  }
  Token take() {
    peek();
    peeked_ = false;
    return std::move(ahead_);
  }

  // After a complete command: one ';' at most, then nothing.
  AdminParseResult finish(AdminParseResult r) {
    Token t = take();
    if (t.kind == TokenKind::Semicolon) t = take();
    if (t.kind != TokenKind::End) return syntax(near(t));
    return r;
  }

  AdminParseResult parse_show() {
    const Token t = take();
    if (t.kind == TokenKind::Error) return syntax(t.text);
    if (t.kind == TokenKind::End || t.kind == TokenKind::Semicolon) {
      return syntax("SHOW needs one of " + show_items_text());
    }
    for (ShowItem item : kShowItems) {
      if (is_keyword(t, to_string(item))) return AdminCommand{ShowCommand{item}};
    }
    return failure(AdminParseErrorKind::UnknownShowItem,
                   "unknown SHOW item \"" + shown(t.raw) + "\"; try SHOW HELP");
  }

  AdminParseResult parse_set() {
    const Token what = take();
    if (!is_keyword(what, "BULKHEAD")) {
      return syntax(near(what) + " (only SET BULKHEAD [server.]name setting = value is supported)");
    }
    SetBulkheadCommand cmd;
    if (auto err = bulkhead_name(cmd)) return *err;

    const Token key = take();
    if (key.kind != TokenKind::Word) {
      return syntax(near(key) + " (expected a bulkhead setting: " + bulkhead_keys_text() + ")");
    }
    for (std::string_view k : kBulkheadKeys) {
      if (iequals(key.raw, k)) cmd.key = k;
    }
    if (cmd.key.empty()) {
      return failure(
          AdminParseErrorKind::UnknownSetting,
          "unknown bulkhead setting \"" + shown(key.raw) + "\"; one of " + bulkhead_keys_text());
    }

    const Token eq = take();
    if (eq.kind != TokenKind::Equals && !is_keyword(eq, "TO")) {
      return syntax(near(eq) + " (expected = or TO after " + cmd.key + ")");
    }

    const Token value = take();
    if (value.kind == TokenKind::String || value.kind == TokenKind::QuotedName) {
      cmd.value = value.text;
    } else if (value.kind == TokenKind::Word) {
      // "30 s": bare words up to the end are one value, joined by one space.
      cmd.value = value.raw;
      while (peek().kind == TokenKind::Word) {
        cmd.value += ' ';
        cmd.value += take().raw;
      }
    } else {
      return syntax(near(value) + " (expected a value for " + cmd.key + ")");
    }
    return AdminCommand{std::move(cmd)};
  }

  // name, server.name, "name", "server"."name": adjacent words and quoted names, split at the
  // dots outside quotes.
  std::optional<AdminParseError> bulkhead_name(SetBulkheadCommand& cmd) {
    if (!is_name(peek())) return syntax(near(peek()) + " (expected a bulkhead name)");
    std::array<std::string, 2> parts;
    std::size_t part = 0;
    std::size_t dots = 0;
    const std::size_t begin = peek().begin;
    std::size_t end = begin;
    while (is_name(peek()) && peek().begin == end) {
      const Token t = take();
      end = t.end;
      if (t.kind == TokenKind::QuotedName) {
        if (dots < 2) parts[part] += t.text;
        continue;
      }
      for (char c : t.raw) {
        if (c == '.') {
          part = 1;
          ++dots;
        } else if (dots < 2) {
          parts[part].push_back(c);
        }
      }
    }
    if (dots > 1 || parts[0].empty() || (dots == 1 && parts[1].empty())) {
      return syntax("invalid bulkhead name \"" + shown(src_.substr(begin, end - begin)) +
                    "\" (expected name or server.name; double-quote a name holding a dot)");
    }
    if (dots == 1) {
      cmd.server = std::move(parts[0]);
      cmd.bulkhead = std::move(parts[1]);
    } else {
      cmd.bulkhead = std::move(parts[0]);
    }
    return std::nullopt;
  }

  std::string optional_database() {
    if (!is_name(peek())) return {};
    return std::string(take().value());
  }

  AdminParseResult parse_kill_client() {
    const Token t = take();
    if (t.kind == TokenKind::Error) return syntax(t.text);
    if (t.kind == TokenKind::End || t.kind == TokenKind::Semicolon) {
      return syntax("KILL_CLIENT needs a client id (the id column of SHOW CLIENTS)");
    }
    const auto id = t.kind == TokenKind::Word ? parse_u32(t.raw) : std::nullopt;
    if (!id) {
      return syntax("client id must be a number from 0 to 4294967295, not \"" + shown(t.raw) +
                    "\"");
    }
    return AdminCommand{KillClientCommand{*id}};
  }

  std::string_view src_;
  Lexer lex_;
  Token ahead_;
  bool peeked_ = false;
};

}  // namespace

std::string_view to_string(ShowItem item) {
  switch (item) {
    case ShowItem::Bulkheads:
      return "BULKHEADS";
    case ShowItem::Pools:
      return "POOLS";
    case ShowItem::Clients:
      return "CLIENTS";
    case ShowItem::Servers:
      return "SERVERS";
    case ShowItem::Stats:
      return "STATS";
    case ShowItem::Config:
      return "CONFIG";
    case ShowItem::Version:
      return "VERSION";
    case ShowItem::Databases:
      return "DATABASES";
    case ShowItem::Lists:
      return "LISTS";
    case ShowItem::Help:
      return "HELP";
  }
  return "?";
}

std::span<const ShowItem> show_items() { return kShowItems; }

std::span<const std::string_view> bulkhead_setting_keys() { return kBulkheadKeys; }

AdminParseResult parse_admin_command(std::string_view statement) {
  return Parser(statement).parse();
}

bool is_read_only(const AdminCommand& command) {
  return std::holds_alternative<ShowCommand>(command);
}

std::string_view command_tag(const AdminCommand& command) { return kTags[command.index()]; }

std::string_view command_name(const AdminCommand& command) { return kNames[command.index()]; }

StatementSplit split_statements(std::string_view sql) {
  StatementSplit out;
  std::size_t start = 0;
  std::size_t pos = 0;
  bool content = false;  // the current statement holds more than blanks and comments
  // Ends the current statement at `end`; false once the limit is passed.
  auto cut = [&](std::size_t end) {
    if (!content) return true;
    content = false;
    if (out.statements.size() == kMaxAdminStatements) {
      out.too_many = true;
      return false;
    }
    out.statements.push_back(sql.substr(start, end - start));
    return true;
  };
  while (pos < sql.size()) {
    const char c = sql[pos];
    if (c == ';') {
      if (!cut(pos)) return out;
      start = ++pos;
    } else if (is_blank(c)) {
      ++pos;
    } else if (at(sql, pos, '-', '-')) {
      skip_line_comment(sql, pos);
    } else if (at(sql, pos, '/', '*')) {
      if (!skip_block_comment(sql, pos)) content = true;  // let the parser report it
    } else if (c == '\'' || c == '"') {
      content = true;
      read_quoted(sql, pos, c, nullptr);
    } else {
      content = true;
      ++pos;
    }
  }
  cut(sql.size());
  return out;
}

}  // namespace sluice::admin
