#include "src/admin/show.hpp"

#include "config/keys.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice {
namespace {

namespace pr = protocol;
using Milliseconds = std::chrono::duration<double, std::milli>;

constexpr pr::Column text_col(std::string_view name) { return {name, pr::kOidText, -1}; }
constexpr pr::Column int4_col(std::string_view name) { return {name, pr::kOidInt4, 4}; }
constexpr pr::Column int8_col(std::string_view name) { return {name, pr::kOidInt8, 8}; }
constexpr pr::Column float8_col(std::string_view name) { return {name, pr::kOidFloat8, 8}; }
constexpr pr::Column bool_col(std::string_view name) { return {name, pr::kOidBool, 1}; }

// One result set: the RowDescription at construction, a DataRow per end_row(), CommandComplete
// "SHOW" at finish(). Cells are added in column order, in text format.
class ResultSet {
 public:
  static constexpr std::size_t kMaxColumns = 64;

  ResultSet(pr::Buffer& out, std::span<const pr::Column> columns)
      : out_(out), width_(columns.size()) {
    assert(width_ <= kMaxColumns);
    pr::build_row_description(out_, columns);
    cells_.reserve(width_);
  }

  ResultSet& text(std::string_view v) {
    cells_.emplace_back(std::string(v));
    return *this;
  }
  ResultSet& integer(std::uint64_t v) {
    cells_.emplace_back(std::to_string(v));
    return *this;
  }
  ResultSet& flag(bool v) {  // PostgreSQL's text form of bool
    cells_.emplace_back(v ? "t" : "f");
    return *this;
  }
  ResultSet& null() {
    cells_.emplace_back(std::nullopt);
    return *this;
  }
  // Shortest text that reads back as the same double, as PostgreSQL 12+ prints float8.
  ResultSet& real(std::optional<double> v) {
    if (!v) return null();
    std::array<char, 32> buf{};
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), *v);
    cells_.emplace_back(std::string(buf.data(), r.ptr));
    return *this;
  }
  ResultSet& millis(std::optional<std::chrono::nanoseconds> d) {
    return real(d ? std::optional<double>(Milliseconds(*d).count()) : std::nullopt);
  }

  void end_row() {
    assert(cells_.size() == width_);
    std::array<std::string_view, kMaxColumns> values{};
    std::array<bool, kMaxColumns> nulls{};
    const std::size_t n = std::min(cells_.size(), kMaxColumns);
    for (std::size_t i = 0; i < n; ++i) {
      nulls[i] = !cells_[i].has_value();
      if (cells_[i]) values[i] = *cells_[i];
    }
    pr::build_data_row(out_, std::span(values).first(n), std::span(nulls).first(n));
    cells_.clear();
  }

  void finish() { pr::build_command_complete(out_, "SHOW"); }

 private:
  pr::Buffer& out_;
  std::size_t width_;
  std::vector<std::optional<std::string>> cells_;
};

// "2024-05-01T12:34:56.789Z"
std::string iso8601_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(t);
  const auto day = floor<days>(ms);
  const year_month_day ymd{day};
  const hh_mm_ss<milliseconds> time{ms - day};
  std::array<char, 48> buf{};
  std::snprintf(buf.data(), buf.size(), "%04d-%02u-%02uT%02d:%02d:%02d.%03dZ",
                static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                static_cast<unsigned>(ymd.day()), static_cast<int>(time.hours().count()),
                static_cast<int>(time.minutes().count()), static_cast<int>(time.seconds().count()),
                static_cast<int>(time.subseconds().count()));
  return buf.data();
}

std::optional<double> max_wait_ms(const BulkheadSnapshot& b) {
  return Milliseconds(b.stats.max_wait).count();
}

std::string_view pool_mode_name(config::PoolMode m) {
  return m == config::PoolMode::Transaction ? "transaction" : "session";
}

// ---- one function per item ----------------------------------------------------------------

