// Parsing of the `listen` key's entries into ListenAddress values. Pure; any thread.
#pragma once

#include "base/result.hpp"
#include "config/config.hpp"

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

// The port a Unix socket gets when no TCP entry is listed (PostgreSQL's and PgBouncer's 6432).
inline constexpr std::uint16_t kDefaultListenPort = 6432;

// Entries are "host:port", "[IPv6]:port", "*:port" or "unix:DIR". A Unix socket is named
// DIR/.s.PGSQL.<port> with the port of the first TCP entry (kDefaultListenPort if there is none),
// so clients find it with the same port number. The error is a one-line reason naming the entry.
Result<std::vector<ListenAddress>, std::string> parse_listen(std::span<const std::string> entries);

// One TCP entry: "host:port", "[IPv6]:port" or "*:port" (a listen entry without "unix:"). The
// error is the bare reason ("port must be a number from 1 to 65535"), without the entry.
Result<ListenAddress, std::string> parse_tcp_address(std::string_view entry);

}  // namespace sluice::config
