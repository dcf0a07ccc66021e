// The admin console without a running pooler: execute_admin_query against a fake AdminActions and a
// hand-built Snapshot, its answer decoded message by message; then serve_admin over a socketpair.
#include "config/keys.hpp"
#include "protocol/builders.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "src/admin/admin_command.hpp"
#include "src/admin/admin_session.hpp"
#include "src/admin/console.hpp"
#include "src/asio_prelude.hpp"  // before any other Asio use

#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <tuple>
#include <unistd.h>
#include <vector>

namespace sluice {
namespace {

namespace pr = protocol;
using namespace std::chrono_literals;
using Cell = std::optional<std::string>;

// ---- decoding what the console sends -----------------------------------------------------------

struct ColumnInfo {
  std::string name;
  std::uint32_t oid = 0;
  std::int16_t size = 0;
};

// One backend message, with the fields of the kinds the console sends.
struct Msg {
  char type = 0;
  std::vector<ColumnInfo> columns;          // RowDescription
  std::vector<Cell> values;                 // DataRow
  std::string tag;                          // CommandComplete
  std::string severity, sqlstate, message;  // ErrorResponse, NoticeResponse
  char status = 0;                          // ReadyForQuery
};

class Cursor {
 public:
  explicit Cursor(pr::ByteView msg) : b_(msg) {}
  std::uint16_t u16() {
    REQUIRE(pos_ + 2 <= b_.size());
    pos_ += 2;
    return pr::read_u16(b_.data() + pos_ - 2);
  }
  std::uint32_t u32() {
    REQUIRE(pos_ + 4 <= b_.size());
    pos_ += 4;
    return pr::read_u32(b_.data() + pos_ - 4);
  }
  std::string bytes(std::size_t n) {
    REQUIRE(pos_ + n <= b_.size());
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::string cstring() {
    std::string s;
    for (;;) {
      REQUIRE(pos_ < b_.size());
      const char c = static_cast<char>(b_[pos_++]);
      if (c == '\0') return s;
      s.push_back(c);
    }
  }
  bool at_end() const { return pos_ == b_.size(); }

 private:
  pr::ByteView b_;
  std::size_t pos_ = 5;  // after the type byte and the length
};

Msg decode_one(pr::ByteView bytes) {
  Msg m;
  m.type = static_cast<char>(bytes[0]);
  Cursor c(bytes);
  switch (m.type) {
    case pr::be::kRowDescription:
      for (std::uint16_t n = c.u16(); n > 0; --n) {
        ColumnInfo col;
        col.name = c.cstring();
        CHECK(c.u32() == 0);  // table
        CHECK(c.u16() == 0);  // attribute
        col.oid = c.u32();
        col.size = static_cast<std::int16_t>(c.u16());
        CHECK(c.u32() == 0xffffffffU);  // type modifier -1
        CHECK(c.u16() == 0);            // text format
        m.columns.push_back(col);
      }
      break;
    case pr::be::kDataRow:
      for (std::uint16_t n = c.u16(); n > 0; --n) {
        const std::uint32_t len = c.u32();
        m.values.push_back(len == 0xffffffffU ? Cell{} : Cell{c.bytes(len)});
      }
      break;
    case pr::be::kCommandComplete:
      m.tag = c.cstring();
      break;
    case pr::be::kErrorResponse:
    case pr::be::kNoticeResponse: {
      const auto fields = pr::read_error_fields(bytes);
      REQUIRE(fields);
      m.severity = fields->severity();
      m.sqlstate = fields->sqlstate();
      m.message = fields->message();
      return m;
    }
    case pr::be::kReadyForQuery:
      m.status = c.bytes(1)[0];
      break;
    case pr::be::kEmptyQueryResponse:
      break;
    default:
      FAIL("unexpected message type " << m.type);
  }
  CHECK(c.at_end());
  return m;
}

std::vector<Msg> decode(pr::ByteView out) {
  std::vector<Msg> msgs;
  while (!out.empty()) {
    const pr::FrameResult r = pr::peek_frame(out, pr::Direction::Backend, 1U << 30);
    REQUIRE(r.status == pr::DecodeStatus::Ok);
    REQUIRE(out.size() >= r.frame.size());
    msgs.push_back(decode_one(out.first(r.frame.size())));
    out = out.subspan(r.frame.size());
  }
  return msgs;
}

std::string types_of(const std::vector<Msg>& msgs) {
  std::string s;
  for (const Msg& m : msgs) s.push_back(m.type);
  return s;
}

// One result set: RowDescription, DataRows, CommandComplete "SHOW".
struct ResultSet {
  std::vector<ColumnInfo> columns;
  std::vector<std::vector<Cell>> rows;

  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const ColumnInfo& c : columns) out.push_back(c.name);
    return out;
  }
  const ColumnInfo& column(std::string_view name) const {
    for (const ColumnInfo& c : columns) {
      if (c.name == name) return c;
    }
    FAIL("no column " << name);
    return columns.front();
  }
  Cell cell(std::size_t row, std::string_view name) const {
    REQUIRE(row < rows.size());
    for (std::size_t i = 0; i < columns.size(); ++i) {
      if (columns[i].name == name) return rows[row][i];
    }
    FAIL("no column " << name);
    return {};
  }
};

ResultSet single_result(const std::vector<Msg>& msgs) {
  INFO("messages: " << types_of(msgs));
  REQUIRE(msgs.size() >= 2);
  REQUIRE(msgs.front().type == 'T');
  REQUIRE(msgs.back().type == 'C');
  CHECK(msgs.back().tag == "SHOW");
  ResultSet rs{msgs.front().columns, {}};
  for (std::size_t i = 1; i + 1 < msgs.size(); ++i) {
    REQUIRE(msgs[i].type == 'D');
    REQUIRE(msgs[i].values.size() == rs.columns.size());
    rs.rows.push_back(msgs[i].values);
  }
  return rs;
}

// ---- a fake pooler --------------------------------------------------------------------------

constexpr const char* kShopPassword = "sh0p-Pa55word";

std::shared_ptr<const config::Config> make_config() {
  auto cfg = std::make_shared<config::Config>();
  cfg->servers["main"] = config::Server{.name = "main", .host = "10.0.0.5", .port = 5433};
  config::Database app;
  app.name = "app";
  app.server = "main";
  app.pool_mode = config::PoolMode::Transaction;
  app.pool_size = 10;
  app.min_pool_size = 2;
  cfg->databases["app"] = app;
  config::Database shop;
  shop.name = "shop";
  shop.server = "main";
  shop.dbname = "shop_prod";
  shop.user = "shopper";
  shop.password = kShopPassword;
  cfg->databases["shop"] = shop;
  return cfg;
}

Snapshot make_snapshot() {
  Snapshot s;
  s.config = make_config();

  ServerSnapshot server{.name = "main", .host = "10.0.0.5", .port = 5433};
  server.admission = pools::ServerStats{.capacity = 50,
                                        .in_use = 7,
                                        .shared = 30,
                                        .borrowed = 2,
                                        .waiters = 3,
                                        .breaker = pools::BreakerState::HalfOpen,
                                        .consecutive_connect_failures = 4};
  server.backends = pools::PoolCounts{.connecting = 1, .idle = 2, .active = 7};
  server.connect_attempts = 100;
  server.connect_failures = 9;
  s.servers.push_back(server);

  pools::BulkheadStats interactive;
  interactive.name = "interactive";
  interactive.priority = 0;
  interactive.reserved = 10;
  interactive.max = 40;
  interactive.queue_depth = 128;
  interactive.in_use = 5;
  interactive.waiters = 2;
  interactive.clients = 12;
  interactive.oldest_wait = 1500us;
  interactive.admitted = 1000;
  interactive.queued = 60;
  interactive.expired = 3;
  interactive.cancelled = 4;
  interactive.timeouts = 5;
  interactive.refused = {1, 2, 3, 4, 5, 6, 7};
  interactive.mean_hold = std::chrono::duration<double, std::milli>(2.5);
  interactive.lifo = true;
  s.bulkheads.push_back({"main", interactive});
  pools::BulkheadStats batch;
  batch.name = "batch";
  batch.priority = 1;
  batch.retired = true;
  s.bulkheads.push_back({"main", batch});

  PoolSnapshot app{.database = "app",
                   .user = "alice",
                   .server = "main",
                   .pool_mode = "transaction",
                   .pool_size = 10};
  app.backends = pools::PoolCounts{.connecting = 1, .idle = 2, .active = 3};
  app.slots_in_use = 4;
  app.paused = true;
  app.traffic = TrafficCounters{.transactions = 4,
                                .queries = 10,
                                .bytes_in = 1000,
                                .bytes_out = 5000,
                                .transaction_ns = 8'000'000,
                                .query_ns = 5'000'000,
                                .wait_ns = 1'234'567};
  s.pools.push_back(app);
  s.pools.push_back(PoolSnapshot{
      .database = "shop", .user = "shopper", .server = "main", .pool_mode = "session"});

  const auto connected =
      std::chrono::sys_days{std::chrono::year{2024} / 5 / 1} + 12h + 34min + 56s + 789ms;
  s.clients.push_back(ClientSnapshot{.id = 7,
                                     .peer = "127.0.0.1:5000",
                                     .user = "alice",
                                     .database = "app",
                                     .application_name = "psql",
                                     .server = "main",
                                     .bulkhead = "interactive",
                                     .state = ClientState::Waiting,
                                     .connected_at = connected,
                                     .waiting_for = 2500us});
  s.clients.push_back(ClientSnapshot{.id = 8,
                                     .peer = "[::1]:6000",
                                     .user = "bob",
                                     .database = "shop",
                                     .state = ClientState::Active,
                                     .connected_at = connected + 1s,
                                     .backend_pid = 4242});
  s.process.clients_by_state = {1, 2, 3, 4};
  return s;
}

// Records every action; an action listed in `failures` fails with that error.
class FakeActions : public AdminActions {
 public:
  Snapshot snap = make_snapshot();
  std::vector<std::string> calls;
  std::map<std::string, AdminError> failures;  // by action name ("reload", ...)
  int snapshots = 0;
  bool with_clients = false;
  int unsettled = 0;  // pause_settled() answers false this many times first

