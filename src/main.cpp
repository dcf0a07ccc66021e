// sluice: a PostgreSQL connection pooler built for admission control.
//
//   sluice --config FILE           run in the foreground
//   sluice --check-config FILE     validate FILE (and its auth file) and exit
//   sluice --print-config-reference  print the configuration reference (Markdown)
//   sluice --version
#include "config/auth_file.hpp"
#include "config/config.hpp"
#include "config/keys.hpp"
#include "src/auth_store.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"
#include "src/tls.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace {

void usage(std::ostream& out) {
  out << "usage: sluice --config FILE\n"
         "       sluice --check-config FILE\n"
         "       sluice --print-config-reference\n"
         "       sluice --version\n";
}

void print_diagnostics(const sluice::config::Diagnostics& diags) {
  for (const auto& d : diags) std::cerr << d.to_string() << "\n";
}

// Loads the config and the auth file it names; prints errors and returns nullptr on failure.
struct Loaded {
  std::shared_ptr<const sluice::config::Config> config;
  std::shared_ptr<const sluice::AuthStore> auth;
  std::shared_ptr<boost::asio::ssl::context> tls;  // null: client_tls_mode "disable"
};

std::optional<Loaded> load(const std::string& path) {
  auto cfg = sluice::config::load_config(path);
  if (!cfg) {
    print_diagnostics(cfg.error());
    return std::nullopt;
  }
  sluice::config::AuthFile users;
  if (!cfg->auth_file.empty()) {
    auto af = sluice::config::load_auth_file(cfg->auth_file);
    if (!af) {
      print_diagnostics(af.error());
      return std::nullopt;
    }
    users = std::move(af.value());
  }
  sluice::config::Diagnostics tls_errors;
  auto tls = sluice::load_client_tls(*cfg, tls_errors);
  if (!tls_errors.empty()) {
    print_diagnostics(tls_errors);
    return std::nullopt;
  }
  auto store = std::make_shared<const sluice::AuthStore>(users, cfg->scram_iterations);
  return Loaded{std::make_shared<const sluice::config::Config>(std::move(cfg.value())),
                std::move(store), std::move(tls)};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::cout << "sluice " << SLUICE_VERSION << "\n";
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "--print-config-reference") == 0) {
    std::cout << sluice::config::render_reference_markdown();
    return 0;
  }
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    usage(std::cout);
    return 0;
  }
  if (argc != 3 ||
      (std::strcmp(argv[1], "--config") != 0 && std::strcmp(argv[1], "--check-config") != 0)) {
    usage(std::cerr);
    return 2;
  }
  auto loaded = load(argv[2]);
  if (!loaded) return 1;
  if (std::strcmp(argv[1], "--check-config") == 0) {
    std::cout << argv[2] << ": ok\n";
    return 0;
  }
  sluice::log::init_logging(loaded->config->log_level);
  try {
    // The runtime is never destroyed: once run() returns, every client has been answered or
    // closed, and tearing down event loops whose pending operations reference sockets of other
    // loops would only risk a hang or a crash on the way out. The kernel closes what is left.
    auto* runtime = new sluice::Runtime(loaded->config, loaded->auth);
    runtime->set_client_tls(loaded->tls);
    int code = runtime->run();
    spdlog::shutdown();
    std::fflush(nullptr);
    std::_Exit(code);
  } catch (const std::exception& e) {
    sluice::log::main().critical("startup_failed reason=\"{}\"", e.what());
    spdlog::shutdown();
    return 1;
  }
}
