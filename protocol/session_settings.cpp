#include "protocol/session_settings.hpp"

#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "protocol/text.hpp"

#include <array>

namespace sluice::protocol {
namespace {

const std::string* find_setting(const SettingList& list, std::string_view name) {
  for (const auto& [k, v] : list) {
    if (iequals(k, name)) return &v;
  }
  return nullptr;
}

void put_setting(SettingList& list, std::string_view name, std::string_view value) {
  for (auto& [k, v] : list) {
    if (iequals(k, name)) {
      v = value;
      return;
    }
  }
  list.emplace_back(std::string(name), std::string(value));
}

// An E'' literal: backslash escapes are read whatever standard_conforming_strings says, so
// doubling quotes and backslashes is right under either setting.
void append_literal(std::string& sql, std::string_view s) {
  sql += "E'";
  for (char c : s) {
    if (c == '\'' || c == '\\') sql += c;
    sql += c;
  }
  sql += '\'';
}

bool is_transaction_scoped(std::string_view name) {
  constexpr std::string_view kPrefix = "transaction_";
  return name.size() >= kPrefix.size() && iequals(name.substr(0, kPrefix.size()), kPrefix);
}

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$';
}

bool is_name_start(char c) { return is_name_char(c) && c != '$' && !(c >= '0' && c <= '9'); }

}  // namespace

bool is_custom_name(std::string_view name) {
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 >= name.size()) return false;
  if (!is_name_start(name[0]) || !is_name_start(name[dot + 1])) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    if (i != dot && !is_name_char(name[i])) return false;
  }
  return true;
}

void collect_custom_names(std::string_view sql, std::vector<std::string>& names) {
  std::size_t i = 0;
  while (i < sql.size() && names.size() < kMaxCustomNames) {
    if (!is_name_start(sql[i]) || (i > 0 && is_name_char(sql[i - 1]))) {
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < sql.size() && is_name_char(sql[end])) ++end;
    // An optional closing quote of a quoted first part ("a"."b" is not a GUC name; "a.b" is).
    if (end + 1 < sql.size() && sql[end] == '.' && is_name_start(sql[end + 1])) {
      std::size_t second = end + 1;
      while (second < sql.size() && is_name_char(sql[second])) ++second;
      std::string name(sql.substr(i, second - i));
      for (char& c : name) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');  // GUC names fold
      }
      bool seen = false;
      for (const std::string& n : names) seen = seen || n == name;
      if (!seen) names.push_back(std::move(name));
      i = second;
    } else {
      i = end;
    }
  }
}

std::string read_settings_query(const std::vector<std::string>& custom_names) {
  std::string sql = "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'";
  if (custom_names.empty()) return sql;
  sql += " UNION ALL SELECT n, pg_catalog.current_setting(n, true) FROM pg_catalog.unnest(ARRAY[";
  for (std::size_t i = 0; i < custom_names.size(); ++i) {
    if (i > 0) sql += ", ";
    append_literal(sql, custom_names[i]);
  }
  sql += "]::text[]) AS n WHERE pg_catalog.current_setting(n, true) <> ''";
  return sql;
}

bool is_fixed_parameter(std::string_view name) {
  static constexpr std::array<std::string_view, 6> kFixed = {
      "server_version", "server_encoding", "integer_datetimes",
      "is_superuser",   "in_hot_standby",  "session_authorization"};
  for (std::string_view fixed : kFixed) {
    if (iequals(fixed, name)) return true;
  }
  return false;
}

SettingList merge_session_settings(const SettingList& expected, const SettingList& session_rows) {
  SettingList merged;
  for (const auto& [name, value] : expected) {
    if (is_reported_parameter(name)) merged.emplace_back(name, value);
  }
  for (const auto& [name, value] : session_rows) {
    if (name.empty() || is_reported_parameter(name) || is_transaction_scoped(name)) continue;
    put_setting(merged, name, value);
  }
  return merged;
}

SettingsSync plan_settings_sync(
    const SettingList& desired,
    const std::function<std::optional<std::string>(std::string_view)>& current,
    SettingList& applied) {
  SettingsSync sync;
  for (const auto& [name, value] : desired) {
    if (is_fixed_parameter(name) || current(name) == value) continue;
    // The encoding goes first: the backend reads every later value in it.
    if (iequals(name, "client_encoding")) {
      sync.sets.emplace(sync.sets.begin(), name, value);
    } else {
      sync.sets.emplace_back(name, value);
    }
    if (!is_reported_parameter(name)) put_setting(applied, name, value);
  }
  for (auto it = applied.begin(); it != applied.end();) {
    if (find_setting(desired, it->first) == nullptr) {
      sync.resets.push_back(std::move(it->first));
      it = applied.erase(it);
    } else {
      ++it;
    }
  }
  return sync;
}

void build_settings_sync(Buffer& out, const SettingsSync& sync) {
  MessageWriter(out)
      .begin(fe::kParse)
      .add_cstring("")
      .add_cstring("SELECT pg_catalog.set_config($1, $2, false)")
      .add_u16(2)
      .add_u32(kOidText)
      .add_u32(kOidText)
      .finish();
  auto bind_execute = [&out](std::string_view name, const std::string* value) {
    MessageWriter w(out);
    w.begin(fe::kBind).add_cstring("").add_cstring("").add_u16(0).add_u16(2);
    w.add_i32(static_cast<std::int32_t>(name.size())).add_bytes(name);
    if (value == nullptr) {
      w.add_i32(-1);  // NULL: set_config() resets the parameter
    } else {
      w.add_i32(static_cast<std::int32_t>(value->size())).add_bytes(*value);
    }
    w.add_u16(0).finish();
    MessageWriter(out).begin(fe::kExecute).add_cstring("").add_u32(0).finish();
  };
  for (const auto& [name, value] : sync.sets) bind_execute(name, &value);
  for (const auto& name : sync.resets) bind_execute(name, nullptr);
  build_sync(out);
}

}  // namespace sluice::protocol
