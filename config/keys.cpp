// The key table itself, and the generic helpers that store and show a key through a member
// pointer. Adding a key means adding one entry here (and, if new, a field in config.hpp).
#include "config/keys.hpp"

#include "config/cidr.hpp"
#include "config/listen.hpp"
#include "config/name_pattern.hpp"

#include <algorithm>
#include <filesystem>
#include <type_traits>

namespace sluice::config {
namespace {

// ---- TOML text for show() ----------------------------------------------------------------------

std::string toml_text(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out += kHex[(c >> 4) & 0xf];
          out += kHex[c & 0xf];
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}
[[maybe_unused]] std::string toml_text(bool b) { return b ? "true" : "false"; }
std::string toml_text(Duration d) { return toml_text(format_duration(d)); }
template <typename T>
requires std::is_integral_v<T> std::string toml_text(T n) { return std::to_string(n); }
std::string toml_text(const std::vector<std::string>& list) {
  std::string out = "[";
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (i > 0) out += ", ";
    out += toml_text(list[i]);
  }
  return out + "]";
}

// ---- store/show through a member pointer ------------------------------------------------------

template <typename M>
struct Member;
template <typename C, typename F>
struct Member<F C::*> {
  using Class = C;
  using Field = F;
};

// The object of type C a target refers to (works for KeyTarget and ConstKeyTarget).
template <typename C, typename Target>
auto* object_of(Target& target) {
  if constexpr (std::is_same_v<C, Config>) {
    return &target.config;
  } else if constexpr (std::is_same_v<C, Server>) {
    return target.server;
  } else if constexpr (std::is_same_v<C, Database>) {
    return target.database;
  } else if constexpr (std::is_same_v<C, Bulkhead>) {
    return target.bulkhead;
  } else {
    static_assert(std::is_same_v<C, BulkheadMatch>);
    return &target.bulkhead->match;
  }
}

template <auto M>
std::optional<std::string> set(KeyTarget& target, const KeyValue& value) {
  using F = typename Member<decltype(M)>::Field;
  auto& field = object_of<typename Member<decltype(M)>::Class>(target)->*M;
  if constexpr (std::is_same_v<F, bool>) {
    field = std::get<bool>(value);
  } else if constexpr (std::is_integral_v<F>) {
    field = static_cast<F>(std::get<std::int64_t>(value));  // the range check came first
  } else if constexpr (std::is_same_v<F, Duration>) {
    field = std::get<Duration>(value);
  } else if constexpr (std::is_same_v<F, std::string>) {
    field = std::get<std::string>(value);
  } else {
    field = std::get<std::vector<std::string>>(value);
  }
  return std::nullopt;
}

template <auto M>
std::optional<std::string> set_non_empty(KeyTarget& target, const KeyValue& value) {
  if (std::get<std::string>(value).empty()) return "must not be empty";
  return set<M>(target, value);
}

template <auto M>
std::string show(const ConstKeyTarget& target) {
  return toml_text(object_of<typename Member<decltype(M)>::Class>(target)->*M);
}

// ---- keys with their own conversion -----------------------------------------------------------

constexpr std::string_view kAuthTypes[] = {"trust", "md5", "scram-sha-256"};  // AuthType order
constexpr std::string_view kPoolModes[] = {"session", "transaction"};         // PoolMode order
constexpr std::string_view kClientTlsModes[] = {"disable", "allow", "prefer",
                                                "require"};  // ClientTlsMode order
constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};  // spdlog's names
constexpr std::string_view kStatusDetails[] = {"redacted", "full"};      // StatusDetail order

std::size_t index_of(std::span<const std::string_view> values, const std::string& value) {
  std::size_t i = 0;
  while (i < values.size() && values[i] != value) ++i;
  return i;  // the parser checked membership already
}

std::optional<std::string> set_listen(KeyTarget& target, const KeyValue& value) {
  auto parsed = parse_listen(std::get<std::vector<std::string>>(value));
  if (!parsed) return parsed.error();
  target.config.listen = std::move(*parsed);
  return std::nullopt;
}
std::string show_listen(const ConstKeyTarget& target) {
  std::vector<std::string> entries;
  for (const ListenAddress& address : target.config.listen) entries.push_back(address.to_string());
  return toml_text(entries);
}

