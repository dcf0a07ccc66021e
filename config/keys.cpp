// The key table itself, and the generic helpers that store and show a key through a member
// pointer. Adding a key means adding one entry here (and, if new, a field in config.hpp).
#include "config/keys.hpp"

#include "config/listen.hpp"

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
  } else {
    static_assert(std::is_same_v<C, Database>);
    return target.database;
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
constexpr std::string_view kLogLevels[] = {"trace", "debug",    "info", "warn",
                                           "error", "critical", "off"};  // spdlog's names

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
// whatever its working directory is (the config's `source` is set before any key is applied).
std::optional<std::string> set_auth_file(KeyTarget& target, const KeyValue& value) {
  const std::filesystem::path path = std::get<std::string>(value);
  if (path.empty()) return "must not be empty";
  if (path.is_relative()) {
    const std::filesystem::path dir = std::filesystem::path(target.config.source).parent_path();
    target.config.auth_file = (dir / path).lexically_normal().string();
  } else {
    target.config.auth_file = path.string();
  }
  return std::nullopt;
}

std::optional<std::string> set_pool_mode(KeyTarget& target, const KeyValue& value) {
  target.database->pool_mode =
      static_cast<PoolMode>(index_of(kPoolModes, std::get<std::string>(value)));
  return std::nullopt;
}
std::string show_pool_mode(const ConstKeyTarget& target) {
  return toml_text(std::string(kPoolModes[static_cast<std::size_t>(target.database->pool_mode)]));
}

// Database::server and Database::dbname are filled in after parsing when absent (see
// parse_config), so show() reports the effective value.

using S = Section;
using T = KeyType;
constexpr bool kReload = true;
constexpr bool kRestart = false;
constexpr std::int64_t kGiB = 1024 * 1024 * 1024;

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
   {}, 0, 0, set_auth_file, show<&Config::auth_file>},
  {S::Global, "admin_users", T::StringList, "[]", "", kReload,
   "Users who may run every command of the admin console (database `sluice`)",
   {}, 0, 0, set<&Config::admin_users>, show<&Config::admin_users>},
  {S::Global, "stats_users", T::StringList, "[]", "", kReload,
   "Users who may run the admin console's read-only `SHOW` commands",
   {}, 0, 0, set<&Config::stats_users>, show<&Config::stats_users>},
  {S::Global, "max_client_conn", T::Integer, "10000", "", kReload,
   "Most client connections at once; more are refused with 53300 before authentication",
   {}, 1, 1000000, set<&Config::max_client_conn>, show<&Config::max_client_conn>},
  {S::Global, "client_login_timeout", T::Interval, R"("10s")", "", kReload,
   "Time a client has from connecting to finishing authentication; `\"0\"` disables",
   {}, 0, kMaxDuration.count(), set<&Config::client_login_timeout>,
   show<&Config::client_login_timeout>},
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
   {}, 0, 0, set<&Database::password>, show<&Database::password>},
  {S::Database, "pool_mode", T::Enum, R"("session")", "", kRestart,
   "`session`: a client keeps one backend until it disconnects; `transaction`: a backend is "
   "held from the first message of a transaction to the ReadyForQuery that ends it",
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
  }
  return "";
}

}  // namespace

std::span<const KeyInfo> key_table() { return kKeys; }

const KeyInfo* find_key(Section section, std::string_view name) {
  for (const KeyInfo& key : kKeys) {
    if (key.section == section && key.name == name) return &key;
  }
  return nullptr;
}

std::string key_path(Section section, std::string_view section_name, std::string_view key) {
  if (section == Section::Global) return std::string(key);
  std::string path(section_prefix(section));
  path += '.';
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
