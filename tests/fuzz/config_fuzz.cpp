// Fuzzes the configuration parser: config::parse_config() on arbitrary TOML text (it parses from
// a string; load_config() only adds reading the file). Errors are expected and fine; crashes,
// hangs and exceptions escaping are not. Properties: a rejected text comes with at least one
// diagnostic, each with a reason to print; an accepted one keeps the source it was given, its
// databases and bulkheads name configured servers and every bulkhead has a max; and
// parse_duration() on the first line reads back its own format_duration().
#include "tests/fuzz/fuzz_support.hpp"

#include "config/config.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::config::fuzz {
namespace {

// Relative paths (auth_file, certificates) are anchored here; parse_config() reads no file.
constexpr std::string_view kSource = "/nonexistent/sluice-fuzz/sluice.toml";

void check_duration(std::string_view text) {
  const auto d = parse_duration(text);
  if (!d) return;
  SLUICE_FUZZ_CHECK(d->count() >= 0 && *d <= kMaxDuration);
  const std::string formatted = format_duration(*d);
  const auto again = parse_duration(formatted);
  SLUICE_FUZZ_CHECK(again.has_value() && *again == *d);
}

}  // namespace
}  // namespace sluice::config::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::config;
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto result = parse_config(text, std::string(fuzz::kSource));
  if (result) {
    SLUICE_FUZZ_CHECK(result->source == fuzz::kSource);
    for (const auto& [name, database] : result->databases) {
      SLUICE_FUZZ_CHECK(result->servers.count(database.server) == 1);
    }
    for (const Bulkhead& bulkhead : result->bulkheads) {
      SLUICE_FUZZ_CHECK(bulkhead.max.has_value() && result->servers.count(bulkhead.server) == 1);
    }
  } else {
    SLUICE_FUZZ_CHECK(!result.error().empty());
    for (const Diagnostic& d : result.error()) {
      SLUICE_FUZZ_CHECK(!d.reason.empty() || !d.key.empty());
      SLUICE_FUZZ_CHECK(!d.to_string().empty());
    }
  }
  fuzz::check_duration(std::string_view(text).substr(0, text.find('\n')));
  return 0;
}
