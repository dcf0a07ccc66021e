// The settings tracker of transaction pooling (protocol/session_settings.hpp): a client's expected
// settings after its SQL changed them, as the server reports them back, and the query that brings
// another backend in line with them (bound parameters, never SQL text). Which SQL calls for a
// read-back is session_features_test's.
#include "protocol/session_settings.hpp"

#include "tests/unit/protocol/wire_bytes.hpp"

#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"

#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::protocol {
namespace {

// A backend as plan_settings_sync() sees it: the value of each parameter it knows.
struct FakeBackend {
  std::map<std::string, std::string> values;
  SettingList applied;
  std::optional<std::string> current(std::string_view name) const {
    auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  }
  SettingsSync sync(const SettingList& desired) {
    return plan_settings_sync(
        desired, [this](std::string_view n) { return current(n); }, applied);
  }
};

const SettingList kExpected = {{"application_name", "app"},
                               {"TimeZone", "UTC"},
                               {"extra_float_digits", "3"},
                               {"search_path", "\"$user\", public"}};

TEST_CASE("a read-back replaces the unreported settings and keeps the reported ones",
          "[protocol][settings]") {
  // After `SET search_path = tenant_7, public; SET statement_timeout = '5s'`.
  const SettingList rows = {{"extra_float_digits", "3"},
                            {"search_path", "tenant_7, public"},
                            {"statement_timeout", "5000"}};
  CHECK(merge_session_settings(kExpected, rows) == SettingList{{"application_name", "app"},
                                                               {"TimeZone", "UTC"},
                                                               {"extra_float_digits", "3"},
                                                               {"search_path", "tenant_7, public"},
                                                               {"statement_timeout", "5000"}});
}

TEST_CASE("RESET, RESET ALL and DISCARD ALL clear what the server no longer lists",
          "[protocol][settings]") {
  // RESET search_path: the server lists only what is still set for the session.
  CHECK(merge_session_settings(kExpected, {{"extra_float_digits", "3"}}) ==
        SettingList{{"application_name", "app"}, {"TimeZone", "UTC"}, {"extra_float_digits", "3"}});
  // RESET ALL / DISCARD ALL: nothing is set for the session any more.
  CHECK(merge_session_settings(kExpected, {}) ==
        SettingList{{"application_name", "app"}, {"TimeZone", "UTC"}});
}

TEST_CASE("a SET that failed or was rolled back leaves the expected settings as they were",
          "[protocol][settings]") {
  // The server still lists the old values: nothing changes.
  const SettingList rows = {{"extra_float_digits", "3"}, {"search_path", "\"$user\", public"}};
  CHECK(merge_session_settings(kExpected, rows) == kExpected);
}

TEST_CASE("reported and transaction-scoped rows of a read-back are ignored",
          "[protocol][settings]") {
  // ParameterStatus keeps reported parameters current; the read-back must not undo it.
  const SettingList rows = {{"TimeZone", "Europe/Paris"},
                            {"DateStyle", "ISO, DMY"},
                            {"transaction_isolation", "serializable"},
                            {"myapp.tenant", "42"},
                            {"", "x"}};
  CHECK(merge_session_settings(kExpected, rows) ==
        SettingList{{"application_name", "app"}, {"TimeZone", "UTC"}, {"myapp.tenant", "42"}});
}

TEST_CASE("a backend is synced with set_config() for what differs and a reset for the rest",
          "[protocol][settings]") {
  FakeBackend b;
  b.values = {{"application_name", "app"}, {"TimeZone", "UTC"}};
  b.applied = {{"work_mem", "8192"}};  // a previous client's setting
  const SettingsSync sync = b.sync(kExpected);
  CHECK(sync.sets ==
        SettingList{{"extra_float_digits", "3"}, {"search_path", "\"$user\", public"}});
  CHECK(sync.resets == std::vector<std::string>{"work_mem"});
  CHECK(b.applied ==
        SettingList{{"extra_float_digits", "3"}, {"search_path", "\"$user\", public"}});
}

TEST_CASE("client_encoding is set before every other setting", "[protocol][settings]") {
  FakeBackend b;
  b.values = {{"client_encoding", "LATIN1"}};
  const SettingsSync sync =
      b.sync({{"search_path", "sch\xc3\xa9ma"}, {"client_encoding", "UTF8"}, {"work_mem", "1MB"}});
  CHECK(sync.sets == SettingList{{"client_encoding", "UTF8"},
                                 {"search_path", "sch\xc3\xa9ma"},
                                 {"work_mem", "1MB"}});
}

TEST_CASE("names and values are bound parameters, never SQL text", "[protocol][settings]") {
  SettingsSync sync;
  sync.sets = {{"app.x", "it's a \\ test"}};
  sync.resets = {"Odd\"Name"};
  Buffer out;
  build_settings_sync(out, sync);
  using test::Body;
  using test::message;
  const test::Bytes expected = test::concat({
      message(fe::kParse, Body()
                              .cstr("")
                              .cstr("SELECT pg_catalog.set_config($1, $2, false)")
                              .u16(2)
                              .u32(kOidText)
                              .u32(kOidText)),
      message(fe::kBind, Body()
                             .cstr("")
                             .cstr("")
                             .u16(0)
                             .u16(2)
                             .i32(5)
                             .str("app.x")
                             .i32(13)
                             .str("it's a \\ test")
                             .u16(0)),
      message(fe::kExecute, Body().cstr("").i32(0)),
      // A reset: the value is NULL.
      message(fe::kBind,
              Body().cstr("").cstr("").u16(0).u16(2).i32(8).str("Odd\"Name").i32(-1).u16(0)),
      message(fe::kExecute, Body().cstr("").i32(0)),
      message(fe::kSync, Body()),
  });
  CHECK(out == expected);
}

TEST_CASE("a backend that already matches needs no query; fixed parameters are never set",
          "[protocol][settings]") {
  FakeBackend b;
  b.values = {{"application_name", "app"}, {"extra_float_digits", "3"}};
  b.applied = {{"extra_float_digits", "3"}};
  CHECK(b.sync({{"application_name", "app"},
                {"extra_float_digits", "3"},
                {"server_version", "99"},
                {"is_superuser", "on"},
                {"session_authorization", "postgres"}})
            .empty());
  CHECK(b.applied == SettingList{{"extra_float_digits", "3"}});
}

TEST_CASE("parameter names are compared without regard to case", "[protocol][settings]") {
  CHECK(merge_session_settings({{"timezone", "UTC"}}, {{"Search_Path", "x"}}) ==
        SettingList{{"timezone", "UTC"}, {"Search_Path", "x"}});
  FakeBackend b;
  b.applied = {{"SEARCH_PATH", "x"}};
  // Desired under another spelling: kept, not reset.
  CHECK(b.sync({{"search_path", "x"}}).resets.empty());
  CHECK(is_fixed_parameter("Server_Version"));
  CHECK_FALSE(is_fixed_parameter("search_path"));
}

TEST_CASE("custom parameter names are collected from SQL, folded, once each",
          "[protocol][settings]") {
  std::vector<std::string> names;
  collect_custom_names("SET myapp.tenant = 42; SELECT set_config('MyApp.User', $1, false)", names);
  collect_custom_names("SELECT pg_catalog.set_config('myapp.tenant', '1', false)", names);
  CHECK(names == std::vector<std::string>{"myapp.tenant", "myapp.user", "pg_catalog.set_config"});
  // Not names: a number, a lone word, a dot at an edge.
  names.clear();
  collect_custom_names("SELECT 1.5, a., .b, x", names);
  CHECK(names.empty());
  CHECK(is_custom_name("myapp.tenant"));
  CHECK_FALSE(is_custom_name("search_path"));
  CHECK_FALSE(is_custom_name("a.b c"));
  CHECK_FALSE(is_custom_name("1a.b"));
}

TEST_CASE("the number of custom names collected is bounded", "[protocol][settings]") {
  std::string sql;
  for (int i = 0; i < 1000; ++i) sql += "SET app.p" + std::to_string(i) + " = 1;";
  std::vector<std::string> names;
  collect_custom_names(sql, names);
  CHECK(names.size() == kMaxCustomNames);
}

TEST_CASE("the read-back query asks pg_settings and each custom name", "[protocol][settings]") {
  CHECK(read_settings_query({}) ==
        "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'");
  CHECK(
      read_settings_query({"myapp.tenant", "a.b'c"}) ==
      "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session' UNION ALL "
      "SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY["
      "E'myapp.tenant', E'a.b''c']::text[]) AS n WHERE pg_catalog.current_setting(n, true) <> ''");
}

}  // namespace
}  // namespace sluice::protocol