constexpr std::array kBulkheadColumns = {
    text_col("server"),
    text_col("name"),
    int8_col("priority"),
    int8_col("reserved"),
    int8_col("max"),
    int8_col("queue_depth"),
    float8_col("max_wait_ms"),
    int8_col("in_use"),
    int8_col("borrowed"),
    int8_col("waiters"),
    float8_col("oldest_wait_ms"),
    int8_col("clients"),
    int8_col("admitted"),
    int8_col("queued"),
    int8_col("expired"),
    int8_col("cancelled"),
    int8_col("timeouts"),
    // By pools::RefusalReason, in its order.
    int8_col("refused_queue_full"),
    int8_col("refused_queue_age"),
    int8_col("refused_predicted_wait"),
    int8_col("refused_max_wait"),
    int8_col("refused_rate_limit"),
    int8_col("refused_max_clients"),
    int8_col("refused_server_down"),
    int8_col("refused_total"),
    float8_col("mean_hold_ms"),
    bool_col("lifo"),
    bool_col("retired"),
};
static_assert(pools::kRefusalReasonCount == 7, "one refused_* column per RefusalReason");

void show_bulkheads(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kBulkheadColumns);
  for (const BulkheadSnapshot& b : snap.bulkheads) {
    const pools::BulkheadStats& s = b.stats;
    rs.text(b.server).text(s.name).integer(s.priority).integer(s.reserved).integer(s.max);
    rs.integer(s.queue_depth).real(max_wait_ms(b));
    rs.integer(s.in_use).integer(s.borrowed).integer(s.waiters).millis(s.oldest_wait);
    rs.integer(s.clients).integer(s.admitted).integer(s.queued).integer(s.expired);
    rs.integer(s.cancelled).integer(s.timeouts);
    for (std::uint64_t n : s.refused) rs.integer(n);
    rs.integer(s.refused_total());
    rs.real(s.mean_hold ? std::optional<double>(s.mean_hold->count()) : std::nullopt);
    rs.flag(s.lifo).flag(s.retired);
    rs.end_row();
  }
  rs.finish();
}

constexpr std::array kPoolColumns = {
    text_col("database"),      text_col("user"),
    text_col("server"),        text_col("pool_mode"),
    int8_col("pool_size"),     int8_col("backends_active"),
    int8_col("backends_idle"), int8_col("backends_connecting"),
    int8_col("slots_in_use"),  bool_col("paused"),
};

void show_pools(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kPoolColumns);
  for (const PoolSnapshot& p : snap.pools) {
    rs.text(p.database).text(p.user).text(p.server).text(p.pool_mode).integer(p.pool_size);
    rs.integer(p.backends.active).integer(p.backends.idle).integer(p.backends.connecting);
    rs.integer(p.slots_in_use).flag(p.paused);
    rs.end_row();
  }
  rs.finish();
}

constexpr std::array kServerColumns = {
    text_col("name"),
    text_col("host"),
    int4_col("port"),
    int8_col("capacity"),
    int8_col("in_use"),
    int8_col("shared"),
    int8_col("borrowed"),
    int8_col("waiters"),
    text_col("breaker"),
    int8_col("connect_failures_in_row"),
    int8_col("backends_active"),
    int8_col("backends_idle"),
    int8_col("backends_connecting"),
    int8_col("connect_attempts"),
    int8_col("connect_failures"),
};

void show_servers(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kServerColumns);
  for (const ServerSnapshot& s : snap.servers) {
    const pools::ServerStats& a = s.admission;
    rs.text(s.name).text(s.host).integer(s.port);
    rs.integer(a.capacity).integer(a.in_use).integer(a.shared).integer(a.borrowed);
    rs.integer(a.waiters).text(pools::to_string(a.breaker));
    rs.integer(a.consecutive_connect_failures);
    rs.integer(s.backends.active).integer(s.backends.idle).integer(s.backends.connecting);
    rs.integer(s.connect_attempts).integer(s.connect_failures);
    rs.end_row();
  }
  rs.finish();
}

constexpr std::array kClientColumns = {
    int8_col("id"),
    text_col("peer"),
    text_col("user"),
    text_col("database"),
    text_col("application_name"),
    text_col("server"),
    text_col("bulkhead"),
    text_col("state"),
    text_col("connected_at"),
    float8_col("wait_ms"),
    int8_col("backend_pid"),
};

