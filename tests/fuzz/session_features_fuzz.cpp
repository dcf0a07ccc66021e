// Fuzzes what transaction pooling reads out of client SQL (protocol/session_features.hpp) and the
// settings tracker fed by it (protocol/session_settings.hpp).
//
// The whole input is SQL for inspect_session_use(). Properties: the fast prefilter never hides
// what the lexer finds (inspect_session_use() equals the lexer alone, and any finding implies
// may_use_session_state()); collect_custom_names() returns distinct, folded custom names only,
// at most kMaxCustomNames, and no more when called again; read_settings_query() quotes every
// name. The input's lines then become setting lists ("e name=value" expected, "r" read-back rows,
// "a" applied, "b" the backend's current values, anything else a row) for
// merge_session_settings() and plan_settings_sync(), whose sync must be idempotent: once a
// backend holds what the query set, planning again for the same settings sends nothing.
#include "tests/fuzz/fuzz_support.hpp"

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "protocol/session_settings.hpp"
#include "protocol/text.hpp"

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::protocol::fuzz {
namespace {

std::string folded(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool has_name(const SettingList& list, std::string_view name) {
  const std::string key = folded(name);
  for (const auto& entry : list) {
    if (folded(entry.first) == key) return true;
  }
  return false;
}

void check_session_use(std::string_view sql) {
  const SessionUse use = inspect_session_use(sql);
  SLUICE_FUZZ_CHECK(detail::inspect_session_use_lexer(sql) == use);
  if (use != SessionUse{}) SLUICE_FUZZ_CHECK(detail::may_use_session_state(sql));
  SLUICE_FUZZ_CHECK(detect_session_feature(sql) == use.pin);
  SLUICE_FUZZ_CHECK(to_string(use.pin) != nullptr);
  SLUICE_FUZZ_CHECK(use.pin != SessionFeature::NamedStatement &&
                    use.pin != SessionFeature::SettingsUnread);
}

std::vector<std::string> check_custom_names(std::string_view sql) {
  std::vector<std::string> names;
  collect_custom_names(sql, names);
  SLUICE_FUZZ_CHECK(names.size() <= kMaxCustomNames);
  for (std::size_t i = 0; i < names.size(); ++i) {
    SLUICE_FUZZ_CHECK(is_custom_name(names[i]) && names[i] == folded(names[i]));
    for (std::size_t j = 0; j < i; ++j) SLUICE_FUZZ_CHECK(names[i] != names[j]);
  }
  // Collecting again from the same text adds nothing.
  const std::size_t before = names.size();
  collect_custom_names(sql, names);
  SLUICE_FUZZ_CHECK(names.size() == before);

  const std::string query = read_settings_query(names);
  constexpr std::string_view kBase =
      "SELECT name, setting FROM pg_catalog.pg_settings WHERE source = 'session'";
  SLUICE_FUZZ_CHECK(query.compare(0, kBase.size(), kBase) == 0);
  // Every literal is closed: the quotes of an E'' literal pair up, doubled ones included.
  std::size_t quotes = 0;
  for (char c : query) quotes += c == '\'' ? 1 : 0;
  SLUICE_FUZZ_CHECK(quotes % 2 == 0);
  return names;
}

struct Lists {
  SettingList expected, rows, applied;
  std::map<std::string, std::string> backend;  // folded name -> value
};

Lists split_lists(std::string_view text, const std::vector<std::string>& custom_names) {
  Lists lists;
  std::size_t pos = 0;
  int count = 0;
  while (pos < text.size() && count++ < 64) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() < 2) continue;
    const char list = line[0];
    line.remove_prefix(2);
    const std::size_t eq = line.find('=');
    const std::string_view name = line.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? "" : line.substr(eq + 1);
    switch (list) {
      case 'e':
        lists.expected.emplace_back(name, value);
        break;
      case 'a':  // Sluice records only unreported parameters there, once each
        if (!is_reported_parameter(name) && !has_name(lists.applied, name)) {
          lists.applied.emplace_back(name, value);
        }
        break;
      case 'b':
        lists.backend[folded(name)] = std::string(value);
        break;
      default:
        lists.rows.emplace_back(name, value);
        break;
    }
  }
  for (const std::string& name : custom_names) {
    if (lists.rows.size() >= 96) break;
    lists.rows.emplace_back(name, "on");
  }
  return lists;
}

void check_settings(Lists lists) {
  const SettingList merged = merge_session_settings(lists.expected, lists.rows);
  for (const auto& [name, value] : merged) {
    if (is_reported_parameter(name)) {
      SLUICE_FUZZ_CHECK(has_name(lists.expected, name));
    } else {
      SLUICE_FUZZ_CHECK(!name.empty() && has_name(lists.rows, name));
      SLUICE_FUZZ_CHECK(folded(name).rfind("transaction_", 0) != 0);
    }
  }

  // The settings a client expects name each parameter once (merge keeps that for the rows; the
  // reported ones come from ParameterStatus, one value each).
  SettingList desired;
  for (const auto& entry : merged) {
    if (!has_name(desired, entry.first)) desired.push_back(entry);
  }
  auto current = [&lists](std::string_view name) -> std::optional<std::string> {
    auto it = lists.backend.find(folded(name));
    if (it == lists.backend.end()) return std::nullopt;
    return it->second;
  };
  SettingList applied = lists.applied;
  const SettingsSync sync = plan_settings_sync(desired, current, applied);
  if (!sync.empty()) {
    // The messages frame one after the other, up to a final Sync; client_encoding comes first.
    Buffer out;
    build_settings_sync(out, sync);
    ByteView rest(out.data(), out.size());
    char last = 0;
    while (!rest.empty()) {
      const FrameResult f = peek_frame(rest, Direction::Frontend, kDefaultMaxMessageLength);
      SLUICE_FUZZ_CHECK(f.status == DecodeStatus::Ok && f.frame.size() <= rest.size());
      last = f.frame.type;
      rest = rest.subspan(f.frame.size());
    }
    SLUICE_FUZZ_CHECK(last == fe::kSync);
    for (std::size_t i = 1; i < sync.sets.size(); ++i) {
      SLUICE_FUZZ_CHECK(!iequals(sync.sets[i].first, "client_encoding"));
    }
  }
  for (const auto& entry : applied) {
    SLUICE_FUZZ_CHECK(has_name(desired, entry.first));
    SLUICE_FUZZ_CHECK(!is_reported_parameter(entry.first));
  }
  // The backend once the query ran: it holds every settable desired value.
  for (const auto& [name, value] : desired) {
    if (!is_fixed_parameter(name)) lists.backend[folded(name)] = value;
  }
  const SettingList applied_once = applied;
  SLUICE_FUZZ_CHECK(plan_settings_sync(desired, current, applied).empty());
  SLUICE_FUZZ_CHECK(applied == applied_once);
}

}  // namespace
}  // namespace sluice::protocol::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sluice::protocol;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  fuzz::check_session_use(input);
  const std::vector<std::string> names = fuzz::check_custom_names(input);
  fuzz::check_settings(fuzz::split_lists(input, names));
  return 0;
}
