// The one way src/ includes Boost.Asio (1.74 = Asio 1.18).
// <utility> first: Asio 1.18's awaitable.hpp uses std::exchange without including it (GCC 12).
// BOOST_ASIO_HAS_CO_AWAIT is defined target-wide in CMake (clang 14 + libstdc++ need it).
#pragma once

// clang-format off
#include <utility>  // must precede Asio (see above)
// clang-format on

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice {

namespace asio = boost::asio;
using boost::system::error_code;
template <typename T = void>
using awaitable = asio::awaitable<T>;
using asio::use_awaitable;
// Every socket is a generic stream socket, so TCP and Unix-domain peers share one code path.
using Socket = asio::generic::stream_protocol::socket;
using Endpoint = asio::generic::stream_protocol::endpoint;
using Acceptor = asio::basic_socket_acceptor<asio::generic::stream_protocol>;

// SO_REUSEPORT: a new Sluice can bind the port of a running one (rolling restart). Asio has no
// public name for it; this is the same option type its own reuse_address uses.
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// Completion token that turns I/O errors into values: co_await op(..., ec_token(ec)).
inline auto ec_token(error_code& ec) { return asio::redirect_error(use_awaitable, ec); }

}  // namespace sluice