void show_clients(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kClientColumns);
  for (const ClientSnapshot& c : snap.clients) {
    rs.integer(c.id).text(c.peer).text(c.user).text(c.database).text(c.application_name);
    rs.text(c.server).text(c.bulkhead).text(to_string(c.state));
    rs.text(iso8601_utc(c.connected_at)).millis(c.waiting_for);
    if (c.backend_pid == 0) {
      rs.null();
    } else {
      rs.integer(c.backend_pid);
    }
    rs.end_row();
  }
  rs.finish();
}

constexpr std::array kStatsColumns = {
    text_col("database"),           text_col("user"),
    int8_col("total_xact_count"),   int8_col("total_query_count"),
    int8_col("total_received"),     int8_col("total_sent"),
    int8_col("total_xact_time_us"), int8_col("total_query_time_us"),
    int8_col("total_wait_time_us"), int8_col("avg_xact_time_us"),
    int8_col("avg_query_time_us"),
};

void show_stats(const Snapshot& snap, pr::Buffer& out) {
  auto us = [](std::uint64_t ns) { return ns / 1000; };
  auto avg_us = [&](std::uint64_t ns, std::uint64_t count) {
    return count == 0 ? 0 : us(ns) / count;
  };
  ResultSet rs(out, kStatsColumns);
  for (const PoolSnapshot& p : snap.pools) {
    const TrafficCounters& t = p.traffic;
    rs.text(p.database).text(p.user).integer(t.transactions).integer(t.queries);
    rs.integer(t.bytes_in).integer(t.bytes_out);
    rs.integer(us(t.transaction_ns)).integer(us(t.query_ns)).integer(us(t.wait_ns));
    rs.integer(avg_us(t.transaction_ns, t.transactions)).integer(avg_us(t.query_ns, t.queries));
    rs.end_row();
  }
  rs.finish();
}

constexpr std::array kConfigColumns = {text_col("key"), text_col("value"), text_col("default"),
                                       bool_col("changeable")};

void show_config(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kConfigColumns);
  if (snap.config) {
    for (const config::ConfigRow& row : config::show_config(*snap.config)) {
      rs.text(row.key).text(row.value).text(row.default_value).flag(row.reloadable).end_row();
    }
  }
  rs.finish();
}

constexpr std::array kDatabaseColumns = {
    text_col("name"),          text_col("server"),
    text_col("dbname"),        text_col("user"),
    text_col("pool_mode"),     int8_col("pool_size"),
    int8_col("min_pool_size"), int8_col("current_connections"),
    bool_col("paused"),
};

void show_databases(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kDatabaseColumns);
  if (snap.config) {
    for (const auto& [name, db] : snap.config->databases) {
      // A database is paused when one of its pools is (a PAUSE reaches every pool of it).
      std::uint64_t connections = 0;
      bool paused = false;
      for (const PoolSnapshot& p : snap.pools) {
        if (p.database != name) continue;
        connections += p.backends.total();
        paused = paused || p.paused;
      }
      rs.text(name).text(db.server).text(db.dbname.empty() ? name : db.dbname).text(db.user);
      rs.text(pool_mode_name(db.pool_mode)).integer(db.pool_size).integer(db.min_pool_size);
      rs.integer(connections).flag(paused);
      rs.end_row();
    }
  }
  rs.finish();
}

constexpr std::array kListColumns = {text_col("list"), int8_col("items")};

