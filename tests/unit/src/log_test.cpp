// Log escaping (issue 12, item 11): client- or server-supplied text can neither start a new log
// line nor forge a key=value field, and the sink keeps every event on one line even when a call
// site forgot to escape.
#include "src/log.hpp"

#include <catch2/catch.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <sstream>
#include <string>

using namespace std::string_literals;
using sluice::log::escape;
using sluice::log::quote;

TEST_CASE("escape leaves ordinary text alone", "[src]") {
  CHECK(escape("alice") == "alice");
  CHECK(escape("app user=1 x") == "app user=1 x");  // quote() handles spaces and '='
  CHECK(escape("") == "");
  CHECK(escape("Zoë 東京 🙂") == "Zoë 東京 🙂");  // well-formed UTF-8 is kept
}

TEST_CASE("escape makes control characters, backslashes and quotes visible", "[src]") {
  CHECK(escape("x\nfake_line key=value") == "x\\nfake_line key=value");
  CHECK(escape("a\r\nb\tc") == "a\\r\\nb\\tc");
  CHECK(escape("nul\0end"s) == "nul\\x00end");
  CHECK(escape("\x1b[31mred\x7f") == "\\x1b[31mred\\x7f");
  CHECK(escape("back\\slash") == "back\\\\slash");
  CHECK(escape("say \"hi\"") == "say \\\"hi\\\"");
  // An escaped backslash cannot be confused with an escape: "\n" typed as two characters.
  CHECK(escape("\\n") == "\\\\n");
  CHECK(escape("\n") != escape("\\n"));
}

TEST_CASE("escape makes invalid UTF-8 and Unicode line breaks visible", "[src]") {
  CHECK(escape("\xff\xfe") == "\\xff\\xfe");
  CHECK(escape("\xc3") == "\\xc3");                    // truncated sequence
  CHECK(escape("\xc0\xaf") == "\\xc0\\xaf");           // overlong '/'
  CHECK(escape("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate
  CHECK(escape("a\302\205b") == "a\\u0085b");          // NEL (octal escapes: "\x85b" would be one)
  CHECK(escape("a\342\200\250b\342\200\251") == "a\\u2028b\\u2029");
}

TEST_CASE("quote adds quotes only when a value needs them", "[src]") {
  CHECK(quote("alice") == "alice");
  CHECK(quote("") == "\"\"");
  CHECK(quote("x y") == "\"x y\"");
  CHECK(quote("a=b") == "\"a=b\"");
  CHECK(quote("x\nfake_line key=value") == "\"x\\nfake_line key=value\"");
  CHECK(quote("x\" user=\"root") == "\"x\\\" user=\\\"root\"");
  CHECK(quote("q\"") == "\"q\\\"\"");
}

TEST_CASE("log::value and log::escaped format through fmt", "[src]") {
  CHECK(fmt::format("user={} db={}", sluice::log::value("x\ny z"), sluice::log::value("app")) ==
        "user=\"x\\ny z\" db=app");
  CHECK(fmt::format("error=\"{}\"", sluice::log::escaped("bad \"x\"\n")) ==
        "error=\"bad \\\"x\\\"\\n\"");
}

TEST_CASE("the sink writes one line per event even with a raw newline in it", "[src]") {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  sink->set_formatter(sluice::log::make_line_formatter("%n %v"));
  spdlog::logger logger("test", sink);
  logger.info("login_failed user={}", "x\nfake_line key=value\r\x1b");
  logger.info("plain user={}", sluice::log::value("a\\b"));
  CHECK(out.str() ==
        "test login_failed user=x\\nfake_line key=value\\r\\x1b\n"
        "test plain user=\"a\\\\b\"\n");
}
