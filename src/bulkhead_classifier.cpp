#include "src/bulkhead_classifier.hpp"

#include "config/cidr.hpp"
#include "config/name_pattern.hpp"
#include "src/pool_manager.hpp"

#include <algorithm>
#include <array>
#include <cstdint>

namespace sluice {
namespace {

bool any_name(const std::vector<std::string>& patterns, std::string_view value) {
  if (patterns.empty()) return true;
  return std::any_of(patterns.begin(), patterns.end(), [value](const std::string& p) {
    return config::matches_name_pattern(p, value);
  });
}

bool any_cidr(const std::vector<std::string>& cidrs, const std::optional<asio::ip::address>& a) {
  if (cidrs.empty()) return true;
  if (!a) return false;  // a Unix-socket client has no address to match
  std::array<std::uint8_t, 16> bytes{};
  if (a->is_v4()) {
    const auto v4 = a->to_v4().to_bytes();
    std::copy(v4.begin(), v4.end(), bytes.begin());
  } else {
    const auto v6 = a->to_v6().to_bytes();
    std::copy(v6.begin(), v6.end(), bytes.begin());
  }
  return std::any_of(cidrs.begin(), cidrs.end(), [&](const std::string& text) {
    const auto cidr = config::parse_cidr(text);  // validated by the config parser
    return cidr && config::matches(*cidr, bytes, a->is_v4());
  });
}

}  // namespace

const config::Bulkhead* match_bulkhead(const config::Config& cfg, const std::string& server,
                                       const ClientInfo& who) {
  for (const config::Bulkhead& b : cfg.bulkheads) {
    if (b.server != server || b.match.empty()) continue;
    if (any_name(b.match.application_name, who.application_name) &&
        any_name(b.match.user, who.user) && any_name(b.match.database, who.database) &&
        any_cidr(b.match.client_cidr, who.address)) {
      return &b;
    }
  }
  return nullptr;
}

}  // namespace sluice