  Snapshot snapshot(bool clients) override {
    ++snapshots;
    with_clients = clients;
    Snapshot s = snap;
    if (!clients) s.clients.clear();
    return s;
  }
  std::optional<AdminError> set_bulkhead(std::string_view server, std::string_view name,
                                         std::string_view key, std::string_view value) override {
    return record("set_bulkhead", std::string(server) + "|" + std::string(name) + "|" +
                                      std::string(key) + "|" + std::string(value));
  }
  std::optional<AdminError> reload() override { return record("reload", ""); }
  std::optional<AdminError> pause(std::string_view db) override {
    return record("pause", std::string(db));
  }
  bool pause_settled(std::string_view db) override {
    calls.push_back("pause_settled " + std::string(db));
    return unsettled-- <= 0;
  }
  std::optional<AdminError> resume(std::string_view db) override {
    return record("resume", std::string(db));
  }
  std::optional<AdminError> kill_client(std::uint32_t id) override {
    return record("kill_client", std::to_string(id));
  }
  std::optional<AdminError> shutdown(bool wait) override {
    return record("shutdown", wait ? "wait" : "now");
  }

 private:
  std::optional<AdminError> record(const std::string& action, const std::string& args) {
    calls.push_back(action + " " + args);
    const auto it = failures.find(action);
    if (it == failures.end()) return std::nullopt;
    return it->second;
  }
};

std::vector<Msg> run(std::string_view sql, AdminRole role, FakeActions& fake) {
  const pr::Buffer out = execute_admin_query(sql, role, fake);
  return decode(out);
}

std::vector<Msg> run(std::string_view sql, AdminRole role = AdminRole::Admin) {
  FakeActions fake;
  return run(sql, role, fake);
}

Msg single_error(const std::vector<Msg>& msgs) {
  INFO("messages: " << types_of(msgs));
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].type == 'E');
  CHECK(msgs[0].severity == "ERROR");
  return msgs[0];
}