void show_lists(const Snapshot& snap, pr::Buffer& out) {
  ResultSet rs(out, kListColumns);
  auto row = [&](std::string_view name, std::uint64_t n) { rs.text(name).integer(n).end_row(); };
  row("databases", snap.config ? snap.config->databases.size() : 0);
  row("servers", snap.servers.size());
  row("bulkheads", snap.bulkheads.size());
  row("pools", snap.pools.size());
  std::uint64_t clients = 0;
  for (std::uint32_t n : snap.process.clients_by_state) clients += n;
  row("clients", clients);
  for (std::size_t i = 0; i < kClientStateCount; ++i) {
    static constexpr std::array<std::string_view, kClientStateCount> kNames = {
        "clients_login", "clients_idle", "clients_waiting", "clients_active"};
    row(kNames[i], snap.process.clients_by_state[i]);
  }
  pools::PoolCounts backends;
  for (const ServerSnapshot& s : snap.servers) {
    backends.active += s.backends.active;
    backends.idle += s.backends.idle;
    backends.connecting += s.backends.connecting;
  }
  row("backends_active", backends.active);
  row("backends_idle", backends.idle);
  row("backends_connecting", backends.connecting);
  rs.finish();
}

constexpr std::array kVersionColumns = {text_col("version")};

void show_version(pr::Buffer& out) {
  ResultSet rs(out, kVersionColumns);
  rs.text("Sluice " SLUICE_VERSION).end_row();
  rs.finish();
}

constexpr std::array kHelpColumns = {text_col("command"), text_col("description"),
                                     bool_col("admin_only")};

struct HelpRow {
  std::string_view command;
  std::string_view description;
  bool admin_only;
};
constexpr std::array kHelpRows = {
    HelpRow{"SHOW BULKHEADS", "bulkheads: limits, use, queue, admissions, refusals by reason",
            false},
    HelpRow{"SHOW POOLS", "(database, user) pools: backend connections, slots in use", false},
    HelpRow{"SHOW CLIENTS", "client connections", false},
    HelpRow{"SHOW SERVERS", "servers: slots, circuit breaker, backend connections", false},
    HelpRow{"SHOW STATS", "traffic per pool since start", false},
    HelpRow{"SHOW CONFIG", "every configuration key: value, default, reloadable", false},
    HelpRow{"SHOW DATABASES", "configured databases", false},
    HelpRow{"SHOW LISTS", "how many databases, servers, pools, clients, backends", false},
    HelpRow{"SHOW VERSION", "the version of Sluice", false},
    HelpRow{"SHOW HELP", "this list", false},
    HelpRow{"SET BULKHEAD [server.]name setting = value",
            "change a bulkhead setting now: reserved, max, queue_depth, max_wait, "
            "statement_timeout, idle_transaction_timeout, priority, max_clients",
            true},
    HelpRow{"RELOAD", "read the configuration file again", true},
    HelpRow{"PAUSE [database]", "pause a database (every database when omitted)", true},
    HelpRow{"RESUME [database]", "resume a paused database (every one when omitted)", true},
    HelpRow{"KILL_CLIENT id", "close a client connection (the id column of SHOW CLIENTS)", true},
    HelpRow{"SHUTDOWN [WAIT_FOR_CLIENTS]",
            "stop Sluice (WAIT_FOR_CLIENTS: once every client has disconnected)", true},
};

void show_help(pr::Buffer& out) {
  ResultSet rs(out, kHelpColumns);
  for (const HelpRow& h : kHelpRows)
    rs.text(h.command).text(h.description).flag(h.admin_only).end_row();
  rs.finish();
}

}  // namespace

bool show_needs_snapshot(admin::ShowItem item) {
  return item != admin::ShowItem::Version && item != admin::ShowItem::Help;
}

void render_show(admin::ShowItem item, const Snapshot& snapshot, protocol::Buffer& out) {
  switch (item) {
    case admin::ShowItem::Bulkheads:
      return show_bulkheads(snapshot, out);
    case admin::ShowItem::Pools:
      return show_pools(snapshot, out);
    case admin::ShowItem::Clients:
      return show_clients(snapshot, out);
    case admin::ShowItem::Servers:
      return show_servers(snapshot, out);
    case admin::ShowItem::Stats:
      return show_stats(snapshot, out);
    case admin::ShowItem::Config:
      return show_config(snapshot, out);
    case admin::ShowItem::Databases:
      return show_databases(snapshot, out);
    case admin::ShowItem::Lists:
      return show_lists(snapshot, out);
    case admin::ShowItem::Version:
      return show_version(out);
    case admin::ShowItem::Help:
      return show_help(out);
  }
}

}  // namespace sluice
