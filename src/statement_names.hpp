// What transaction pooling's StatementMapper (protocol/statements.hpp) needs from the runtime: a
// backend name for each statement definition that no client can predict, and one shared copy of
// each definition's bytes for all the clients that prepare it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace sluice {

// "sluice_" and 32 hex digits of HMAC-SHA-256(body) under a key drawn at random when the process
// starts: equal definitions share a backend statement, and a client can neither choose a body
// that collides with another's statement nor work out the name of a statement it did not see.
std::string statement_backend_name(std::string_view body);

// The one copy of `body` in use by any client (a new one if none is).
std::shared_ptr<const std::string> intern_statement_body(std::string_view body);

// Distinct statement bodies in use in the process (for tests).
std::size_t statement_bodies_in_use();

}  // namespace sluice
