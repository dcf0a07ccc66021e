#include "src/tls.hpp"

#include "src/log.hpp"
#include "src/task_failure.hpp"

#include <openssl/ssl.h>

#include <array>
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>

namespace sluice {

namespace {

// One TLS record's worth of plaintext per copy.
constexpr std::size_t kChunk = 16 * 1024;
// How long a client has to answer Sluice's close_notify before the socket is closed anyway.
constexpr std::chrono::seconds kShutdownWait{1};

}  // namespace

std::shared_ptr<asio::ssl::context> load_client_tls(const config::Config& cfg,
                                                    config::Diagnostics& errors) {
  if (cfg.client_tls_mode == config::ClientTlsMode::Disable) return nullptr;
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                   asio::ssl::context::no_tlsv1_1 | asio::ssl::context::no_compression |
                   asio::ssl::context::single_dh_use);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // As PostgreSQL: no session resumption (clients connect once and stay).
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);
  error_code ec;
  ctx->use_certificate_chain_file(cfg.client_tls_cert_file, ec);
  if (ec) {
    errors.push_back({cfg.client_tls_cert_file, 0, "client_tls_cert_file",
                      "cannot use it as a PEM certificate: " + ec.message()});
    return nullptr;
  }
  ctx->use_private_key_file(cfg.client_tls_key_file, asio::ssl::context::pem, ec);
  // OpenSSL checks the key against the certificate as it loads it ("key values mismatch").
  if (ec && ec.message().find("mismatch") == std::string::npos) {
    errors.push_back({cfg.client_tls_key_file, 0, "client_tls_key_file",
                      "cannot use it as an unencrypted PEM private key: " + ec.message()});
    return nullptr;
  }
  if (ec || SSL_CTX_check_private_key(native) != 1) {
    errors.push_back({cfg.client_tls_key_file, 0, "client_tls_key_file",
                      "does not match the certificate in " + cfg.client_tls_cert_file});
    return nullptr;
  }
  return ctx;
}

void TlsBridge::start(Socket& client, std::shared_ptr<asio::ssl::context> ctx,
                      std::chrono::milliseconds handshake_timeout, std::string peer) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw boost::system::system_error(error_code(errno, boost::system::system_category()),
                                      "socketpair");
  }
  const auto ex = client.get_executor();
  const asio::generic::stream_protocol unix_stream(AF_UNIX, 0);
  Socket inner(ex);
  Socket outer(ex);
  error_code ec;
  inner.assign(unix_stream, fds[0], ec);
  if (ec) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw boost::system::system_error(ec, "assign");
  }
  outer.assign(unix_stream, fds[1], ec);
  if (ec) {
    ::close(fds[1]);
    throw boost::system::system_error(ec, "assign");
  }
  auto bridge = std::make_shared<TlsBridge>(std::move(client), std::move(ctx), std::move(inner),
                                            std::move(peer));
  client = std::move(outer);
  asio::co_spawn(ex, bridge->run(handshake_timeout), [bridge](std::exception_ptr e) {
    if (!e) return;
    report_task_failure(Task::TlsBridge, e);
    bridge->close();
  });
}

TlsBridge::TlsBridge(Socket client, std::shared_ptr<asio::ssl::context> ctx, Socket inner,
                     std::string peer)
    : ctx_(std::move(ctx)),
      tls_(std::move(client), *ctx_),
      inner_(std::move(inner)),
      peer_(std::move(peer)),
      reader_done_(inner_.get_executor(), asio::steady_timer::time_point::max()) {}

void TlsBridge::close() {
  error_code ignored;
  tls_.next_layer().close(ignored);
  inner_.close(ignored);
}

awaitable<void> TlsBridge::run(std::chrono::milliseconds handshake_timeout) {
  auto self = shared_from_this();
  error_code ec;
  {
    asio::steady_timer deadline(inner_.get_executor());
    if (handshake_timeout.count() > 0) {
      deadline.expires_after(handshake_timeout);
      deadline.async_wait([self](error_code e) {
        if (!e) self->close();
      });
    }
    co_await tls_.async_handshake(asio::ssl::stream_base::server, ec_token(ec));
  }
  if (ec) {
    log::session().info("tls_handshake_failed peer={} error=\"{}\"", peer_, ec.message());
    close();
    co_return;
  }
  log::session().debug("tls_established peer={} version={} cipher={}", peer_,
                       SSL_get_version(tls_.native_handle()),
                       SSL_get_cipher_name(tls_.native_handle()));
  reading_ = true;
  asio::co_spawn(inner_.get_executor(), to_session(), [self](std::exception_ptr e) {
    self->reading_ = false;
    self->reader_done_.cancel();
    if (!e) return;
    report_task_failure(Task::TlsBridgeReader, e);
    self->close();
  });
  co_await to_client();
}

awaitable<void> TlsBridge::to_session() {
  std::array<std::byte, kChunk> buf;
  error_code ec;
  while (!closing_) {
    const std::size_t n = co_await tls_.async_read_some(asio::buffer(buf), ec_token(ec));
    if (ec) break;
    co_await asio::async_write(inner_, asio::buffer(buf.data(), n), ec_token(ec));
    if (ec) break;
  }
  // The client has closed (or broke TLS): the session reads end of file and ends.
  error_code ignored;
  inner_.shutdown(Socket::shutdown_send, ignored);
}

awaitable<void> TlsBridge::to_client() {
  std::array<std::byte, kChunk> buf;
  error_code ec;
  for (;;) {
    const std::size_t n = co_await inner_.async_read_some(asio::buffer(buf), ec_token(ec));
    if (ec) break;
    co_await asio::async_write(tls_, asio::buffer(buf.data(), n), ec_token(ec));
    if (ec) break;
  }
  if (ec == asio::error::eof && tls_.next_layer().is_open()) {
    // The session has said all it will: end TLS properly (close_notify), once the reader has let
    // go of the stream (an SSL stream takes one read and one write at a time, and a shutdown
    // reads the client's answer).
    closing_ = true;
    error_code ignored;
    if (reading_) tls_.next_layer().cancel(ignored);
    while (reading_) co_await reader_done_.async_wait(ec_token(ignored));
    if (tls_.next_layer().is_open()) {
      asio::steady_timer deadline(inner_.get_executor(), kShutdownWait);
      deadline.async_wait([self = shared_from_this()](error_code e) {
        if (!e) self->close();
      });
      co_await tls_.async_shutdown(ec_token(ignored));
    }
  }
  close();
}

}  // namespace sluice