std::optional<std::string> set_auth_type(KeyTarget& target, const KeyValue& value) {
  target.config.auth_type =
      static_cast<AuthType>(index_of(kAuthTypes, std::get<std::string>(value)));
  return std::nullopt;
}
std::string show_auth_type(const ConstKeyTarget& target) {
  return toml_text(std::string(kAuthTypes[static_cast<std::size_t>(target.config.auth_type)]));
}

// Relative paths are anchored at the config file's directory, so the pooler finds its auth file
// and certificates whatever its working directory is (the config's `source` is set before any key
// is applied).
template <auto M>
std::optional<std::string> set_path(KeyTarget& target, const KeyValue& value) {
  const std::filesystem::path path = std::get<std::string>(value);
  if (path.empty()) return "must not be empty";
  if (path.is_relative()) {
    const std::filesystem::path dir = std::filesystem::path(target.config.source).parent_path();
    target.config.*M = (dir / path).lexically_normal().string();
  } else {
    target.config.*M = path.string();
  }
  return std::nullopt;
}

std::optional<std::string> set_client_tls_mode(KeyTarget& target, const KeyValue& value) {
  target.config.client_tls_mode =
      static_cast<ClientTlsMode>(index_of(kClientTlsModes, std::get<std::string>(value)));
  return std::nullopt;
}
std::string show_client_tls_mode(const ConstKeyTarget& target) {
  return toml_text(
      std::string(kClientTlsModes[static_cast<std::size_t>(target.config.client_tls_mode)]));
}

std::optional<std::string> set_pool_mode(KeyTarget& target, const KeyValue& value) {
  target.database->pool_mode =
      static_cast<PoolMode>(index_of(kPoolModes, std::get<std::string>(value)));
  return std::nullopt;
}
std::string show_pool_mode(const ConstKeyTarget& target) {
  return toml_text(std::string(kPoolModes[static_cast<std::size_t>(target.database->pool_mode)]));
}

std::optional<std::string> set_metrics_listen(KeyTarget& target, const KeyValue& value) {
  const std::string& text = std::get<std::string>(value);
  if (text.empty()) {
    target.config.metrics_listen.reset();
    return std::nullopt;
  }
  if (text.starts_with("unix:")) {
    return "invalid address \"" + text +
           "\": a Unix socket is not supported here; use HOST:PORT, [IPv6]:PORT or *:PORT";
  }
  auto parsed = parse_tcp_address(text);
  if (!parsed) return "invalid address \"" + text + "\": " + parsed.error();
  target.config.metrics_listen = std::move(*parsed);
  return std::nullopt;
}
std::string show_metrics_listen(const ConstKeyTarget& target) {
  const std::optional<ListenAddress>& address = target.config.metrics_listen;
  return toml_text(address ? address->to_string() : std::string());
}

std::optional<std::string> set_status_detail(KeyTarget& target, const KeyValue& value) {
  target.config.status_detail =
      static_cast<StatusDetail>(index_of(kStatusDetails, std::get<std::string>(value)));
  return std::nullopt;
}
std::string show_status_detail(const ConstKeyTarget& target) {
  return toml_text(
      std::string(kStatusDetails[static_cast<std::size_t>(target.config.status_detail)]));
}

// A password anyone who reaches metrics_listen may guess at: long enough that guessing is
// hopeless (the reason never repeats the value).
std::optional<std::string> set_status_password(KeyTarget& target, const KeyValue& value) {
  const std::string& text = std::get<std::string>(value);
  if (!text.empty() && text.size() < 16) {
    return "must be empty or at least 16 characters long (e.g. `openssl rand -hex 16`)";
  }
  target.config.status_password = text;
  return std::nullopt;
}

std::optional<std::string> set_bulkhead_name(KeyTarget& target, const KeyValue& value) {
  const std::string& name = std::get<std::string>(value);
  if (std::optional<std::string> reason = bulkhead_name_error(name)) return reason;
  target.bulkhead->name = name;
  return std::nullopt;
}

std::optional<std::string> set_bulkhead_max(KeyTarget& target, const KeyValue& value) {
  target.bulkhead->max = static_cast<std::uint32_t>(std::get<std::int64_t>(value));
  return std::nullopt;
}
// parse_config fills in an absent max; a Config built by hand may still lack it.
std::string show_bulkhead_max(const ConstKeyTarget& target) {
  if (target.bulkhead->max) return toml_text(*target.bulkhead->max);
  const auto server = target.config.servers.find(target.bulkhead->server);
  if (server == target.config.servers.end()) return toml_text(std::string());
  return toml_text(server->second.max_connections);
}

