// Which bulkhead of a server a client belongs to: the first [[bulkheads]] entry of that server
// (in file order) whose `match` holds for the client's user, database, application_name and
// address. Pure (reads the config it is given); any thread.
#pragma once

#include "config/config.hpp"

#include <string>

namespace sluice {

struct ClientInfo;  // src/pool_manager.hpp

// The matching entry, or nullptr: the server's default bulkhead.
const config::Bulkhead* match_bulkhead(const config::Config& cfg, const std::string& server,
                                       const ClientInfo& who);

}  // namespace sluice
