#include "src/runtime.hpp"

#include "src/auth_query.hpp"
#include "src/client_session.hpp"
#include "src/http/routes.hpp"
#include "src/log.hpp"
#include "src/task_failure.hpp"

#include <csignal>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace sluice {
namespace {

std::shared_ptr<Acceptor> bind_listener(asio::io_context& ctx, const config::ListenAddress& a) {
  Endpoint ep;
  if (a.is_unix) {
    std::string path = a.unix_dir + "/.s.PGSQL." + std::to_string(a.port);
    std::error_code ignored;
    std::filesystem::remove(path, ignored);  // a stale socket from a previous run
    ep = asio::local::stream_protocol::endpoint(path);
  } else {
    std::string host = (a.host.empty() || a.host == "*") ? "0.0.0.0" : a.host;
    ep = asio::ip::tcp::endpoint(asio::ip::make_address(host), a.port);
  }
  auto acceptor = std::make_shared<Acceptor>(ctx);
  acceptor->open(ep.protocol());
  if (!a.is_unix) {
    acceptor->set_option(asio::socket_base::reuse_address(true));
    acceptor->set_option(ReusePort(true));  // rolling restart: README "Rolling restart"
  }
  acceptor->bind(ep);
  acceptor->listen(asio::socket_base::max_listen_connections);
  if (a.is_unix) {
    std::string path = a.unix_dir + "/.s.PGSQL." + std::to_string(a.port);
    ::chmod(path.c_str(), 0777);  // access is controlled by authentication, as in PostgreSQL
  }
  return acceptor;
}

std::string describe_peer(const Socket& s) {
  if (auto tcp = tcp_peer(s)) return tcp->address().to_string() + ":" + std::to_string(tcp->port());
  error_code ec;
  Endpoint ep = s.remote_endpoint(ec);
  return !ec && ep.protocol().family() == AF_UNIX ? "unix" : "?";
}

}  // namespace

Runtime::Runtime(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const AuthStore> auth)
    : config_(std::move(cfg)),
      auth_(std::move(auth)),
      metrics_(std::make_unique<Metrics>(*config_)),
      pools_(std::make_unique<PoolManager>(*config_)) {
  publish_config(config_);  // config() readers may cache it from now on
  pools_->set_metrics(*metrics_);
  set_task_failure_metrics(metrics_.get());
  std::size_t threads = config_->threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (std::size_t i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
  }
  gate_ = std::make_unique<ConnectionGate>(contexts_[0]->get_executor(), *metrics_);
}

Runtime::~Runtime() { set_task_failure_metrics(nullptr); }

int Runtime::run() {
  asio::io_context& main_ctx = *contexts_[0];
  for (const auto& a : config_->listen) {
    acceptors_.push_back(bind_listener(main_ctx, a));
    log::main().info("listening address={}", a.to_string());
  }
  if (config_->metrics_listen) {
    http_ = std::make_unique<http::HttpServer>(
        main_ctx, *config_->metrics_listen, [this](const http::HttpRequest& request) {
          return http::route_request(
              request, [this] { return snapshot(false); }, *metrics_, *config());
        });
    http_->start();
    log::main().info("metrics_listening address={}", config_->metrics_listen->to_string());
  }
  for (auto& acceptor : acceptors_) {
    asio::co_spawn(main_ctx, accept_loop(acceptor), on_task_exit(Task::AcceptLoop));
  }
  asio::co_spawn(main_ctx, maintenance_loop(), on_task_exit(Task::MaintenanceLoop));
  asio::co_spawn(main_ctx, probe_loop(), on_task_exit(Task::ProbeLoop));

  signals_ = std::make_unique<asio::signal_set>(main_ctx, SIGINT, SIGTERM, SIGHUP);
  wait_for_signal();

  check_descriptor_limit(*config_);
  log::main().info("sluice_started version={} threads={} servers={} databases={}", SLUICE_VERSION,
                   contexts_.size(), config_->servers.size(), config_->databases.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < contexts_.size(); ++i) {
    threads.emplace_back([ctx = contexts_[i].get()] {
      auto guard = asio::make_work_guard(*ctx);
      ctx->run();
    });
  }
  {
    auto guard = asio::make_work_guard(main_ctx);
    main_ctx.run();
  }
  for (auto& ctx : contexts_) ctx->stop();
  for (auto& t : threads) t.join();
  log::main().info("sluice_stopped");
  return 0;
}

