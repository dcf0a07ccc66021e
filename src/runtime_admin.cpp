// Runtime, part 2: what the admin console and SIGHUP change at run time. Snapshots, reload, live
// bulkhead tuning, pause/resume, killing a client, shutdown. Every entry point may be called from
// any thread; reload and SET BULKHEAD are serialised by reload_mu_ (read, modify, publish the
// config snapshot), and pool changes go through the PoolManager's own lock.
#include "config/auth_file.hpp"
#include "config/keys.hpp"
#include "src/client_session.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"
#include "src/tls.hpp"

#include <algorithm>
#include <charconv>

namespace sluice {

namespace {

AdminError error(std::string sqlstate, std::string message) {
  return AdminError{std::move(sqlstate), std::move(message)};
}

std::optional<std::uint32_t> parse_count(std::string_view text) {
  std::uint32_t v = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return v;
}

// Keeps what a reload may not change (the key table's "reloadable = no"): the old values stay in
// force and each change is reported. Servers cannot be added or removed without a restart either.
std::vector<std::string> keep_restart_only(const config::Config& old, config::Config& next) {
  std::vector<std::string> kept;
  for (const config::ConfigChange& c : config::diff_configs(old, next)) {
    if (!c.reloadable) kept.push_back(c.key);
  }
  next.listen = old.listen;
  next.threads = old.threads;
  next.metrics_listen = old.metrics_listen;
  for (auto it = next.servers.begin(); it != next.servers.end();) {
    auto before = old.servers.find(it->first);
    if (before == old.servers.end()) {
      kept.push_back("servers." + it->first + " (added)");
      it = next.servers.erase(it);
      continue;
    }
    it->second.host = before->second.host;
    it->second.port = before->second.port;
    ++it;
  }
  for (const auto& [name, server] : old.servers) {
    if (!next.servers.contains(name)) {
      kept.push_back("servers." + name + " (removed)");
      next.servers.emplace(name, server);
    }
  }
  for (auto it = next.databases.begin(); it != next.databases.end();) {
    auto before = old.databases.find(it->first);
    if (before != old.databases.end()) {
      it->second.server = before->second.server;
      it->second.dbname = before->second.dbname;
      it->second.user = before->second.user;
      it->second.pool_mode = before->second.pool_mode;
    } else if (!next.servers.contains(it->second.server)) {
      it = next.databases.erase(it);  // its server is new: reported above
      continue;
    }
    ++it;
  }
  std::erase_if(next.bulkheads,
                [&](const config::Bulkhead& b) { return !old.servers.contains(b.server); });
  std::sort(kept.begin(), kept.end());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  return kept;
}

}  // namespace

Snapshot Runtime::snapshot(bool with_clients) {
  Snapshot snap;
  snap.taken = std::chrono::system_clock::now();
  snap.taken_steady = std::chrono::steady_clock::now();
  snap.config = config();
  pools_->fill_snapshot(snap);
  for (const auto& session : cancels_.sessions()) {
    ClientSnapshot c = session->describe();
    ++snap.process.clients_by_state[static_cast<std::size_t>(c.state)];
    if (with_clients) snap.clients.push_back(std::move(c));
  }
  // Sessions still starting up (not yet registered) count as logging in.
  const auto registered = static_cast<std::uint32_t>(
      snap.process.clients_by_state[0] + snap.process.clients_by_state[1] +
      snap.process.clients_by_state[2] + snap.process.clients_by_state[3]);
  const std::uint32_t open = clients();
  if (open > registered) snap.process.clients_by_state[0] += open - registered;
  std::sort(snap.clients.begin(), snap.clients.end(),
            [](const auto& a, const auto& b) { return a.id < b.id; });
  snap.process.clients_accepted = clients_accepted.load();
  snap.process.protocol_errors = protocol_errors.load();
  for (const PoolSnapshot& p : snap.pools) {
    TrafficCounters& t = snap.process.traffic;
    t.transactions += p.traffic.transactions;
    t.queries += p.traffic.queries;
    t.bytes_in += p.traffic.bytes_in;
    t.bytes_out += p.traffic.bytes_out;
    t.transaction_ns += p.traffic.transaction_ns;
    t.query_ns += p.traffic.query_ns;
    t.wait_ns += p.traffic.wait_ns;
  }
  return snap;
}

std::optional<AdminError> Runtime::apply(std::shared_ptr<const config::Config> next,
                                         std::shared_ptr<const AuthStore> auth) {
  std::vector<std::string> errors = pools_->apply_config(*next);
  if (!errors.empty()) {
    std::string why;
    for (const auto& e : errors) why += (why.empty() ? "" : "; ") + e;
    return error("22023", why);
  }
  log::set_level(next->log_level);
  publish_config(std::move(next));
  if (auth) std::atomic_store(&auth_, std::move(auth));
  return std::nullopt;
}

std::optional<AdminError> Runtime::reload() {
  std::lock_guard lock(reload_mu_);
  auto old = config();
  const std::string& path = old->source;
  auto loaded = config::load_config(path);
  if (!loaded) {
    std::string why;
    for (const auto& d : loaded.error()) {
      log::main().error("reload_rejected error=\"{}\"", d.to_string());
      why += (why.empty() ? "" : "; ") + d.to_string();
    }
    return error("F0000", "reload rejected, the running config is kept: " + why);
  }
  config::AuthFile users;
  if (!loaded->auth_file.empty()) {
    auto af = config::load_auth_file(loaded->auth_file);
    if (!af) {
      std::string why;
      for (const auto& d : af.error()) {
        log::main().error("reload_rejected error=\"{}\"", d.to_string());
        why += (why.empty() ? "" : "; ") + d.to_string();
      }
      return error("F0000", "reload rejected, the running config is kept: " + why);
    }
    users = std::move(af.value());
  }
  config::Diagnostics tls_errors;
  auto tls = load_client_tls(*loaded, tls_errors);
  if (!tls_errors.empty()) {
    std::string why;
    for (const auto& d : tls_errors) {
      log::main().error("reload_rejected error=\"{}\"", d.to_string());
      why += (why.empty() ? "" : "; ") + d.to_string();
    }
    return error("F0000", "reload rejected, the running config is kept: " + why);
  }
  config::Config next = std::move(loaded.value());
  for (const std::string& key : keep_restart_only(*old, next)) {
    log::main().warn("reload_needs_restart key={} (the running value is kept)", key);
  }
  const auto changes = config::diff_configs(*old, next);
  auto store = std::make_shared<const AuthStore>(users, next.scram_iterations);
  if (auto err = apply(std::make_shared<const config::Config>(std::move(next)), std::move(store))) {
    log::main().error("reload_rejected error=\"{}\"", err->message);
    err->message = "reload rejected, the running config is kept: " + err->message;
    return err;
  }
  set_client_tls(std::move(tls));  // new TLS clients only; running ones keep their session
  for (const auto& c : changes) {
    log::main().info("reload_changed key={} old={} new={}", c.key, c.old_value, c.new_value);
  }
  log::main().info("reload_done changes={}", changes.size());
  return std::nullopt;
}

std::optional<AdminError> Runtime::set_bulkhead(std::string_view server, std::string_view name,
                                                std::string_view key, std::string_view value) {
  std::lock_guard lock(reload_mu_);
  config::Config next = *config();
  // The bulkhead: by name (and server, when given). An unconfigured `default` becomes configured
  // with the values it had implicitly.
  std::vector<config::Bulkhead*> found;
  for (config::Bulkhead& b : next.bulkheads) {
    if (b.name == name && (server.empty() || b.server == server)) found.push_back(&b);
  }
  if (found.empty() && name == "default") {
    for (const auto& [sname, s] : next.servers) {
      if (server.empty() || sname == server) {
        next.bulkheads.push_back(implicit_default_bulkhead(next, s));
      }
    }
    for (config::Bulkhead& b : next.bulkheads) {
      if (b.name == name && (server.empty() || b.server == server)) found.push_back(&b);
    }
  }
  if (found.empty()) {
    return error("42704", "bulkhead \"" + std::string(name) + "\" does not exist" +
                              (server.empty() ? "" : " on server \"" + std::string(server) + "\""));
  }
  if (found.size() > 1) {
    return error("42P09", "bulkhead \"" + std::string(name) +
                              "\" exists on several servers; write SERVER.NAME");
  }
  config::Bulkhead& b = *found.front();
  const auto bad = [&](std::string_view why) {
    return error("22023", "invalid value for " + std::string(key) + ": \"" + std::string(value) +
                              "\" (" + std::string(why) + ")");
  };
  if (key == "max_wait" || key == "statement_timeout" || key == "idle_transaction_timeout") {
    auto d = config::parse_duration(value);
    if (!d) return bad("a duration such as \"250ms\" or \"2s\"");
    if (key == "max_wait") {
      if (d->count() <= 0) return bad("must be positive");
      b.max_wait = *d;
    } else if (key == "statement_timeout") {
      b.statement_timeout = *d;
    } else {
      b.idle_transaction_timeout = *d;
    }
  } else {
    auto n = parse_count(value);
    if (!n) return bad("a whole number");
    if (key == "reserved") {
      b.reserved = *n;
    } else if (key == "max") {
      if (*n == 0) return bad("must be at least 1");
      b.max = *n;
    } else if (key == "queue_depth") {
      b.queue_depth = *n;
    } else if (key == "priority") {
      b.priority = *n;
    } else if (key == "max_clients") {
      b.max_clients = *n;
    } else {
      return error("42704", "unknown bulkhead setting \"" + std::string(key) + "\"");
    }
  }
  const std::string label = b.server + "." + b.name;
  if (auto err = apply(std::make_shared<const config::Config>(std::move(next)), nullptr)) {
    return err;
  }
  log::main().info("bulkhead_set bulkhead={} key={} value={}", label, key, value);
  return std::nullopt;
}

std::optional<AdminError> Runtime::pause(std::string_view database) {
  if (!database.empty() && config()->find_database(std::string(database)) == nullptr) {
    return error("3D000", "database \"" + std::string(database) + "\" does not exist");
  }
  pools_->set_paused(std::string(database), true);
  log::main().info("paused database={}", database.empty() ? "*" : database);
  return std::nullopt;
}

bool Runtime::pause_settled(std::string_view database) {
  return pools_->pause_settled(std::string(database));
}

std::optional<AdminError> Runtime::resume(std::string_view database) {
  if (!database.empty() && config()->find_database(std::string(database)) == nullptr) {
    return error("3D000", "database \"" + std::string(database) + "\" does not exist");
  }
  pools_->set_paused(std::string(database), false);
  log::main().info("resumed database={}", database.empty() ? "*" : database);
  return std::nullopt;
}

std::optional<AdminError> Runtime::kill_client(std::uint32_t id) {
  auto session = cancels_.find(id);
  if (!session) return error("42704", "client " + std::to_string(id) + " does not exist");
  log::main().info("kill_client session={}", id);
  session->terminate("57P01", "terminating connection due to administrator command");
  return std::nullopt;
}

std::optional<AdminError> Runtime::shutdown(bool wait_for_clients) {
  asio::post(*contexts_[0], [this, wait_for_clients] {
    if (wait_for_clients) {
      if (!draining_) begin_drain(true);
    } else {
      log::main().info("shutdown mode=immediate reason=admin");
      stop_all();
    }
  });
  return std::nullopt;
}

}  // namespace sluice
