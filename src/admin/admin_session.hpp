// The admin console's message loop: what a user connected to the virtual database "sluice" gets
// after logging in.
//
// Simple query protocol only, as in PgBouncer: each Query runs through execute_admin_query and is
// answered with ReadyForQuery (always idle: the console has no transactions). Extended-protocol
// messages get one ErrorResponse 0A000, then everything up to the next Sync is skipped (as
// PostgreSQL does after an error) and the Sync is answered with ReadyForQuery; a FunctionCall gets
// 0A000 and ReadyForQuery at once. Terminate or EOF ends the loop; malformed framing, a message
// over `max_message_size` bytes or a message a client may not send now gets FATAL 08P01 first.
//
// The caller has already sent AuthenticationOk, ParameterStatus, BackendKeyData and the first
// ReadyForQuery, and owns the socket and buffer (bytes already read are in `in`). Runs on the
// session's executor; returns when the session is over (the caller closes the socket).
#pragma once

#include "src/admin/console.hpp"
#include "src/asio_prelude.hpp"
#include "src/wire.hpp"

#include <cstdint>

namespace sluice {

awaitable<void> serve_admin(Socket& client, ReadBuffer& in, AdminRole role, AdminActions& actions,
                            std::uint32_t max_message_size);

}  // namespace sluice