template <auto M>
std::optional<std::string> set_name_patterns(KeyTarget& target, const KeyValue& value) {
  for (const std::string& pattern : std::get<std::vector<std::string>>(value)) {
    if (std::optional<std::string> reason = name_pattern_error(pattern)) return reason;
  }
  return set<M>(target, value);
}

std::optional<std::string> set_client_cidr(KeyTarget& target, const KeyValue& value) {
  for (const std::string& entry : std::get<std::vector<std::string>>(value)) {
    if (!parse_cidr(entry)) {
      return "invalid address range \"" + entry +
             "\": expected an IPv4 or IPv6 address, optionally with /BITS (at most 32 or 128)";
    }
  }
  return set<&BulkheadMatch::client_cidr>(target, value);
}

// Database::server, Database::dbname, Bulkhead::server and Bulkhead::max are filled in after
// parsing when absent (see parse_config), so show() reports the effective value.

using S = Section;
using T = KeyType;
constexpr bool kReload = true;
constexpr bool kRestart = false;
constexpr bool kSecret = true;  // KeyInfo::secret, the last field: written only where it is true
constexpr std::int64_t kGiB = 1024 * 1024 * 1024;
constexpr std::int64_t kMaxMs = kMaxDuration.count();

// clang-format off
constexpr KeyInfo kKeys[] = {
  // ---- top level ----
  {S::Global, "listen", T::StringList, R"(["127.0.0.1:6432"])", "", kRestart,
   "Client addresses: `HOST:PORT`, `[IPv6]:PORT`, `*:PORT`, or `unix:DIR` for the socket "
   "`DIR/.s.PGSQL.PORT` (PORT of the first TCP entry, else 6432)",
   {}, 0, 0, set_listen, show_listen},
  {S::Global, "auth_type", T::Enum, R"("scram-sha-256")", "", kReload,
   "How clients authenticate; with `md5`, a user whose secret is a SCRAM verifier gets SCRAM "
   "(as in PostgreSQL)",
   kAuthTypes, 0, 0, set_auth_type, show_auth_type},
  {S::Global, "auth_file", T::String, "", "", kReload,
   "File of `\"user\" \"secret\"` lines (plain text, md5 hash or SCRAM verifier); relative to "
   "the config file's directory; required unless `auth_type` is `trust`",
   {}, 0, 0, set_path<&Config::auth_file>, show<&Config::auth_file>},
  {S::Global, "client_tls_mode", T::Enum, R"("disable")", "", kReload,
   "TLS towards clients: `disable` answers a client's SSLRequest with N; `allow` and `prefer` "
   "accept TLS when the client asks for it; `require` also refuses TCP clients that do not "
   "(28000; Unix-socket clients and cancel requests never need it)",
   kClientTlsModes, 0, 0, set_client_tls_mode, show_client_tls_mode},
  {S::Global, "client_tls_cert_file", T::String, "", "", kReload,
   "PEM certificate (chain) Sluice presents to TLS clients; relative to the config file's "
   "directory; required unless `client_tls_mode` is `disable`; a reload reads it again",
   {}, 0, 0, set_path<&Config::client_tls_cert_file>, show<&Config::client_tls_cert_file>},
  {S::Global, "client_tls_key_file", T::String, "", "", kReload,
   "PEM private key of `client_tls_cert_file` (unencrypted); relative to the config file's "
   "directory; required unless `client_tls_mode` is `disable`",
   {}, 0, 0, set_path<&Config::client_tls_key_file>, show<&Config::client_tls_key_file>},
  {S::Global, "admin_users", T::StringList, "[]", "", kReload,
   "Users who may run every command of the admin console (database `sluice`)",
   {}, 0, 0, set<&Config::admin_users>, show<&Config::admin_users>},
  {S::Global, "stats_users", T::StringList, "[]", "", kReload,
   "Users who may run the admin console's read-only `SHOW` commands",
   {}, 0, 0, set<&Config::stats_users>, show<&Config::stats_users>},
  {S::Global, "max_client_conn", T::Integer, "10000", "", kReload,
   "Most client connections at once, counted from accept; up to 16 more are accepted to be "
   "refused with 53300 (or to reach the admin console), then Sluice stops accepting until one "
   "closes",
   {}, 1, 1000000, set<&Config::max_client_conn>, show<&Config::max_client_conn>},
  {S::Global, "client_login_timeout", T::Interval, R"("10s")", "", kReload,
   "Time a client has from connecting to finishing authentication; `\"0\"` means 60s (an "
   "unauthenticated connection is never kept longer unless a longer time is set)",
   {}, 0, kMaxDuration.count(), set<&Config::client_login_timeout>,
   show<&Config::client_login_timeout>},
  {S::Global, "max_peer_logins", T::Integer, "1000", "", kReload,
   "Connections one client address (IPv6: its /64; Unix sockets: all together) may have "
   "logging in (accepted, not yet authenticated) at once; more are refused with 53300; 0: no "
   "limit",
   {}, 0, 1000000, set<&Config::max_peer_logins>, show<&Config::max_peer_logins>},
  {S::Global, "login_peer_rate", T::Integer, "1000", "", kReload,
   "New connections a second one client address (as for `max_peer_logins`) may open, in "
   "bursts of as many; more are refused with 53300; 0: no limit",
   {}, 0, 1000000, set<&Config::login_peer_rate>, show<&Config::login_peer_rate>},
  {S::Global, "shutdown_timeout", T::Interval, R"("30s")", "", kReload,
   "After SIGTERM, how long sessions may finish before they are closed with 57P01",
   {}, 0, kMaxDuration.count(), set<&Config::shutdown_timeout>, show<&Config::shutdown_timeout>},
  {S::Global, "query_wait_timeout", T::Interval, R"("2m")", "", kReload,
   "Longest wait for a backend connection; a client waiting longer gets 53300; `\"0\"` disables",
   {}, 0, kMaxDuration.count(), set<&Config::query_wait_timeout>,
   show<&Config::query_wait_timeout>},
  {S::Global, "max_message_size", T::Integer, "67108864", "bytes", kReload,
   "Largest protocol message accepted; a longer one is a protocol violation (08P01)",
   {}, 1024, kGiB, set<&Config::max_message_size>, show<&Config::max_message_size>},
  {S::Global, "threads", T::Integer, "0", "", kRestart,
   "Worker threads; 0 means one per CPU core",
   {}, 0, 256, set<&Config::threads>, show<&Config::threads>},
  {S::Global, "log_level", T::Enum, R"("info")", "", kReload,
   "Least severe level that is logged",
   kLogLevels, 0, 0, set<&Config::log_level>, show<&Config::log_level>},
  {S::Global, "scram_iterations", T::Integer, "4096", "", kReload,
   "PBKDF2 iterations of the SCRAM verifiers derived from plain-text secrets",
   {}, 1, 10000000, set<&Config::scram_iterations>, show<&Config::scram_iterations>},
  {S::Global, "max_prepared_statements", T::Integer, "256", "", kReload,
   "Named prepared statements kept per backend connection under transaction pooling (least "
   "recently used closed first); 0: no limit",
   {}, 0, 1000000, set<&Config::max_prepared_statements>,
   show<&Config::max_prepared_statements>},
  {S::Global, "max_client_statements", T::Integer, "2000", "", kReload,
   "Named prepared statements one client may hold under transaction pooling; a Parse beyond "
   "them is refused with 53400 (drivers cache far fewer: asyncpg 100, pgJDBC 256); 0: no limit",
   {}, 0, 10000000, set<&Config::max_client_statements>,
   show<&Config::max_client_statements>},
  {S::Global, "max_client_statement_bytes", T::Integer, "16777216", "bytes", kReload,
   "Bytes of statement text one client's named prepared statements may hold in all under "
   "transaction pooling; a Parse beyond them is refused with 53400; 0: no limit",
   {}, 0, 64 * kGiB, set<&Config::max_client_statement_bytes>,
   show<&Config::max_client_statement_bytes>},
  {S::Global, "metrics_listen", T::String, R"("")", "", kRestart,
   "HTTP address for `/metrics`, `/status` and the dashboard `/`: `HOST:PORT`, `[IPv6]:PORT` or "
   "`*:PORT` (TCP only); empty: off",
   {}, 0, 0, set_metrics_listen, show_metrics_listen},
  {S::Global, "status_detail", T::Enum, R"("redacted")", "", kReload,
   "What `/status` and the dashboard show: `redacted` leaves out server addresses and user "
   "names (a pool row per database, its users summed); `full` shows every (database, user) "
   "pool and each server's `host` and `port`; `/metrics` never has either",
   kStatusDetails, 0, 0, set_status_detail, show_status_detail},
  {S::Global, "status_password", T::String, R"("")", "", kReload,
   "If set (at least 16 characters), `/status` and the dashboard `/` answer 401 unless the "
   "request carries it: HTTP Basic with any user name, or `Authorization: Bearer`; `/metrics` "
   "and `/healthz` stay open; empty: no credentials needed",
   {}, 0, 0, set_status_password, show<&Config::status_password>, kSecret},
  {S::Global, "statement_timeout_grace", T::Interval, R"("1s")", "", kReload,
   "Sluice cancels a statement that runs this long past its bulkhead's `statement_timeout` (a "
   "backstop for the database's own timeout)",
   {}, 0, kMaxMs, set<&Config::statement_timeout_grace>, show<&Config::statement_timeout_grace>},
  {S::Global, "pool_idle_timeout", T::Interval, R"("10m")", "", kReload,
   "A (database, user) pool that no client has used for this long and that has no backend "
   "connection left (see `server_idle_timeout`) is removed, and made again by its next client "
   "(its SHOW POOLS and SHOW STATS rows go; the process totals keep its traffic); a database "
   "with a fixed `user` keeps its pool; `\"0\"` disables",
   {}, 0, kMaxMs, set<&Config::pool_idle_timeout>, show<&Config::pool_idle_timeout>},
  {S::Global, "auth_user", T::String, R"("")", "", kReload,
   "Role that runs `auth_query` for users missing from `auth_file` (its password: its plain-text "
   "`auth_file` entry, or none); empty: off",
   {}, 0, 0, set<&Config::auth_user>, show<&Config::auth_user>},
  {S::Global, "auth_query", T::String,
   R"("SELECT usename, passwd FROM pg_shadow WHERE usename = $1")", "", kReload,
   "Query returning (user, secret) for the user name `$1`; better a SECURITY DEFINER function "
   "than `pg_shadow`",
   {}, 0, 0, set_non_empty<&Config::auth_query>, show<&Config::auth_query>},
  {S::Global, "auth_dbname", T::String, R"("")", "", kReload,
   "Database `auth_query` runs in, on the server of the client's database; empty: that "
   "database's `dbname`",
   {}, 0, 0, set<&Config::auth_dbname>, show<&Config::auth_dbname>},
  {S::Global, "auth_query_cache", T::Interval, R"("30s")", "", kReload,
   "How long a secret (or its absence) found by `auth_query` is reused; `\"0\"` disables",
   {}, 0, kMaxMs, set<&Config::auth_query_cache>, show<&Config::auth_query_cache>},
  {S::Global, "auth_query_pool_size", T::Integer, "2", "", kReload,
   "Connections `auth_user` holds to each server at most, reused by every lookup and closed "
   "after 60 s idle; while `auth_user` is set they are taken from the server's "
   "`max_connections`; a lookup finding them busy waits (at most `client_login_timeout`)",
   {}, 1, 100, set<&Config::auth_query_pool_size>, show<&Config::auth_query_pool_size>},
  {S::Global, "auth_query_peer_rate", T::Integer, "20", "", kReload,
   "`auth_query` lookups per second one client address (IPv6: its /64) may start, in bursts of "
   "twice that; cached and coalesced ones are free; past it a user is answered as unknown; "
   "0: no limit",
   {}, 0, 100000, set<&Config::auth_query_peer_rate>, show<&Config::auth_query_peer_rate>},

  // ---- [servers.NAME]: one PostgreSQL server, one capacity domain ----
  {S::Server, "host", T::String, R"("127.0.0.1")", "", kRestart,
   "Host name or IP address of PostgreSQL, or a Unix-socket directory (starting with `/`)",
   {}, 0, 0, set_non_empty<&Server::host>, show<&Server::host>},
  {S::Server, "port", T::Integer, "5432", "", kRestart,
   "PostgreSQL's port (for a Unix socket, the number in `.s.PGSQL.PORT`)",
   {}, 1, 65535, set<&Server::port>, show<&Server::port>},
  {S::Server, "max_connections", T::Integer, "100", "", kReload,
   "Most backend connections Sluice opens to this server, over all its pools",
   {}, 1, 100000, set<&Server::max_connections>, show<&Server::max_connections>},
  {S::Server, "max_connect_attempts", T::Integer, "4", "", kReload,
   "Most connection attempts to this server in progress at once",
   {}, 1, 1000, set<&Server::max_connect_attempts>, show<&Server::max_connect_attempts>},
  {S::Server, "connect_timeout", T::Interval, R"("5s")", "", kReload,
   "Time allowed to connect to and authenticate with the server",
   {}, 1, kMaxDuration.count(), set<&Server::connect_timeout>, show<&Server::connect_timeout>},
  {S::Server, "connect_retry_delay", T::Interval, R"("1s")", "", kReload,
   "Back-off after a failed connect, during which clients fail fast instead of waiting",
   {}, 0, kMaxDuration.count(), set<&Server::connect_retry_delay>,
   show<&Server::connect_retry_delay>},

  // ---- [databases.NAME]: what clients put in dbname ----
  {S::Database, "server", T::String, "", "", kRestart,
   "The `[servers.NAME]` this database connects to; may be omitted when only one server exists",
   {}, 0, 0, set_non_empty<&Database::server>, show<&Database::server>},
  {S::Database, "dbname", T::String, "", "", kRestart,
   "Database name on the server; defaults to NAME",
   {}, 0, 0, set_non_empty<&Database::dbname>, show<&Database::dbname>},
  {S::Database, "user", T::String, R"("")", "", kRestart,
   "If set, every client of this database uses this backend user; empty: the client's own user",
   {}, 0, 0, set<&Database::user>, show<&Database::user>},
  {S::Database, "password", T::String, R"("")", "", kReload,
   "Password of `user` towards the server (plain text or md5 hash); empty: from `auth_file`",
   {}, 0, 0, set<&Database::password>, show<&Database::password>, kSecret},
  {S::Database, "pool_mode", T::Enum, R"("session")", "", kRestart,
   "`session`: a client keeps one backend from its first message until it disconnects; "
   "`transaction`: a backend is held from the first message of a transaction to the "
   "ReadyForQuery that ends it",
   kPoolModes, 0, 0, set_pool_mode, show_pool_mode},
  {S::Database, "pool_size", T::Integer, "20", "", kReload,
   "Most backend connections per (database, user) pool",
   {}, 1, 100000, set<&Database::pool_size>, show<&Database::pool_size>},
  {S::Database, "min_pool_size", T::Integer, "0", "", kReload,
   "Backend connections each pool keeps open even when idle; at most `pool_size`",
   {}, 0, 100000, set<&Database::min_pool_size>, show<&Database::min_pool_size>},
  {S::Database, "server_lifetime", T::Interval, R"("1h")", "", kReload,
   "A backend older than this is closed when released instead of reused; `\"0\"` disables",
   {}, 0, kMaxDuration.count(), set<&Database::server_lifetime>,
   show<&Database::server_lifetime>},
  {S::Database, "server_idle_timeout", T::Interval, R"("10m")", "", kReload,
   "A backend idle for this long is closed; `\"0\"` disables",
   {}, 0, kMaxDuration.count(), set<&Database::server_idle_timeout>,
   show<&Database::server_idle_timeout>},
  {S::Database, "server_reset_query", T::String, R"("DISCARD ALL")", "", kReload,
   "Run on a backend after its client disconnects, before it is reused; empty: none",
   {}, 0, 0, set<&Database::server_reset_query>, show<&Database::server_reset_query>},
  {S::Database, "idle_transaction_timeout", T::Interval, R"("0")", "", kReload,
   "A client idle inside a transaction for this long is disconnected with 25P03 and its "
   "backend closed (the transaction rolls back); `\"0\"` disables",
   {}, 0, kMaxDuration.count(), set<&Database::idle_transaction_timeout>,
   show<&Database::idle_transaction_timeout>},

  // ---- [[bulkheads]]: one priority class of work on one server ----
  {S::Bulkhead, "name", T::String, "", "", kRestart,
   "Identifies the bulkhead in metrics, logs and the admin console: letters, digits, `_`, `.` "
   "and `-`; unique per server; `default` configures the class of unclassified clients",
   {}, 0, 0, set_bulkhead_name, show<&Bulkhead::name>},
  {S::Bulkhead, "server", T::String, "", "", kRestart,
   "The `[servers.NAME]` whose connections this bulkhead shares; may be omitted when only one "
   "server exists",
   {}, 0, 0, set_non_empty<&Bulkhead::server>, show<&Bulkhead::server>},
  {S::Bulkhead, "priority", T::Integer, "0", "", kReload,
   "Lower is served first when a slot frees; equal priorities in the order of the file",
   {}, 0, 1000000, set<&Bulkhead::priority>, show<&Bulkhead::priority>},
  {S::Bulkhead, "reserved", T::Integer, "0", "", kReload,
   "Slots (backend connections of the server) only this bulkhead may use; at most `max`, and "
   "all bulkheads of a server together at most its `max_connections`",
   {}, 0, 100000, set<&Bulkhead::reserved>, show<&Bulkhead::reserved>},
  {S::Bulkhead, "max", T::Integer, "", "", kReload,
   "Most slots this bulkhead holds (its reserved ones plus spare ones it borrows); at most the "
   "server's `max_connections`, which is also the value when absent",
   {}, 1, 100000, set_bulkhead_max, show_bulkhead_max},
  {S::Bulkhead, "queue_depth", T::Integer, "128", "", kReload,
   "Most clients waiting for a slot; the next one is refused at once with 53300; 0: never queue",
   {}, 0, 1000000, set<&Bulkhead::queue_depth>, show<&Bulkhead::queue_depth>},
  {S::Bulkhead, "max_wait", T::Interval, R"("5s")", "", kReload,
   "A waiter older than this is refused with 53300 (its work is stale), and a newcomer is "
   "refused at once when its wait would be longer; it also bounds the wait for a backend "
   "connection once the slot is granted",
   {}, 1, kMaxMs, set<&Bulkhead::max_wait>, show<&Bulkhead::max_wait>},
  {S::Bulkhead, "statement_timeout", T::Interval, R"("0")", "", kReload,
   "`statement_timeout` of this class's sessions on the server, enforced by Sluice too after "
   "`statement_timeout_grace`; `\"0\"`: none",
   {}, 0, kMaxMs, set<&Bulkhead::statement_timeout>, show<&Bulkhead::statement_timeout>},
  {S::Bulkhead, "idle_transaction_timeout", T::Interval, R"("0")", "", kReload,
   "Replaces the database's `idle_transaction_timeout` for this class's clients; `\"0\"`: the "
   "database's setting applies",
   {}, 0, kMaxMs, set<&Bulkhead::idle_transaction_timeout>,
   show<&Bulkhead::idle_transaction_timeout>},
  {S::Bulkhead, "max_clients", T::Integer, "0", "", kReload,
   "Most client connections in this bulkhead at once; more are refused with 53300 when they "
   "connect; 0: no limit",
   {}, 0, 1000000, set<&Bulkhead::max_clients>, show<&Bulkhead::max_clients>},
  {S::Bulkhead, "new_connections_per_second", T::Integer, "0", "", kReload,
   "Client connections admitted per second (a token bucket); more are refused with 53300; 0: no "
   "limit",
   {}, 0, 1000000, set<&Bulkhead::new_connections_per_second>,
   show<&Bulkhead::new_connections_per_second>},
  {S::Bulkhead, "new_connections_burst", T::Integer, "0", "", kReload,
   "Client connections admitted back to back after a quiet period; 0: the same as "
   "`new_connections_per_second`, which must be set",
   {}, 0, 1000000, set<&Bulkhead::new_connections_burst>,
   show<&Bulkhead::new_connections_burst>},
  {S::Bulkhead, "new_transactions_per_second", T::Integer, "0", "", kReload,
   "Transactions (sessions, in session mode) started per second; more are refused with 53300; "
   "0: no limit",
   {}, 0, 1000000, set<&Bulkhead::new_transactions_per_second>,
   show<&Bulkhead::new_transactions_per_second>},
  {S::Bulkhead, "new_transactions_burst", T::Integer, "0", "", kReload,
   "Transactions started back to back after a quiet period; 0: the same as "
   "`new_transactions_per_second`, which must be set",
   {}, 0, 1000000, set<&Bulkhead::new_transactions_burst>,
   show<&Bulkhead::new_transactions_burst>},
  {S::Bulkhead, "adaptive_lifo", T::Bool, "true", "", kReload,
   "Serve the newest waiter first while the queue is congested (its oldest waiter at least "
   "`lifo_target` old for a whole 100 ms)",
   {}, 0, 0, set<&Bulkhead::adaptive_lifo>, show<&Bulkhead::adaptive_lifo>},
  {S::Bulkhead, "lifo_target", T::Interval, R"("0")", "", kReload,
   "Age of the oldest waiter that means congestion for `adaptive_lifo`; `\"0\"`: `max_wait` / 5",
   {}, 0, kMaxMs, set<&Bulkhead::lifo_target>, show<&Bulkhead::lifo_target>},
  {S::Bulkhead, "match.application_name", T::StringList, "[]", "", kReload,
   "Patterns of the client's `application_name`: exact, or a prefix ending in one `*`; empty: "
   "any",
   {}, 0, 0, set_name_patterns<&BulkheadMatch::application_name>,
   show<&BulkheadMatch::application_name>},
  {S::Bulkhead, "match.user", T::StringList, "[]", "", kReload,
   "Patterns of the client's user name, as for `match.application_name`; empty: any",
   {}, 0, 0, set_name_patterns<&BulkheadMatch::user>, show<&BulkheadMatch::user>},
  {S::Bulkhead, "match.database", T::StringList, "[]", "", kReload,
   "Patterns of the database the client asks for (`dbname`), as for `match.application_name`; "
   "empty: any",
   {}, 0, 0, set_name_patterns<&BulkheadMatch::database>, show<&BulkheadMatch::database>},
  {S::Bulkhead, "match.client_cidr", T::StringList, "[]", "", kReload,
   "Client address ranges, `ADDR/BITS` or one address, IPv4 or IPv6 (an IPv4 client on an IPv6 "
   "socket matches IPv4 ranges); empty: any",
   {}, 0, 0, set_client_cidr, show<&BulkheadMatch::client_cidr>},
};
// clang-format on