// Every accepted connection is counted by the ConnectionGate from here on; at max_client_conn
// (plus the allowance for refusals and the admin console) the loop stops accepting until one
// closes, and a peer over its login limits is refused without a session.
awaitable<void> Runtime::accept_loop(std::shared_ptr<Acceptor> acceptor) {
  for (;;) {
    co_await gate_->wait_for_room(*config());
    asio::io_context& target = *contexts_[next_context_++ % contexts_.size()];
    error_code ec;
    Socket socket = co_await acceptor->async_accept(target, ec_token(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor->is_open()) co_return;
      // Out of file descriptors or similar: back off briefly instead of spinning.
      log::main().warn("accept_failed reason=\"{}\"", ec.message());
      asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      co_await t.async_wait(ec_token(ec));
      continue;
    }
    clients_accepted.fetch_add(1, std::memory_order_relaxed);
    std::optional<asio::ip::address> address;
    if (auto tcp = tcp_peer(socket)) address = tcp->address();
    ConnectionGate::Ticket ticket =
        gate_->admit(address, *config(), std::chrono::steady_clock::now());
    std::string peer = describe_peer(socket);
    if (ticket.refused()) {
      gate_->refuse(std::move(socket), ticket.verdict(), std::move(peer));
      continue;  // the ticket goes: a refused connection counts no more
    }
    auto session = std::make_shared<ClientSession>(*this, std::move(socket), std::move(peer),
                                                   std::move(ticket));
    // The completion handler holds the session while run() runs (no wrapping coroutine frame).
    asio::co_spawn(target, session->run(), [session](std::exception_ptr e) {
      report_task_failure(Task::ClientSession, e);
    });
  }
}

awaitable<void> Runtime::maintenance_loop() {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  while (!draining_) {
    timer.expires_after(std::chrono::seconds(1));
    error_code ec;
    co_await timer.async_wait(ec_token(ec));
    const auto cfg = config();
    pools_->maintain(ex, cfg->max_message_size);
    pools_->reap_idle_pools(cfg->pool_idle_timeout);
    auth_query_service().maintain(std::chrono::steady_clock::now());  // idle auth_user conns
  }
}

awaitable<void> Runtime::probe_loop() {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  while (!draining_) {
    timer.expires_at(pools_->probe_servers(ex, config()->max_message_size));
    error_code ec;
    co_await timer.async_wait(ec_token(ec));
  }
}

void Runtime::wait_for_signal() {
  signals_->async_wait([this](error_code ec, int signo) {
    if (ec) return;
    on_signal(signo);
    if (signals_) wait_for_signal();
  });
}

void Runtime::on_signal(int signo) {
  if (signo == SIGHUP) {
    log::main().info("reload reason=SIGHUP");
    // Off the event loop: reading files and deriving SCRAM verifiers takes a moment.
    std::thread([this] { reload(); }).detach();
    return;
  }
  if (signo == SIGINT || draining_) {
    log::main().info("shutdown mode=immediate");
    stop_all();
    return;
  }
  begin_drain();
}

void Runtime::begin_drain(bool wait_for_clients) {
  draining_ = true;
  for (auto& a : acceptors_) {
    error_code ignored;
    a->close(ignored);
  }
  auto timeout = config()->shutdown_timeout;
  if (wait_for_clients) {
    // SHUTDOWN WAIT_FOR_CLIENTS: no deadline; exit when the last client has left.
    log::main().info("shutdown mode=wait_for_clients clients={}", clients());
    drain_deadline_ = std::chrono::steady_clock::time_point::max();
  } else {
    log::main().info("shutdown mode=drain clients={} timeout_ms={}", clients(), timeout.count());
    drain_deadline_ = std::chrono::steady_clock::now() + timeout;
  }
  drain_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  drain_timer_->expires_after(std::chrono::milliseconds(0));
  drain_timer_->async_wait([this](error_code ec) { drain_tick(ec); });
}

// Polls while draining: exits as soon as the last client leaves, or closes the rest at the
// deadline with 57P01 (as PostgreSQL's fast shutdown does).
void Runtime::drain_tick(error_code ec) {
  if (ec) return;
  if (cancels_.size() == 0) {
    stop_all();
    return;
  }
  if (std::chrono::steady_clock::now() >= drain_deadline_) {
    log::main().info("shutdown_timeout_reached clients={}", cancels_.size());
    for (auto& s : cancels_.sessions()) {
      s->terminate("57P01", "terminating connection due to administrator command");
    }
    pools_->close_all();
    drain_timer_->expires_after(std::chrono::milliseconds(500));
    drain_timer_->async_wait([this](error_code e) {
      if (!e) stop_all();
    });
    return;
  }
  drain_timer_->expires_after(std::chrono::milliseconds(50));
  drain_timer_->async_wait([this](error_code e) { drain_tick(e); });
}

void Runtime::stop_all() {
  for (auto& a : acceptors_) {
    error_code ignored;
    a->close(ignored);
  }
  if (http_) http_->stop();
  pools_->close_all();
  signals_.reset();
  for (auto& ctx : contexts_) ctx->stop();
}

}  // namespace sluice