using Columns = std::vector<std::tuple<std::string, std::uint32_t>>;

void check_columns(const ResultSet& rs, const Columns& expected) {
  REQUIRE(rs.columns.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    CHECK(rs.columns[i].name == std::get<0>(expected[i]));
    CHECK(rs.columns[i].oid == std::get<1>(expected[i]));
  }
}

constexpr std::uint32_t kText = pr::kOidText;
constexpr std::uint32_t kInt8 = pr::kOidInt8;
constexpr std::uint32_t kFloat8 = pr::kOidFloat8;
constexpr std::uint32_t kBool = pr::kOidBool;

// ---- SHOW -----------------------------------------------------------------------------------

TEST_CASE("every SHOW item is one well-formed result set of typed text values", "[admin]") {
  const admin::ShowItem item =
      GENERATE(from_range(admin::show_items().begin(), admin::show_items().end()));
  const std::string sql = "SHOW " + std::string(admin::to_string(item));
  CAPTURE(sql);
  const ResultSet rs = single_result(run(sql, AdminRole::Stats));
  REQUIRE_FALSE(rs.columns.empty());
  CHECK_FALSE(rs.rows.empty());
  for (const auto& row : rs.rows) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      CAPTURE(rs.columns[i].name);
      if (!row[i]) continue;
      const std::string& v = *row[i];
      switch (rs.columns[i].oid) {
        case pr::kOidInt8:
        case pr::kOidInt4:
          CHECK(rs.columns[i].size == (rs.columns[i].oid == pr::kOidInt8 ? 8 : 4));
          CHECK(v.find_first_not_of("0123456789") == std::string::npos);
          break;
        case pr::kOidFloat8:
          CHECK(rs.columns[i].size == 8);
          CHECK(v.find_first_not_of("0123456789.e+-") == std::string::npos);
          break;
        case pr::kOidBool:
          CHECK(rs.columns[i].size == 1);
          CHECK((v == "t" || v == "f"));
          break;
        default:
          CHECK(rs.columns[i].oid == pr::kOidText);
          CHECK(rs.columns[i].size == -1);
      }
    }
  }
}

