// Sluice's configuration: an immutable snapshot parsed from a TOML file.
//
// Every key is declared once in the key table (config/keys.hpp); the parser, validation,
// `--check-config`, SHOW CONFIG and the README reference all come from that table. A Config is
// built once by parse_config() and then shared read-only as std::shared_ptr<const Config>; reload
// builds a new one. Pure: no I/O except reading the file in load_config(); any thread.
// Durations are std::chrono::milliseconds; sizes are byte counts.
#pragma once

#include "base/result.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::config {

using Duration = std::chrono::milliseconds;

enum class AuthType { Trust, Md5, ScramSha256 };
// TLS towards clients: off; accepted when a client asks (allow and prefer are the same on this
// side, as in PgBouncer); or required of every TCP client (Unix-socket clients never need it).
enum class ClientTlsMode { Disable, Allow, Prefer, Require };
enum class PoolMode { Session, Transaction };
// What /status and the dashboard reveal: Redacted leaves out server addresses and user names.
enum class StatusDetail { Redacted, Full };

// A listen address: TCP host:port, or a Unix-socket directory (socket file .s.PGSQL.<port>).
struct ListenAddress {
  bool is_unix = false;
  std::string host;        // TCP: address ("127.0.0.1", "::1", "0.0.0.0", "*")
  std::uint16_t port = 0;  // TCP port, or the port in the Unix socket's file name
  std::string unix_dir;    // Unix: directory
  std::string to_string() const;
};

struct Server {
  std::string name;
  std::string host = "127.0.0.1";  // host name, IP, or a directory (starts with '/') for Unix
  std::uint16_t port = 5432;
  std::uint32_t max_connections = 100;
  std::uint32_t max_connect_attempts = 4;  // concurrent connection attempts at most
  Duration connect_timeout{5000};
  Duration connect_retry_delay{1000};  // back-off after a failed connect
};

struct Database {
  std::string name;      // what clients put in dbname
  std::string server;    // key into Config::servers
  std::string dbname;    // backend database name (defaults to `name`)
  std::string user;      // if set, every client of this database uses this backend user
  std::string password;  // password for `user` towards the backend (plain, md5 or empty)
  PoolMode pool_mode = PoolMode::Session;
  std::uint32_t pool_size = 20;
  std::uint32_t min_pool_size = 0;
  Duration server_lifetime{3600 * 1000};
  Duration server_idle_timeout{600 * 1000};
  std::string server_reset_query = "DISCARD ALL";
  Duration idle_transaction_timeout{0};  // 0 = disabled
};

// What classifies a client into a bulkhead. Each list matches when it is empty or when any entry
// matches; a bulkhead matches when all its lists do. A client goes to the first bulkhead of its
// server, in file order, that matches; a bulkhead whose lists are all empty receives no clients
// (except `default`, which receives everyone unmatched). Name patterns are exact or end in one
// `*` (prefix match); client_cidr entries are "ADDR/BITS" (IPv4 or IPv6) or a bare address.
struct BulkheadMatch {
  std::vector<std::string> application_name;
  std::vector<std::string> user;
  std::vector<std::string> database;
  std::vector<std::string> client_cidr;
  bool empty() const {
    return application_name.empty() && user.empty() && database.empty() && client_cidr.empty();
  }
};

// One [[bulkheads]] entry: a priority class of work on one server (see docs/ADMISSION.md).
struct Bulkhead {
  std::string name;
  std::string server;          // key into Config::servers (may be omitted with one server)
  int line = 0;                // where the entry starts in the file (for later diagnostics)
  std::uint32_t priority = 0;  // lower is served first
  std::uint32_t reserved = 0;
  std::optional<std::uint32_t> max;  // absent: the server's max_connections (parse_config
                                     // fills that in, so a parsed Config always has a value)
  std::uint32_t queue_depth = 128;
  Duration max_wait{5000};
  Duration statement_timeout{0};                 // 0 = none
  Duration idle_transaction_timeout{0};          // 0 = the database's setting
  std::uint32_t max_clients = 0;                 // 0 = unlimited
  std::uint32_t new_connections_per_second = 0;  // 0 = no limit
  std::uint32_t new_connections_burst = 0;       // 0 = same as the rate (0 needs no rate;
                                                 // a burst > 0 without a rate is an error)
  std::uint32_t new_transactions_per_second = 0;
  std::uint32_t new_transactions_burst = 0;
  bool adaptive_lifo = true;
  Duration lifo_target{0};  // 0 = max_wait / 5
  BulkheadMatch match;
};

struct Config {
  std::string source;  // path of the file this came from ("" if parsed from a string)

