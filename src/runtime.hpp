// Runtime: the process-wide wiring. It owns one io_context per thread (sessions are pinned to the
// thread that accepted them, so the relay never crosses threads), the listeners, the signal
// handling, the shared PoolManager and CancelRegistry, and the current config and auth snapshots.
//
// Threads: run() starts `threads` event-loop threads and returns when the process should exit.
// Accessors are safe from any thread.
#pragma once

#include "config/config.hpp"
#include "src/admin/console.hpp"
#include "src/asio_prelude.hpp"
#include "src/auth_store.hpp"
#include "src/cancel_registry.hpp"
#include "src/connection_gate.hpp"
#include "src/http/server.hpp"
#include "src/metrics.hpp"
#include "src/pool_manager.hpp"

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace sluice {

// Runtime also carries out the admin console's commands (AdminActions), from any thread.
class Runtime : public AdminActions {
 public:
  Runtime(std::shared_ptr<const config::Config> cfg, std::shared_ptr<const AuthStore> auth);
  ~Runtime();

  // Binds the listeners (throws on failure), runs until shutdown, returns the exit code.
  int run();

  // The current config. Once configs are published with publish_config(), each thread keeps the
  // one it last read and only re-reads config_ (std::atomic_load: a lock of libstdc++'s global
  // mutex pool) when the generation has moved (bench/PROFILE.md C6).
  std::shared_ptr<const config::Config> config() const {
    const std::uint64_t generation = config_generation_.load(std::memory_order_acquire);
    if (generation == 0) return std::atomic_load(&config_);  // not published that way yet
    struct Cached {
      std::uint64_t generation = 0;  // process-wide unique: no other Runtime has it
      std::shared_ptr<const config::Config> config;
    };
    thread_local Cached cached;
    if (cached.generation != generation) {
      cached.config = std::atomic_load(&config_);
      cached.generation = generation;
    }
    return cached.config;
  }
  // Replaces the config for config()'s readers. Every change of config_ after the threads start
  // must go through here, or readers that cached the old one keep it.
  void publish_config(std::shared_ptr<const config::Config> next) {
    std::atomic_store(&config_, std::move(next));
    // After the store: a reader that sees the new generation reads the new config.
    config_generation_.store(config_publications_.fetch_add(1) + 1, std::memory_order_release);
  }
  std::shared_ptr<const AuthStore> auth() const { return std::atomic_load(&auth_); }
  // The TLS context for clients (src/tls.hpp), null when client_tls_mode is "disable"; read once
  // per SSLRequest, replaced by a reload.
  std::shared_ptr<asio::ssl::context> client_tls() const { return std::atomic_load(&client_tls_); }
  void set_client_tls(std::shared_ptr<asio::ssl::context> tls) {
    std::atomic_store(&client_tls_, std::move(tls));
  }
  PoolManager& pools() { return *pools_; }
  Metrics& metrics() { return *metrics_; }
  CancelRegistry& cancels() { return cancels_; }
  bool draining() const { return draining_.load(); }

  // Client connections currently open, in every phase from accept on (max_client_conn).
  std::uint32_t clients() const { return gate_->open(); }
  ConnectionGate& gate() { return *gate_; }
  std::atomic<std::uint64_t> clients_accepted{0};
  std::atomic<std::uint64_t> protocol_errors{0};

  // One consistent reading of pools, bulkheads, servers and (if asked) clients.
  Snapshot snapshot(bool with_clients) override;

  // ---- admin console commands (src/runtime_admin.cpp) ----
  std::optional<AdminError> set_bulkhead(std::string_view server, std::string_view name,
                                         std::string_view key, std::string_view value) override;
  // Re-reads the config file (and the auth file): SIGHUP and RELOAD. An invalid file is
  // rejected and the running config kept; changes that need a restart are reported, not applied.
  std::optional<AdminError> reload() override;
  std::optional<AdminError> pause(std::string_view database) override;
  bool pause_settled(std::string_view database) override;
  std::optional<AdminError> resume(std::string_view database) override;
  std::optional<AdminError> kill_client(std::uint32_t id) override;
  std::optional<AdminError> shutdown(bool wait_for_clients) override;

 private:
  awaitable<void> accept_loop(std::shared_ptr<Acceptor> acceptor);
  awaitable<void> maintenance_loop();
  // The circuit breakers' background prober: PoolManager::probe_servers() at the times it asks.
  awaitable<void> probe_loop();
  void wait_for_signal();
  void on_signal(int signo);
  void begin_drain(bool wait_for_clients = false);
  // Publishes a checked config to the pools and to later readers of config().
  std::optional<AdminError> apply(std::shared_ptr<const config::Config> next,
                                  std::shared_ptr<const AuthStore> auth);
  void drain_tick(error_code ec);
  void stop_all();

  std::shared_ptr<const config::Config> config_;
  // 0 until publish_config() is first used (config() then reads config_ every time); afterwards
  // a value unique in the process, changed by every publication.
  std::atomic<std::uint64_t> config_generation_{0};
  static inline std::atomic<std::uint64_t> config_publications_{0};
  std::shared_ptr<const AuthStore> auth_;
  std::shared_ptr<asio::ssl::context> client_tls_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::unique_ptr<ConnectionGate> gate_;  // on contexts_[0], where the listeners run
  std::vector<std::shared_ptr<Acceptor>> acceptors_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<PoolManager> pools_;
  std::unique_ptr<http::HttpServer> http_;  // metrics_listen: /metrics, /status, /
  CancelRegistry cancels_;
  std::atomic<bool> draining_{false};
  std::atomic<std::size_t> next_context_{0};
  std::unique_ptr<asio::signal_set> signals_;
  std::unique_ptr<asio::steady_timer> drain_timer_;
  std::chrono::steady_clock::time_point drain_deadline_{};
  std::mutex reload_mu_;  // serialises reload and SET BULKHEAD (read-modify-publish of config_)
};

}  // namespace sluice
