// ConnectionGate: every client connection from the moment it is accepted until it closes (issue
// 12, item 5). Work done before a client has authenticated costs Sluice descriptors and CPU
// while the client has proved nothing, so:
//  - every accepted connection counts against max_client_conn, whatever it is still doing (TLS
//    handshake, startup packet, authentication, cancel request) or has become (a session, the
//    admin console). Up to kOverLimitAllowance connections beyond max_client_conn are still
//    accepted: they get kOverLimitStartup to send their startup packet, then FATAL 53300, except
//    a login to the admin console (database "sluice"), so that an operator can get in at the
//    limit. At max_client_conn + kOverLimitAllowance the accept loops pause (as PgBouncer pauses
//    its listener): further connections wait in the kernel's backlog, holding no descriptor of
//    ours, until a connection closes;
//  - per peer (src/peer_address.hpp), connections still logging in are limited in number
//    (max_peer_logins) and in rate (login_peer_rate) by a pools::LoginGate. A connection refused
//    there gets no session: it is answered with FATAL 53300 naming the setting and closed, after
//    at most kRefusalWait for its first packet (refuse()); it no longer counts against
//    max_client_conn, and at most kRefusalsWaiting such connections wait at once.
//
// Threads: admit() and Ticket's members from any thread; wait_for_room() only on the accept
// executor (the first event loop), where the listeners run.
#pragma once

#include "config/config.hpp"
#include "pools/login_gate.hpp"
#include "pools/token_bucket.hpp"
#include "src/asio_prelude.hpp"
#include "src/metrics.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

// The time a connection has from accept to authenticated: client_login_timeout, or 60 s when it
// is "0" (PostgreSQL's authentication_timeout and PgBouncer's client_login_timeout default), so
// that no unauthenticated connection is kept for ever.
inline constexpr std::chrono::milliseconds kLoginTimeoutCeiling{60000};
std::chrono::milliseconds login_time_limit(const config::Config& cfg);

// At start: the descriptors Sluice may need (clients up to max_client_conn and the allowances,
// three per client when TLS is on, every server's max_connections, listeners, a margin). The
// soft RLIMIT_NOFILE is raised towards the hard one if it is lower; a limit still too low is
// logged as a warning, since running out of descriptors would also fail backend connects.
void check_descriptor_limit(const config::Config& cfg);

class ConnectionGate {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Connections accepted beyond max_client_conn, each to be refused or to reach the admin console.
  static constexpr std::uint32_t kOverLimitAllowance = 16;
  // How long such a connection has to send its startup packet (TLS handshake included).
  static constexpr std::chrono::milliseconds kOverLimitStartup{2000};

  enum class Verdict {
    Admitted,    // within max_client_conn: logs in as usual
    OverLimit,   // beyond max_client_conn: the admin console, or 53300 after the startup packet
    PeerLogins,  // refused at once: max_peer_logins
    PeerRate,    // refused at once: login_peer_rate
  };

  // One accepted connection, counted until destroyed (its peer's login too, until
  // authenticated()). Move-only; any thread.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept;
    Ticket& operator=(Ticket&& o) noexcept;
    ~Ticket();
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;

    Verdict verdict() const { return verdict_; }
    bool refused() const {
      return verdict_ == Verdict::PeerLogins || verdict_ == Verdict::PeerRate;
    }
    // The client has authenticated: it no longer counts as its peer's login. Idempotent.
    void authenticated();

   private:
    friend class ConnectionGate;
    void release();
    ConnectionGate* gate_ = nullptr;
    pools::PeerKey peer_{};
    Verdict verdict_ = Verdict::Admitted;
    bool logging_in_ = false;  // counted in the peer's logins
  };

  // Refusals are counted in `metrics` (sluice_client_connections_refused_total).
  ConnectionGate(const asio::any_io_executor& accept_executor, Metrics& metrics);

  // Returns once fewer than max_client_conn + kOverLimitAllowance connections are open; until then
  // the caller (an accept loop) does not accept. Accept executor only.
  awaitable<void> wait_for_room(const config::Config& cfg);
  // A connection just accepted from `peer` (nullopt: a Unix-socket client).
  Ticket admit(const std::optional<asio::ip::address>& peer, const config::Config& cfg,
               TimePoint now);
  // Answers a connection refused by admit() with its FATAL 53300 and closes it. It waits for the
  // client's first packet at most kRefusalWait, and only while fewer than kRefusalsWaiting others
  // do (otherwise it answers at once): an SSLRequest there is declined with 'N' before the error,
  // as libpq does not show an error that comes instead of that answer. What has arrived is read
  // and dropped (a close with unread bytes would be a reset that may destroy the answer). The
  // caller then drops the ticket: a refused connection no longer counts anywhere. Logs a sample.
  void refuse(Socket socket, Verdict verdict, std::string peer);
  static constexpr std::chrono::milliseconds kRefusalWait{500};
  static constexpr std::uint32_t kRefusalsWaiting = 64;

  // Connections open now, in every phase.
  std::uint32_t open() const { return open_.load(); }
  // Logins in progress of `peer` (tests and diagnostics).
  std::uint32_t logins_in_progress(const std::optional<asio::ip::address>& peer);

 private:
  void end_login(const pools::PeerKey& peer);
  void closed();
  static pools::LoginLimits limits_of(const config::Config& cfg);
  awaitable<void> refuse_after_first_packet(Socket socket, Verdict verdict, std::string peer);
  void answer_refusal(Socket& socket, Verdict verdict, std::string_view peer);

  std::atomic<std::uint32_t> open_{0};
  std::atomic<std::uint32_t> paused_loops_{0};  // accept loops waiting in wait_for_room()
  std::atomic<std::uint32_t> refusing_{0};      // refused connections waiting for a packet
  asio::any_io_executor accept_executor_;
  Metrics& metrics_;
  asio::steady_timer resume_;  // never expires: cancelled to wake the paused accept loops
  std::mutex mu_;              // guards what follows
  pools::LoginGate logins_;
  pools::TokenBucket log_budget_{pools::RateLimit{.per_second = 1, .burst = 5}};
  std::uint64_t unlogged_refusals_ = 0;
};

}  // namespace sluice