  // [global] keys, top level of the file.
  std::vector<ListenAddress> listen = {ListenAddress{false, "127.0.0.1", 6432, ""}};
  AuthType auth_type = AuthType::ScramSha256;
  std::string auth_file;  // resolved relative to the config file's directory
  ClientTlsMode client_tls_mode = ClientTlsMode::Disable;
  std::string client_tls_cert_file;  // PEM certificate chain; relative to the config's directory
  std::string client_tls_key_file;   // PEM private key; relative to the config's directory
  std::vector<std::string> admin_users;
  std::vector<std::string> stats_users;
  std::uint32_t max_client_conn = 10000;
  Duration client_login_timeout{10000};  // "0": 60 s (login_time_limit(), src/connection_gate)
  // Per peer (IPv4 address, IPv6 /64, all Unix-socket clients together), before authentication:
  std::uint32_t max_peer_logins = 1000;  // connections still logging in at once; 0 = no limit
  std::uint32_t login_peer_rate = 1000;  // new connections a second, in bursts as large; 0 = off
  Duration shutdown_timeout{30000};
  Duration query_wait_timeout{120000};  // a client waiting for a backend longer gets 53300
  std::uint32_t max_message_size = 64 * 1024 * 1024;
  std::uint32_t threads = 0;  // 0 = number of cores
  std::string log_level = "info";
  std::uint32_t scram_iterations = 4096;        // for verifiers derived from plain-text secrets
  std::uint32_t max_prepared_statements = 256;  // per backend, transaction pooling
  std::uint32_t max_client_statements = 2000;   // per client, transaction pooling
  std::uint64_t max_client_statement_bytes = 16 * 1024 * 1024;  // their bodies, per client
  std::optional<ListenAddress> metrics_listen;  // HTTP: /metrics, /status, / (dashboard)
  StatusDetail status_detail = StatusDetail::Redacted;
  std::string status_password;                 // "" = /status and / need no credentials
  Duration statement_timeout_grace{1000};      // Sluice cancels a statement this long past
                                               // its bulkhead's statement_timeout
  Duration pool_idle_timeout{10 * 60 * 1000};  // an unused (database, user) pool is removed
  // auth_query: users missing from auth_file are looked up on the server by auth_user.
  std::string auth_user;  // "" = off
  std::string auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1";
  std::string auth_dbname;               // "" = the client's database's dbname on its server
  Duration auth_query_cache{30 * 1000};  // how long a looked-up secret is reused; 0 = never
  // auth_user's connections to each server at most, set aside from its max_connections.
  std::uint32_t auth_query_pool_size = 2;
  std::uint32_t auth_query_peer_rate = 20;  // lookups a second per client address; 0 = no limit

  std::map<std::string, Server> servers;
  std::map<std::string, Database> databases;
  std::vector<Bulkhead> bulkheads;  // in file order (equal priorities are served in this order)

  const Database* find_database(const std::string& name) const;
  // The slots of `server` for backends: its max_connections less the auth_query_pool_size
  // connections set aside for auth_user while auth_user is set (the parser checks that at least
  // one slot is left).
  std::uint32_t backend_capacity(const Server& server) const;
};

// One error: where and why. Printed as "FILE:LINE: key: reason" (LINE omitted when unknown).
struct Diagnostic {
  std::string file;
  int line = 0;
  std::string key;  // dotted path, e.g. "databases.app.pool_size"
  std::string reason;
  std::string to_string() const;
};
using Diagnostics = std::vector<Diagnostic>;

// Parses and validates TOML text. `source` names the file in diagnostics and anchors relative
// paths (auth_file). Unknown keys, wrong types, bad durations, out-of-range values and dangling
// references (a database naming an unknown server) are errors; all errors found are returned.
Result<Config, Diagnostics> parse_config(const std::string& text, const std::string& source);

// Reads `path` and calls parse_config. A missing/unreadable file is a Diagnostic, not a throw.
Result<Config, Diagnostics> load_config(const std::string& path);

// Parses "250ms", "30s", "10m", "1h", "2d" (and "0"). Returns nullopt on anything else.
// Blanks are allowed between number and unit ("30 s"), nowhere else. Negative numbers, decimals,
// a missing unit (except for "0") and values above kMaxDuration are rejected.
std::optional<Duration> parse_duration(std::string_view text);

// The longest accepted duration, 3650 days: deadlines computed as steady_clock::now() + d must not
// overflow the clock's 64-bit nanosecond count (about 292 years). Use "0" to disable a timeout.
inline constexpr Duration kMaxDuration{3650LL * 24 * 3600 * 1000};

// The inverse of parse_duration: the largest exact unit ("90s" -> "90s", 3600000ms -> "1h").
std::string format_duration(Duration d);

}  // namespace sluice::config
