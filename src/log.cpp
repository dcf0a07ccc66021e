#include "src/log.hpp"

#include "config/utf8.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdint>

namespace sluice::log {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void append_hex_byte(unsigned char c, std::string& out) {
  out += "\\x";
  out += kHex[c >> 4];
  out += kHex[c & 0xf];
}

// A C0 control character or DEL, as escape() writes it.
void append_control(unsigned char c, std::string& out) {
  switch (c) {
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\t':
      out += "\\t";
      break;
    default:
      append_hex_byte(c, out);
  }
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Line breaks in the eyes of some log viewers: C1 controls (NEL is U+0085), U+2028, U+2029.
bool breaks_lines(std::uint32_t code_point) {
  return (code_point >= 0x80 && code_point <= 0x9f) || code_point == 0x2028 || code_point == 0x2029;
}

// The sink's guard: control characters only (backslashes are the call sites' business, so a
// value escaped there is not escaped twice).
bool has_control(std::string_view text) {
  for (char c : text) {
    if (is_control(static_cast<unsigned char>(c))) return true;
  }
  return false;
}

// Wraps spdlog's pattern formatter: a message with a control character in it (text a call site
// did not pass through log::value or log::escaped) is written with those characters escaped, so
// that every event is one line whatever it carries.
class OneLineFormatter final : public spdlog::formatter {
 public:
  explicit OneLineFormatter(std::string pattern) : pattern_(std::move(pattern)), inner_(pattern_) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    if (!has_control(std::string_view(msg.payload.data(), msg.payload.size()))) {
      inner_.format(msg, dest);
      return;
    }
    std::string line;
    line.reserve(msg.payload.size() + 16);
    for (char c : std::string_view(msg.payload.data(), msg.payload.size())) {
      const auto u = static_cast<unsigned char>(c);
      if (is_control(u)) {
        append_control(u, line);
      } else {
        line += c;
      }
    }
    spdlog::details::log_msg copy(msg);
    copy.payload = spdlog::string_view_t(line.data(), line.size());
    inner_.format(copy, dest);
    msg.color_range_start = copy.color_range_start;  // where the colour sink colours the level
    msg.color_range_end = copy.color_range_end;
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<OneLineFormatter>(pattern_);
  }

 private:
  std::string pattern_;
  spdlog::pattern_formatter inner_;
};

std::shared_ptr<spdlog::logger> make(const std::string& name,
                                     const std::shared_ptr<spdlog::sinks::sink>& sink) {
  auto logger = std::make_shared<spdlog::logger>(name, sink);
  spdlog::register_logger(logger);
  return logger;
}

struct Loggers {
  std::shared_ptr<spdlog::logger> session, pool, config, main;
};

Loggers& loggers() {
  static Loggers l = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_formatter(make_line_formatter("%Y-%m-%d %H:%M:%S.%e %^%l%$ %n %v"));
    return Loggers{make("session", sink), make("pool", sink), make("config", sink),
                   make("main", sink)};
  }();
  return l;
}

}  // namespace

std::unique_ptr<spdlog::formatter> make_line_formatter(std::string pattern) {
  return std::make_unique<OneLineFormatter>(std::move(pattern));
}

void append_escaped(std::string_view text, std::string& out) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if (c == '\\' || c == '"') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (is_control(c)) {
        append_control(c, out);
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    std::uint32_t code_point = 0;
    const std::size_t length = config::utf8_sequence(text, i, code_point);
    if (length == 0) {
      append_hex_byte(c, out);
      ++i;
    } else if (breaks_lines(code_point)) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) out += kHex[(code_point >> shift) & 0xf];
      i += length;
    } else {
      out.append(text.substr(i, length));
      i += length;
    }
  }
}

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  append_escaped(text, out);
  return out;
}

std::string quote(std::string_view text) {
  std::string out = escape(text);
  if (out.empty() || out.size() != text.size() || out.find_first_of(" =") != std::string::npos) {
    out.insert(out.begin(), '"');
    out += '"';
  }
  return out;
}

void init_logging(const std::string& level) {
  loggers();
  set_level(level);
  spdlog::flush_on(spdlog::level::warn);
}

void set_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

spdlog::logger& session() { return *loggers().session; }
spdlog::logger& pool() { return *loggers().pool; }
spdlog::logger& config() { return *loggers().config; }
spdlog::logger& main() { return *loggers().main; }

}  // namespace sluice::log
