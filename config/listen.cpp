#include "config/listen.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>

namespace sluice::config {
namespace {

constexpr std::string_view kUnixPrefix = "unix:";

std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  unsigned value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  if (value < 1 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace

Result<ListenAddress, std::string> parse_tcp_address(std::string_view entry) {
  ListenAddress address;
  std::string_view port_text;
  if (entry.starts_with('[')) {
    const std::size_t close = entry.find(']');
    if (close == std::string_view::npos) return unexpected(std::string("missing ']'"));
    address.host = std::string(entry.substr(1, close - 1));
    if (address.host.empty()) return unexpected(std::string("empty address in brackets"));
    if (entry.substr(close + 1).size() < 2 || entry[close + 1] != ':') {
      return unexpected(std::string("expected ':PORT' after ']'"));
    }
    port_text = entry.substr(close + 2);
  } else {
    const std::size_t colon = entry.rfind(':');
    if (colon == std::string_view::npos) {
      return unexpected(std::string("expected HOST:PORT, [IPv6]:PORT or *:PORT"));
    }
    address.host = std::string(entry.substr(0, colon));
    if (address.host.empty()) return unexpected(std::string("empty host (use \"*\" for all)"));
    if (address.host.find(':') != std::string::npos) {
      return unexpected(std::string("an IPv6 address needs brackets, e.g. \"[::1]:6432\""));
    }
    port_text = entry.substr(colon + 1);
  }
  const std::optional<std::uint16_t> port = parse_port(port_text);
  if (!port) return unexpected(std::string("port must be a number from 1 to 65535"));
  address.port = *port;
  return address;
}

std::string ListenAddress::to_string() const {
  if (is_unix) return std::string(kUnixPrefix) + unix_dir;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<std::vector<ListenAddress>, std::string> parse_listen(std::span<const std::string> entries) {
  if (entries.empty()) return unexpected(std::string("must list at least one address"));
  std::vector<ListenAddress> result;
  std::optional<std::uint16_t> first_tcp_port;
  for (const std::string& entry : entries) {
    const std::string_view text = entry;
    ListenAddress address;
    if (text.starts_with(kUnixPrefix)) {
      address.is_unix = true;
      address.unix_dir = std::string(text.substr(kUnixPrefix.size()));
      if (address.unix_dir.empty()) {
        return unexpected("invalid listen entry \"" + entry + "\": empty directory");
      }
    } else if (!text.starts_with('[') && text.find(':') == std::string_view::npos) {
      return unexpected("invalid listen entry \"" + entry +
                        "\": expected HOST:PORT, [IPv6]:PORT or unix:DIR");
    } else {
      auto tcp = parse_tcp_address(text);
      if (!tcp) return unexpected("invalid listen entry \"" + entry + "\": " + tcp.error());
      address = std::move(*tcp);
      if (!first_tcp_port) first_tcp_port = address.port;
    }
    result.push_back(std::move(address));
  }
  for (ListenAddress& address : result) {
    if (address.is_unix) address.port = first_tcp_port.value_or(kDefaultListenPort);
  }
  for (std::size_t i = 0; i < result.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (result[i].to_string() == result[j].to_string()) {
        return unexpected("\"" + entries[i] + "\" is listed twice");
      }
    }
  }
  return result;
}

}  // namespace sluice::config
