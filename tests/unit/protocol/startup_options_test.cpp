#include "protocol/startup_options.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sluice::protocol {
namespace {

using Settings = std::vector<std::pair<std::string, std::string>>;

TEST_CASE("startup options yield their settings in order", "[protocol]") {
  using Row = std::tuple<std::string, Settings>;
  const auto [options, expected] = GENERATE(
      Row{"-c a=b", {{"a", "b"}}}, Row{"-ca=b", {{"a", "b"}}}, Row{"--a-b=c", {{"a_b", "c"}}},
      Row{"--a-b=c-d", {{"a_b", "c-d"}}}, Row{"-c a-b=c", {{"a_b", "c"}}},
      Row{"-c search_path=a\\ b", {{"search_path", "a b"}}},
      Row{"-c a=b\\\\c", {{"a", "b\\c"}}},  // an escaped backslash
      Row{"-c a=b\\", {{"a", "b\\"}}},      // a trailing backslash stays
      Row{"-c a=", {{"a", ""}}},            // an empty value is a value
      Row{"-c a=x=y", {{"a", "x=y"}}},      // only the first '=' splits
      Row{"-c\ta=1 \n -cb=2\r--c-d=3  ",    // any whitespace separates
          {{"a", "1"}, {"b", "2"}, {"c_d", "3"}}},
      Row{"-c search_path=app -c statement_timeout=5s --geqo=off",
          {{"search_path", "app"}, {"statement_timeout", "5s"}, {"geqo", "off"}}},
      Row{"", {}}, Row{"   ", {}});
  CAPTURE(options);
  const auto parsed = parse_startup_options(options);
  REQUIRE(parsed.has_value());
  CHECK(*parsed == expected);
}

TEST_CASE("startup options that are not settings are refused", "[protocol]") {
  const std::string options = GENERATE("-c", "-x", "a=b", "-c =x", "-c a", "-ca", "--=x", "--a",
                                       "-c a=b -x", "-c a=b stray", "-", "-- a=b");
  CAPTURE(options);
  CHECK_FALSE(parse_startup_options(options).has_value());
}

}  // namespace
}  // namespace sluice::protocol
