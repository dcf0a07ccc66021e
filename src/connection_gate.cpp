#include "src/connection_gate.hpp"

#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "src/log.hpp"
#include "src/peer_address.hpp"
#include "src/task_failure.hpp"

#include <algorithm>
#include <array>
#include <memory>
#include <sys/resource.h>
#include <sys/socket.h>
#include <utility>

namespace sluice {

std::chrono::milliseconds login_time_limit(const config::Config& cfg) {
  return cfg.client_login_timeout.count() > 0 ? cfg.client_login_timeout : kLoginTimeoutCeiling;
}

void check_descriptor_limit(const config::Config& cfg) {
  // A TLS client holds three: its TCP socket and the two ends of its bridge's socketpair.
  const std::uint64_t per_client = cfg.client_tls_mode == config::ClientTlsMode::Disable ? 1 : 3;
  std::uint64_t needed =
      per_client * (std::uint64_t{cfg.max_client_conn} + ConnectionGate::kOverLimitAllowance) +
      ConnectionGate::kRefusalsWaiting + cfg.listen.size() + 64;
  for (const auto& [name, server] : cfg.servers) needed += server.max_connections;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < needed && limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = std::min<rlim_t>(limit.rlim_max, needed);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur < needed) {
    log::main().warn("fd_limit_low soft={} hard={} needed={}", limit.rlim_cur, limit.rlim_max,
                     needed);
  } else {
    log::main().info("fd_limit soft={} needed={}", limit.rlim_cur, needed);
  }
}

// ---- Ticket ------------------------------------------------------------------------------------

ConnectionGate::Ticket::Ticket(Ticket&& o) noexcept
    : gate_(std::exchange(o.gate_, nullptr)),
      peer_(o.peer_),
      verdict_(o.verdict_),
      logging_in_(std::exchange(o.logging_in_, false)) {}

ConnectionGate::Ticket& ConnectionGate::Ticket::operator=(Ticket&& o) noexcept {
  if (this != &o) {
    release();
    gate_ = std::exchange(o.gate_, nullptr);
    peer_ = o.peer_;
    verdict_ = o.verdict_;
    logging_in_ = std::exchange(o.logging_in_, false);
  }
  return *this;
}

ConnectionGate::Ticket::~Ticket() { release(); }

void ConnectionGate::Ticket::authenticated() {
  if (gate_ == nullptr || !logging_in_) return;
  logging_in_ = false;
  gate_->end_login(peer_);
}

void ConnectionGate::Ticket::release() {
  if (gate_ == nullptr) return;
  authenticated();
  std::exchange(gate_, nullptr)->closed();
}

// ---- ConnectionGate ----------------------------------------------------------------------------

ConnectionGate::ConnectionGate(const asio::any_io_executor& accept_executor, Metrics& metrics)
    : accept_executor_(accept_executor), metrics_(metrics), resume_(accept_executor) {
  resume_.expires_at(asio::steady_timer::time_point::max());
}

pools::LoginLimits ConnectionGate::limits_of(const config::Config& cfg) {
  pools::LoginLimits limits{.max_per_peer = cfg.max_peer_logins};
  if (cfg.login_peer_rate > 0) {
    limits.rate = pools::RateLimit{.per_second = static_cast<double>(cfg.login_peer_rate),
                                   .burst = cfg.login_peer_rate};
  }
  return limits;
}

awaitable<void> ConnectionGate::wait_for_room(const config::Config& cfg) {
  const std::uint64_t bound = std::uint64_t{cfg.max_client_conn} + kOverLimitAllowance;
  if (open_.load() < bound) co_return;
  const auto since = std::chrono::steady_clock::now();
  log::main().warn("accept_paused clients={} max_client_conn={}", open_.load(),
                   cfg.max_client_conn);
  for (;;) {
    // Announced before the count is read: a connection closing meanwhile either sees this loop
    // waiting (and wakes it) or has already lowered the count read here.
    paused_loops_.fetch_add(1);
    if (open_.load() < bound) {
      paused_loops_.fetch_sub(1);
      break;
    }
    error_code ec;
    co_await resume_.async_wait(ec_token(ec));  // ends only by cancel(): the timer never expires
    paused_loops_.fetch_sub(1);
  }
  const auto paused = std::chrono::steady_clock::now() - since;
  log::main().info("accept_resumed paused_ms={}",
                   std::chrono::duration_cast<std::chrono::milliseconds>(paused).count());
}

ConnectionGate::Ticket ConnectionGate::admit(const std::optional<asio::ip::address>& peer,
                                             const config::Config& cfg, TimePoint now) {
  Ticket t;
  t.gate_ = this;
  t.peer_ = peer_key(peer);
  const std::uint32_t open = open_.fetch_add(1) + 1;
  pools::LoginVerdict verdict = pools::LoginVerdict::Admitted;
  {
    std::lock_guard lock(mu_);
    const pools::LoginLimits limits = limits_of(cfg);
    if (!(limits == logins_.limits())) logins_.set_limits(limits, now);  // a reload
    verdict = logins_.begin(t.peer_, now);
  }
  switch (verdict) {
    case pools::LoginVerdict::TooMany:
      t.verdict_ = Verdict::PeerLogins;
      return t;
    case pools::LoginVerdict::RateLimited:
      t.verdict_ = Verdict::PeerRate;
      return t;
    case pools::LoginVerdict::Admitted:
      break;
  }
  t.logging_in_ = true;
  t.verdict_ = open > cfg.max_client_conn ? Verdict::OverLimit : Verdict::Admitted;
  return t;
}