TEST_CASE("SHOW BULKHEADS lists limits, use, queue and refusals by reason", "[admin]") {
  const ResultSet rs = single_result(run("show bulkheads;"));
  check_columns(rs, {{"server", kText},
                     {"name", kText},
                     {"priority", kInt8},
                     {"reserved", kInt8},
                     {"max", kInt8},
                     {"queue_depth", kInt8},
                     {"max_wait_ms", kFloat8},
                     {"in_use", kInt8},
                     {"borrowed", kInt8},
                     {"waiters", kInt8},
                     {"oldest_wait_ms", kFloat8},
                     {"clients", kInt8},
                     {"admitted", kInt8},
                     {"queued", kInt8},
                     {"expired", kInt8},
                     {"cancelled", kInt8},
                     {"timeouts", kInt8},
                     {"refused_queue_full", kInt8},
                     {"refused_queue_age", kInt8},
                     {"refused_predicted_wait", kInt8},
                     {"refused_max_wait", kInt8},
                     {"refused_rate_limit", kInt8},
                     {"refused_max_clients", kInt8},
                     {"refused_server_down", kInt8},
                     {"refused_total", kInt8},
                     {"mean_hold_ms", kFloat8},
                     {"lifo", kBool},
                     {"retired", kBool}});
  REQUIRE(rs.rows.size() == 2);
  using Expected = std::vector<std::tuple<std::string, Cell>>;
  for (const auto& [column, value] : Expected{{"server", "main"},
                                              {"name", "interactive"},
                                              {"priority", "0"},
                                              {"reserved", "10"},
                                              {"max", "40"},
                                              {"queue_depth", "128"},
                                              {"in_use", "5"},
                                              {"borrowed", "0"},
                                              {"waiters", "2"},
                                              {"oldest_wait_ms", "1.5"},
                                              {"clients", "12"},
                                              {"admitted", "1000"},
                                              {"queued", "60"},
                                              {"expired", "3"},
                                              {"cancelled", "4"},
                                              {"timeouts", "5"},
                                              {"refused_queue_full", "1"},
                                              {"refused_queue_age", "2"},
                                              {"refused_predicted_wait", "3"},
                                              {"refused_max_wait", "4"},
                                              {"refused_rate_limit", "5"},
                                              {"refused_max_clients", "6"},
                                              {"refused_server_down", "7"},
                                              {"refused_total", "28"},
                                              {"mean_hold_ms", "2.5"},
                                              {"lifo", "t"},
                                              {"retired", "f"}}) {
    CAPTURE(column);
    CHECK(rs.cell(0, column) == value);
  }
  CHECK(rs.cell(1, "name") == "batch");
  CHECK(rs.cell(1, "oldest_wait_ms") == std::nullopt);  // no waiter
  CHECK(rs.cell(1, "mean_hold_ms") == std::nullopt);    // nothing measured yet
  CHECK(rs.cell(1, "retired") == "t");
}

TEST_CASE("SHOW POOLS, SERVERS and DATABASES render pools, servers and the config", "[admin]") {
  const ResultSet pools = single_result(run("SHOW POOLS"));
  check_columns(pools, {{"database", kText},
                        {"user", kText},
                        {"server", kText},
                        {"pool_mode", kText},
                        {"pool_size", kInt8},
                        {"backends_active", kInt8},
                        {"backends_idle", kInt8},
                        {"backends_connecting", kInt8},
                        {"slots_in_use", kInt8},
                        {"paused", kBool}});
  REQUIRE(pools.rows.size() == 2);
  CHECK(pools.rows[0] ==
        std::vector<Cell>{"app", "alice", "main", "transaction", "10", "3", "2", "1", "4", "t"});
  CHECK(pools.cell(1, "paused") == "f");

  const ResultSet servers = single_result(run("SHOW SERVERS"));
  check_columns(servers, {{"name", kText},
                          {"host", kText},
                          {"port", pr::kOidInt4},
                          {"capacity", kInt8},
                          {"in_use", kInt8},
                          {"shared", kInt8},
                          {"borrowed", kInt8},
                          {"waiters", kInt8},
                          {"breaker", kText},
                          {"connect_failures_in_row", kInt8},
                          {"backends_active", kInt8},
                          {"backends_idle", kInt8},
                          {"backends_connecting", kInt8},
                          {"connect_attempts", kInt8},
                          {"connect_failures", kInt8}});
  REQUIRE(servers.rows.size() == 1);
  CHECK(servers.rows[0] == std::vector<Cell>{"main", "10.0.0.5", "5433", "50", "7", "30", "2", "3",
                                             "half_open", "4", "7", "2", "1", "100", "9"});

  const ResultSet dbs = single_result(run("SHOW DATABASES"));
  CHECK(dbs.names() == std::vector<std::string>{"name", "server", "dbname", "user", "pool_mode",
                                                "pool_size", "min_pool_size", "current_connections",
                                                "paused"});
  REQUIRE(dbs.rows.size() == 2);
  CHECK(dbs.rows[0] ==
        std::vector<Cell>{"app", "main", "app", "", "transaction", "10", "2", "6", "t"});
  CHECK(dbs.rows[1] ==
        std::vector<Cell>{"shop", "main", "shop_prod", "shopper", "session", "20", "0", "0", "f"});
}

