// TLS towards clients (client_tls_mode).
//
// Sessions speak plaintext on a Socket: the relay sends and receives without blocking on the
// socket itself and parks an idle client on a readiness wait, neither of which an
// asio::ssl::stream offers. A client that asks for TLS therefore gets a TlsBridge: it owns the
// client's TCP socket inside an asio::ssl::stream, runs the handshake, then copies plaintext both
// ways between that stream and one end of a Unix socketpair whose other end becomes the session's
// socket. Plaintext clients keep the relay exactly as it is; a TLS client pays one extra copy
// through the socketpair each way and two 16 kB buffers (ARCHITECTURE.md).
#pragma once

#include "config/config.hpp"
#include "src/asio_prelude.hpp"

#include <boost/asio/ssl.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace sluice {

// The server-side TLS context for `cfg`'s client_tls_* keys: null when client_tls_mode is
// "disable". Failing to read or use the certificate or key is reported as `file: key: reason`
// in `errors` (and null is returned).
std::shared_ptr<asio::ssl::context> load_client_tls(const config::Config& cfg,
                                                    config::Diagnostics& errors);

class TlsBridge : public std::enable_shared_from_this<TlsBridge> {
 public:
  // Starts TLS on `client`, whose SSLRequest was just answered 'S': the bridge takes the socket
  // and `client` becomes the session's end of the socketpair. A handshake not finished within
  // `handshake_timeout` (0: none) or failing ends the bridge, which the session sees as end of
  // file. Throws boost::system::system_error if the socketpair cannot be made.
  static void start(Socket& client, std::shared_ptr<asio::ssl::context> ctx,
                    std::chrono::milliseconds handshake_timeout, std::string peer);

  TlsBridge(Socket client, std::shared_ptr<asio::ssl::context> ctx, Socket inner, std::string peer);

 private:
  awaitable<void> run(std::chrono::milliseconds handshake_timeout);
  awaitable<void> to_session();  // decrypted client bytes into the socketpair
  awaitable<void> to_client();   // the session's bytes, encrypted, to the client
  void close();

  std::shared_ptr<asio::ssl::context> ctx_;  // outlives tls_, which points into it
  asio::ssl::stream<Socket> tls_;
  Socket inner_;  // the bridge's end of the socketpair
  std::string peer_;
  asio::steady_timer reader_done_;  // cancelled when to_session() has returned
  bool reading_ = false;            // to_session() is running
  bool closing_ = false;            // the session has ended: to_session() stops
};

}  // namespace sluice