void ConnectionGate::refuse(Socket socket, Verdict verdict, std::string peer) {
  if (refusing_.fetch_add(1) >= kRefusalsWaiting) {
    refusing_.fetch_sub(1);
    answer_refusal(socket, verdict, peer);
    return;
  }
  const auto ex = socket.get_executor();
  asio::co_spawn(ex, refuse_after_first_packet(std::move(socket), verdict, std::move(peer)),
                 on_task_exit(Task::ConnectionRefusal));
}

namespace {

// Reads and drops what the client has sent so far (a startup packet is at most 10000 bytes):
// closing with unread bytes would send a reset, which may destroy the answer on its way. True
// when those bytes were exactly an SSLRequest or a GSSENCRequest.
bool drain_is_encryption_request(Socket& socket) {
  std::array<std::byte, 4096> buf{};
  const ssize_t got = ::recv(socket.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
  for (int i = 0;
       i < 3 && ::recv(socket.native_handle(), buf.data() + 8, buf.size() - 8, MSG_DONTWAIT) > 0;
       ++i) {
  }
  if (got != 8) return false;
  const auto r = protocol::peek_startup(protocol::ByteView(buf.data(), 8));
  return r.status == protocol::DecodeStatus::Ok && (r.kind == protocol::StartupKind::SslRequest ||
                                                    r.kind == protocol::StartupKind::GssEncRequest);
}

}  // namespace

// Waits for the client's first packet; an encryption request is declined with 'N' and the next
// packet (its startup packet in the clear) awaited too, all within kRefusalWait. libpq does not
// show an error that comes instead of that answer (it could be a man in the middle's), nor
// bytes that come with it (CVE-2021-23222).
awaitable<void> ConnectionGate::refuse_after_first_packet(Socket socket, Verdict verdict,
                                                          std::string peer) {
  struct Waiting {
    std::atomic<std::uint32_t>& count;
    ~Waiting() { count.fetch_sub(1); }
  } waiting{refusing_};
  // The timer's handler may run after the waits (already queued when one ended): it reaches the
  // socket only through `target`, cleared before the socket goes.
  auto target = std::make_shared<Socket*>(&socket);
  asio::steady_timer limit(socket.get_executor(), kRefusalWait);
  limit.async_wait([target](error_code ec) {
    error_code ignored;
    if (!ec && *target != nullptr) (*target)->cancel(ignored);  // then answered all the same
  });
  for (int packet = 0; packet < 2; ++packet) {
    error_code ec;
    co_await socket.async_wait(Socket::wait_read, ec_token(ec));
    if (ec || packet == 1 || !drain_is_encryption_request(socket)) break;
    const char no = 'N';
    if (::send(socket.native_handle(), &no, 1, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) break;
  }
  *target = nullptr;
  limit.cancel();
  answer_refusal(socket, verdict, peer);
}

void ConnectionGate::answer_refusal(Socket& socket, Verdict verdict, std::string_view peer) {
  const bool too_many = verdict == Verdict::PeerLogins;
  std::string detail;
  bool log_it = false;
  std::uint64_t suppressed = 0;
  {
    std::lock_guard lock(mu_);
    const pools::LoginLimits& limits = logins_.limits();
    detail = too_many ? "max_peer_logins is " + std::to_string(limits.max_per_peer)
                      : "login_peer_rate is " +
                            std::to_string(static_cast<std::uint64_t>(limits.rate.per_second)) +
                            " a second";
    log_it = log_budget_.try_take(std::chrono::steady_clock::now());
    if (log_it) {
      suppressed = std::exchange(unlogged_refusals_, 0);
    } else {
      ++unlogged_refusals_;
    }
  }
  metrics_.count_connection_refused(too_many ? ConnectionLimit::MaxPeerLogins
                                             : ConnectionLimit::LoginPeerRate);
  const int fd = socket.native_handle();
  drain_is_encryption_request(socket);
  protocol::Buffer out;
  protocol::build_error_response(
      out, protocol::ErrorInfo{
               .severity = protocol::Severity::Fatal,
               .sqlstate = "53300",
               .message = too_many ? "sluice: too many connections from this address are "
                                     "logging in (max_peer_logins)"
                                   : "sluice: too many new connections from this address "
                                     "(login_peer_rate)",
               .detail = detail});
  [[maybe_unused]] const ssize_t sent =
      ::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  error_code ignored;
  socket.shutdown(Socket::shutdown_both, ignored);
  socket.close(ignored);
  if (log_it) {
    log::session().info("client_refused reason={} peer={} suppressed={}",
                        too_many ? "max_peer_logins" : "login_peer_rate", peer, suppressed);
  }
}

std::uint32_t ConnectionGate::logins_in_progress(const std::optional<asio::ip::address>& peer) {
  std::lock_guard lock(mu_);
  return logins_.in_progress(peer_key(peer));
}

void ConnectionGate::end_login(const pools::PeerKey& peer) {
  std::lock_guard lock(mu_);
  logins_.end(peer, std::chrono::steady_clock::now());
}

void ConnectionGate::closed() {
  open_.fetch_sub(1);
  if (paused_loops_.load() > 0) {
    asio::post(accept_executor_, [this] { resume_.cancel(); });
  }
}

}  // namespace sluice