TEST_CASE("SHOW CLIENTS asks for clients and renders times, waits and backends", "[admin]") {
  FakeActions fake;
  const ResultSet rs = single_result(run("SHOW CLIENTS", AdminRole::Stats, fake));
  CHECK(fake.snapshots == 1);
  CHECK(fake.with_clients);
  check_columns(rs, {{"id", kInt8},
                     {"peer", kText},
                     {"user", kText},
                     {"database", kText},
                     {"application_name", kText},
                     {"server", kText},
                     {"bulkhead", kText},
                     {"state", kText},
                     {"connected_at", kText},
                     {"wait_ms", kFloat8},
                     {"backend_pid", kInt8}});
  REQUIRE(rs.rows.size() == 2);
  CHECK(rs.rows[0] == std::vector<Cell>{"7", "127.0.0.1:5000", "alice", "app", "psql", "main",
                                        "interactive", "waiting", "2024-05-01T12:34:56.789Z", "2.5",
                                        std::nullopt});
  CHECK(rs.cell(1, "state") == "active");
  CHECK(rs.cell(1, "connected_at") == "2024-05-01T12:34:57.789Z");
  CHECK(rs.cell(1, "wait_ms") == std::nullopt);
  CHECK(rs.cell(1, "backend_pid") == "4242");

  fake.snapshots = 0;
  single_result(run("SHOW POOLS", AdminRole::Stats, fake));
  CHECK(fake.snapshots == 1);
  CHECK_FALSE(fake.with_clients);
}

TEST_CASE("SHOW STATS gives totals and averages in microseconds", "[admin]") {
  const ResultSet rs = single_result(run("SHOW STATS"));
  check_columns(rs, {{"database", kText},
                     {"user", kText},
                     {"total_xact_count", kInt8},
                     {"total_query_count", kInt8},
                     {"total_received", kInt8},
                     {"total_sent", kInt8},
                     {"total_xact_time_us", kInt8},
                     {"total_query_time_us", kInt8},
                     {"total_wait_time_us", kInt8},
                     {"avg_xact_time_us", kInt8},
                     {"avg_query_time_us", kInt8}});
  REQUIRE(rs.rows.size() == 2);
  CHECK(rs.rows[0] == std::vector<Cell>{"app", "alice", "4", "10", "1000", "5000", "8000", "5000",
                                        "1234", "2000", "500"});
  CHECK(rs.rows[1] ==
        std::vector<Cell>{"shop", "shopper", "0", "0", "0", "0", "0", "0", "0", "0", "0"});
}

TEST_CASE("SHOW CONFIG lists every key with its value, default and reloadability", "[admin]") {
  const ResultSet rs = single_result(run("SHOW CONFIG"));
  check_columns(rs, {{"key", kText}, {"value", kText}, {"default", kText}, {"changeable", kBool}});
  CHECK(rs.rows.size() == config::show_config(*make_config()).size());
  std::map<std::string, std::vector<Cell>> by_key;
  for (const auto& row : rs.rows) by_key[*row[0]] = row;
  CHECK(by_key["max_client_conn"] == std::vector<Cell>{"max_client_conn", "10000", "10000", "t"});
  CHECK(by_key["listen"][3] == "f");
  CHECK(by_key["databases.app.pool_size"][1] == "10");
  CHECK(by_key["servers.main.port"][1] == "5433");
  CHECK(by_key["databases.shop.password"][1] == "********");  // a secret key, set
  CHECK(by_key["databases.app.password"][1] == "\"\"");       // unset: visibly empty
}

TEST_CASE("no SHOW item prints a database password, not even to a stats user", "[admin]") {
  const admin::ShowItem item =
      GENERATE(from_range(admin::show_items().begin(), admin::show_items().end()));
  const std::string sql = "SHOW " + std::string(admin::to_string(item));
  CAPTURE(sql);
  const ResultSet rs = single_result(run(sql, AdminRole::Stats));
  for (const auto& row : rs.rows) {
    for (const Cell& cell : row) {
      if (cell) CHECK(cell->find(kShopPassword) == std::string::npos);
    }
  }
}

