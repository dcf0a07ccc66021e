// What the config unit tests share: parse a config text that must be accepted, or collect the
// diagnostics of one that must be refused.
#pragma once

#include "config/config.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

namespace sluice::config::test {

// The Config parsed from `text`; the test fails, listing every diagnostic, if it is refused.
inline Config parse_ok(const std::string& text, const std::string& source = "t.toml") {
  auto parsed = parse_config(text, source);
  if (!parsed) {
    for (const Diagnostic& d : parsed.error()) UNSCOPED_INFO(d.to_string());
  }
  REQUIRE(parsed);
  return std::move(parsed).value();
}

// The diagnostics ("FILE:LINE: key: reason") refusing `text`; the test fails if it is accepted.
inline std::vector<std::string> errors_of(const std::string& text) {
  const auto parsed = parse_config(text, "t.toml");
  REQUIRE_FALSE(parsed);
  std::vector<std::string> out;
  for (const Diagnostic& d : parsed.error()) out.push_back(d.to_string());
  return out;
}

}  // namespace sluice::config::test
