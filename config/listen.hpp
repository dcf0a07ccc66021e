// Parsing of the `listen` key's entries into ListenAddress values. Pure; any thread.
#pragma once

#include "config/config.hpp"
#include "config/result.hpp"

#include <span>
#include <string>
#include <vector>

namespace sluice::config {

// The port a Unix socket gets when no TCP entry is listed (PostgreSQL's and PgBouncer's 6432).
inline constexpr std::uint16_t kDefaultListenPort = 6432;

// Entries are "host:port", "[IPv6]:port", "*:port" or "unix:DIR". A Unix socket is named
// DIR/.s.PGSQL.<port> with the port of the first TCP entry (kDefaultListenPort if there is none),
// so clients find it with the same port number. The error is a one-line reason naming the entry.
Result<std::vector<ListenAddress>, std::string> parse_listen(std::span<const std::string> entries);

}  // namespace sluice::config