TEST_CASE("SHOW LISTS, VERSION and HELP", "[admin]") {
  const ResultSet lists = single_result(run("SHOW LISTS"));
  check_columns(lists, {{"list", kText}, {"items", kInt8}});
  std::map<std::string, Cell> items;
  for (const auto& row : lists.rows) items[*row[0]] = row[1];
  CHECK(items["databases"] == "2");
  CHECK(items["servers"] == "1");
  CHECK(items["bulkheads"] == "2");
  CHECK(items["pools"] == "2");
  CHECK(items["clients"] == "10");
  CHECK(items["clients_waiting"] == "3");
  CHECK(items["backends_active"] == "7");

  FakeActions fake;
  const ResultSet version = single_result(run("SHOW VERSION", AdminRole::Stats, fake));
  check_columns(version, {{"version", kText}});
  REQUIRE(version.rows.size() == 1);
  CHECK(version.rows[0][0] == "Sluice " SLUICE_VERSION);
  CHECK(fake.snapshots == 0);  // nothing of the pooler's state is read

  const ResultSet help = single_result(run("SHOW HELP", AdminRole::Stats, fake));
  CHECK(help.names() == std::vector<std::string>{"command", "description", "admin_only"});
  std::vector<std::string> commands;
  for (const auto& row : help.rows) commands.push_back(*row[0]);
  CHECK_THAT(commands, Catch::VectorContains(std::string("RELOAD")));
  CHECK_THAT(commands, Catch::VectorContains(std::string("SHOW BULKHEADS")));
  CHECK(fake.snapshots == 0);
}

// ---- commands and roles ---------------------------------------------------------------------

TEST_CASE("an admin's commands reach the actions and complete with their tag", "[admin]") {
  using Row = std::tuple<std::string, std::string, std::string>;  // sql, call, tag
  const auto [sql, call, tag] =
      GENERATE(Row{"SET BULKHEAD main.batch max_wait = '250ms'",
                   "set_bulkhead main|batch|max_wait|250ms", "SET"},
               Row{"set bulkhead batch MAX to 4", "set_bulkhead |batch|max|4", "SET"},
               Row{"RELOAD", "reload ", "RELOAD"}, Row{"PAUSE app", "pause app", "PAUSE"},
               Row{"pause", "pause ", "PAUSE"}, Row{"RESUME \"app\"", "resume app", "RESUME"},
               Row{"KILL_CLIENT 7", "kill_client 7", "KILL_CLIENT"},
               Row{"SHUTDOWN WAIT_FOR_CLIENTS", "shutdown wait", "SHUTDOWN"},
               Row{"shutdown;", "shutdown now", "SHUTDOWN"});
  CAPTURE(sql);
  FakeActions fake;
  const auto msgs = run(sql, AdminRole::Admin, fake);
  REQUIRE(types_of(msgs) == "C");
  CHECK(msgs[0].tag == tag);
  CHECK(fake.calls == std::vector<std::string>{call});
  CHECK(fake.snapshots == 0);
}

TEST_CASE("a stats user may only SHOW: changing commands get 42501 and do nothing", "[admin]") {
  const std::string sql = GENERATE("SET BULKHEAD b max = 1", "RELOAD", "PAUSE", "RESUME app",
                                   "KILL_CLIENT 1", "SHUTDOWN", "SHUTDOWN WAIT_FOR_CLIENTS");
  CAPTURE(sql);
  FakeActions fake;
  const Msg e = single_error(run(sql, AdminRole::Stats, fake));
  CHECK(e.sqlstate == "42501");
  CHECK_THAT(e.message, Catch::StartsWith("permission denied: "));
  CHECK_THAT(e.message, Catch::Contains("requires an admin user"));
  CHECK(fake.calls.empty());
}

TEST_CASE("a failing action's error is passed on with its SQLSTATE", "[admin]") {
  FakeActions fake;
  fake.failures["set_bulkhead"] = AdminError{"22023", "invalid value for max: \"x\""};
  fake.failures["kill_client"] = AdminError{"42704", "no client with id 9"};
  fake.failures["reload"] = AdminError{"", "reload failed"};  // not a SQLSTATE
  const Msg bad_value = single_error(run("SET BULKHEAD b max = x", AdminRole::Admin, fake));
  CHECK(bad_value.sqlstate == "22023");
  CHECK(bad_value.message == "invalid value for max: \"x\"");
  const Msg unknown = single_error(run("KILL_CLIENT 9", AdminRole::Admin, fake));
  CHECK(unknown.sqlstate == "42704");
  CHECK(unknown.message == "no client with id 9");
  const Msg internal = single_error(run("RELOAD", AdminRole::Admin, fake));
  CHECK(internal.sqlstate == "XX000");
}

