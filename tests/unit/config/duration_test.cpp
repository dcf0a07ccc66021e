#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

using sluice::config::Duration;
using sluice::config::format_duration;
using sluice::config::kMaxDuration;
using sluice::config::parse_duration;

TEST_CASE("durations with a unit are parsed to milliseconds", "[config]") {
  const auto [text, ms] = GENERATE(table<std::string, std::int64_t>({
      {"0", 0},
      {"00", 0},
      {"0ms", 0},
      {"0s", 0},
      {"1ms", 1},
      {"250ms", 250},
      {"30s", 30'000},
      {"007s", 7'000},
      {"10m", 600'000},
      {"1h", 3'600'000},
      {"2d", 172'800'000},
      {"30 s", 30'000},
      {"30\ts", 30'000},
      {"500  ms", 500},
      {"3650d", 3650LL * 86'400'000},
  }));
  CAPTURE(text);
  const auto parsed = parse_duration(text);
  REQUIRE(parsed.has_value());
  CHECK(parsed->count() == ms);
}

TEST_CASE("malformed durations are rejected", "[config]") {
  const std::string text = GENERATE(
      as<std::string>{}, "", "s", "ms", "10", "1 ", "-5s", "+5s", "1.5s", ".5s", "1e3ms", "10x",
      "10 sec", "10sec", " 10s", "10s ", "10S", "10Ms", "1h30m", "0 ", "0x10s", "3651d", "87600h1",
      "99999999999999999999s", "9223372036854775807ms", "106751991167300d", std::string("5\0s", 3));
  CAPTURE(text);
  CHECK_FALSE(parse_duration(text).has_value());
}

TEST_CASE("the longest duration is accepted and one millisecond more is not", "[config]") {
  const std::int64_t max = kMaxDuration.count();
  CHECK(parse_duration(std::to_string(max) + "ms") == kMaxDuration);
  CHECK_FALSE(parse_duration(std::to_string(max + 1) + "ms").has_value());
}

TEST_CASE("formatting a duration uses the largest exact unit and parses back", "[config]") {
  const auto [ms, text] = GENERATE(table<std::int64_t, std::string>({
      {0, "0"},
      {1, "1ms"},
      {1500, "1500ms"},
      {90'000, "90s"},
      {120'000, "2m"},
      {3'600'000, "1h"},
      {5'400'000, "90m"},
      {86'400'000, "1d"},
  }));
  CAPTURE(ms);
  CHECK(format_duration(Duration{ms}) == text);
  CHECK(parse_duration(text) == Duration{ms});
}