constexpr std::string_view section_prefix(Section section) {
  switch (section) {
    case Section::Global:
      return "";
    case Section::Server:
      return "servers";
    case Section::Database:
      return "databases";
    case Section::Bulkhead:
      return "bulkheads";
  }
  return "";
}

}  // namespace

std::span<const KeyInfo> key_table() { return kKeys; }

std::string display_value(const KeyInfo& key, const ConstKeyTarget& target) {
  std::string value = key.show(target);
  // Every secret key is a string (or list) whose unset value shows as "" (or []).
  if (key.secret && value != "\"\"" && value != "[]") return std::string(kRedacted);
  return value;
}

std::string redact(std::string text, std::span<const std::string> secrets) {
  std::vector<std::string_view> sorted;
  for (const std::string& secret : secrets) {
    if (!secret.empty()) sorted.emplace_back(secret);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](std::string_view a, std::string_view b) { return a.size() > b.size(); });
  for (const std::string_view secret : sorted) {
    for (std::size_t at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + kRedacted.size())) {
      text.replace(at, secret.size(), kRedacted);
    }
  }
  return text;
}

std::optional<std::string> bulkhead_name_error(std::string_view name) {
  if (name.empty()) return "must not be empty";
  const auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  if (std::all_of(name.begin(), name.end(), allowed)) return std::nullopt;
  return "invalid name " + toml_text(std::string(name)) +
         ": only letters, digits, '_', '.' and '-' are allowed";
}

const KeyInfo* find_key(Section section, std::string_view name) {
  for (const KeyInfo& key : kKeys) {
    if (key.section == section && key.name == name) return &key;
  }
  return nullptr;
}

std::string key_path(Section section, std::string_view section_name, std::string_view key) {
  if (section == Section::Global) return std::string(key);
  std::string path(section_prefix(section));
  if (!section_name.starts_with('[')) path += '.';  // "bulkheads[2]" for an unnamed bulkhead
  path += section_name;
  if (!key.empty()) {
    path += '.';
    path += key;
  }
  return path;
}

std::string_view type_name(KeyType type) {
  switch (type) {
    case KeyType::String:
      return "string";
    case KeyType::Integer:
      return "integer";
    case KeyType::Bool:
      return "bool";
    case KeyType::Interval:
      return "duration";
    case KeyType::StringList:
      return "string list";
    case KeyType::Enum:
      return "enum";
  }
  return "?";
}

}  // namespace sluice::config