TEST_CASE("parse errors are 42601, unknown SHOW items and settings 42704", "[admin]") {
  using Row = std::tuple<std::string, std::string>;
  const auto [sql, sqlstate] =
      GENERATE(Row{"FOO", "42601"}, Row{"SHOW", "42601"}, Row{"SET BULKHEAD", "42601"},
               Row{"KILL_CLIENT x", "42601"}, Row{"SHOW FOO", "42704"},
               Row{"SET BULKHEAD b color = 1", "42704"}, Row{"SHOW 'POOLS", "42601"});
  CAPTURE(sql);
  CHECK(single_error(run(sql, AdminRole::Stats)).sqlstate == sqlstate);
}

// ---- several statements ---------------------------------------------------------------------

TEST_CASE("statements run in order and the first error ends the query", "[admin]") {
  FakeActions fake;
  fake.failures["kill_client"] = AdminError{"42704", "no client with id 7"};
  const auto msgs =
      run("SHOW VERSION; KILL_CLIENT 7; RELOAD; SHOW VERSION", AdminRole::Admin, fake);
  CHECK(types_of(msgs) == "TDCE");
  CHECK(msgs[3].sqlstate == "42704");
  CHECK(fake.calls == std::vector<std::string>{"kill_client 7"});

  FakeActions ok;
  const auto both = run("RELOAD; PAUSE app;", AdminRole::Admin, ok);
  REQUIRE(types_of(both) == "CC");
  CHECK(both[0].tag == "RELOAD");
  CHECK(both[1].tag == "PAUSE");
  CHECK(ok.calls == std::vector<std::string>{"reload ", "pause app"});

  FakeActions stats;
  const auto denied = run("SHOW VERSION; RELOAD; SHOW VERSION", AdminRole::Stats, stats);
  CHECK(types_of(denied) == "TDCE");
  CHECK(denied[3].sqlstate == "42501");
}

TEST_CASE("a syntax error anywhere runs nothing, as in PostgreSQL", "[admin]") {
  FakeActions fake;
  const Msg e = single_error(run("RELOAD; PAUSE; SHOW NOPE", AdminRole::Admin, fake));
  CHECK(e.sqlstate == "42704");
  CHECK(fake.calls.empty());
}

TEST_CASE("an empty query gets EmptyQueryResponse", "[admin]") {
  const std::string sql = GENERATE("", "   ", ";", " ; ;", "-- nothing", "/* nothing */");
  CAPTURE(sql);
  CHECK(types_of(run(sql)) == "I");
}

TEST_CASE("too many statements in one query are refused before any runs", "[admin]") {
  FakeActions fake;
  std::string sql;
  for (std::size_t i = 0; i <= admin::kMaxAdminStatements; ++i) sql += "RELOAD;";
  CHECK(single_error(run(sql, AdminRole::Admin, fake)).sqlstate == "54000");
  CHECK(fake.calls.empty());
}

// ---- serve_admin over a socketpair ----------------------------------------------------------

// Sends `input` (then EOF) to serve_admin and returns everything it wrote. The input and output
// stay far below the socket buffers, so one thread can play both sides.
std::vector<Msg> serve(const pr::Buffer& input, FakeActions& fake,
                       AdminRole role = AdminRole::Admin, std::uint32_t max_message = 1 << 20) {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  asio::io_context ctx;
  Socket server(ctx);
  server.assign(asio::generic::stream_protocol(AF_UNIX, SOCK_STREAM), fds[0]);
  std::size_t sent = 0;
  while (sent < input.size()) {
    const ssize_t n = ::write(fds[1], input.data() + sent, input.size() - sent);
    REQUIRE(n > 0);
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fds[1], SHUT_WR);

  ReadBuffer in;
  bool done = false;
  std::exception_ptr failure;
  asio::co_spawn(ctx, serve_admin(server, in, role, fake, max_message), [&](std::exception_ptr e) {
    done = true;
    failure = e;
  });
  ctx.run();
  CHECK(done);
  CHECK_FALSE(failure);
  server.close();

  pr::Buffer output;
  std::byte chunk[4096];
  for (;;) {
    const ssize_t n = ::read(fds[1], chunk, sizeof chunk);
    // A peer that closes with input unread makes Linux report ECONNRESET after the data.
    REQUIRE((n >= 0 || errno == ECONNRESET));
    if (n <= 0) break;
    output.insert(output.end(), chunk, chunk + n);
  }
  ::close(fds[1]);
  return decode(output);
}

void query(pr::Buffer& out, std::string_view sql) { pr::build_query(out, sql); }
void parse(pr::Buffer& out) {
  pr::MessageWriter(out).begin('P').add_cstring("").add_cstring("SELECT 1").add_u16(0).finish();
}
void bind(pr::Buffer& out) {
  pr::MessageWriter(out)
      .begin('B')
      .add_cstring("")
      .add_cstring("")
      .add_u16(0)
      .add_u16(0)
      .add_u16(0)
      .finish();
}
void execute(pr::Buffer& out) {
  pr::MessageWriter(out).begin('E').add_cstring("").add_u32(0).finish();
}

TEST_CASE("serve_admin answers each Query with ReadyForQuery and stops at Terminate", "[admin]") {
  FakeActions fake;
  pr::Buffer in;
  query(in, "SHOW VERSION");
  query(in, "RELOAD; PAUSE");
  query(in, "");
  pr::build_terminate(in);
  query(in, "SHUTDOWN");  // after Terminate: never read
  const auto msgs = serve(in, fake);
  CHECK(types_of(msgs) == "TDCZCCZIZ");
  CHECK(msgs[3].status == 'I');
  CHECK(fake.calls == std::vector<std::string>{"reload ", "pause ", "pause_settled "});
}

TEST_CASE("serve_admin answers PAUSE only once the paused databases have settled", "[admin]") {
  FakeActions fake;
  fake.unsettled = 3;
  pr::Buffer in;
  query(in, "PAUSE app; PAUSE");
  query(in, "SHOW VERSION");
  const auto msgs = serve(in, fake);
  CHECK(types_of(msgs) == "CCZTDCZ");
  CHECK(fake.calls == std::vector<std::string>{"pause app", "pause ", "pause_settled app",
                                               "pause_settled app", "pause_settled app",
                                               "pause_settled app", "pause_settled "});

  FakeActions failing;
  failing.failures["pause"] = AdminError{"3D000", "database \"nope\" does not exist"};
  pr::Buffer again;
  query(again, "PAUSE nope");
  const auto refused = serve(again, failing);
  CHECK(types_of(refused) == "EZ");
  CHECK(failing.calls == std::vector<std::string>{"pause nope"});
}

TEST_CASE("serve_admin refuses the extended protocol once and skips to Sync", "[admin]") {
  FakeActions fake;
  pr::Buffer in;
  parse(in);
  bind(in);
  query(in, "RELOAD");  // skipped: still waiting for Sync
  execute(in);
  pr::build_sync(in);
  pr::build_sync(in);  // a bare Sync is answered too
  query(in, "RELOAD");
  const auto msgs = serve(in, fake);  // then EOF
  REQUIRE(types_of(msgs) == "EZZCZ");
  CHECK(msgs[0].sqlstate == "0A000");
  CHECK(msgs[0].message == "the admin console supports only the simple query protocol");
  CHECK(fake.calls == std::vector<std::string>{"reload "});
}

TEST_CASE("serve_admin answers a FunctionCall with 0A000 and ReadyForQuery at once", "[admin]") {
  FakeActions fake;
  pr::Buffer in;
  pr::MessageWriter(in).begin('F').add_u32(1).add_u16(0).add_u16(0).add_u16(0).finish();
  query(in, "SHOW VERSION");
  const auto msgs = serve(in, fake);
  REQUIRE(types_of(msgs) == "EZTDCZ");
  CHECK(msgs[0].sqlstate == "0A000");
}

TEST_CASE("serve_admin ends with FATAL 08P01 on bad framing or an unexpected message", "[admin]") {
  FakeActions fake;
  SECTION("a length below 4") {
    pr::Buffer in;
    query(in, "SHOW VERSION");
    for (int b : {int{'Q'}, 0, 0, 0, 3}) in.push_back(static_cast<std::byte>(b));
    const auto msgs = serve(in, fake);
    REQUIRE(types_of(msgs) == "TDCZE");
    CHECK(msgs[4].severity == "FATAL");
    CHECK(msgs[4].sqlstate == "08P01");
  }
  SECTION("a message over max_message_size") {
    pr::Buffer in;
    query(in, "SHOW VERSION -- " + std::string(2000, 'x'));
    const auto msgs = serve(in, fake, AdminRole::Admin, 1024);
    REQUIRE(types_of(msgs) == "E");
    CHECK(msgs[0].severity == "FATAL");
    CHECK(msgs[0].sqlstate == "08P01");
  }
  SECTION("a password message after login") {
    pr::Buffer in;
    pr::build_password_message(in, "secret");
    query(in, "RELOAD");
    const auto msgs = serve(in, fake);
    REQUIRE(types_of(msgs) == "E");
    CHECK(msgs[0].severity == "FATAL");
    CHECK(msgs[0].sqlstate == "08P01");
  }
  CHECK(fake.calls.empty());
}

TEST_CASE("serve_admin returns quietly at EOF", "[admin]") {
  FakeActions fake;
  CHECK(serve({}, fake).empty());
  pr::Buffer in;
  query(in, "SHOW VERSION");
  in.resize(in.size() - 3);  // cut short
  CHECK(serve(in, fake).empty());
}

}  // namespace
}  // namespace sluice
