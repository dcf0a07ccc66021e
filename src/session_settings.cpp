// ClientSession's session settings under transaction pooling (protocol/session_settings.hpp):
// bringing a backend in line with what the client expects before its transaction runs, and
// reading the settings back from the backend after a transaction that may have changed them.
#include "protocol/session_settings.hpp"

#include "protocol/messages.hpp"
#include "protocol/session_features.hpp"
#include "src/client_session.hpp"
#include "src/log.hpp"
#include "src/runtime.hpp"

#include <algorithm>

namespace sluice {

namespace pr = protocol;

namespace {

// While Sluice reads a backend's settings back (start_settings_readback()).
const pr::StreamScanner::InspectSet kBackendInspectReadback = pr::make_inspect_set(
    pr::be::kReadyForQuery, pr::be::kParameterStatus, pr::be::kDataRow, pr::be::kErrorResponse);

// A row of the read-back longer than this is not held: the settings are then unknown.
constexpr std::size_t kReadbackInspectMax = 64 * 1024;

}  // namespace

// Brings the backend's parameters in line with what this client expects. At login the client
// expects the server's defaults overlaid with its startup parameters; later, the values it has
// seen (params_, kept up to date from ParameterStatus and by reading settings back). One pipeline
// of set_config() calls with the names and values bound (protocol/session_settings.hpp); nothing
// when the backend already matches, which is the common case.
awaitable<std::optional<BackendError>> ClientSession::sync_parameters(bool login) {
  Backend& b = *backend_;
  Params login_desired;
  if (login) {
    for (const auto& [name, value] : b.defaults) {
      if (!pr::is_fixed_parameter(name)) login_desired.emplace_back(name, value);
    }
    for (const auto& [name, value] : *params_) set_param(login_desired, name, value);
  }
  // After login the client's own list is what it expects (no copy: this runs per transaction).
  const Params& desired = login ? login_desired : params_->params();
  // The common case: this backend was last brought in line with exactly these settings (sets in
  // use are interned, and the backend holds its set: same settings, same pointer).
  if (!login && b.synced_params != nullptr && b.synced_params == params_) {
    co_return std::nullopt;
  }
  const pr::SettingsSync sync = pr::plan_settings_sync(
      desired, [&b](std::string_view name) { return b.known_value(name); }, b.applied);
  if (!sync.empty()) {
    pr::Buffer out;
    pr::build_settings_sync(out, sync);
    auto err = co_await run_internal_messages(b, out, rt_.config()->max_message_size);
    if (err) {
      backend_failed_ = true;  // its settings are now unknown: never reuse it
      co_return err;
    }
  }
  if (login) {
    // From now on the client's expectations are complete and in the server's spelling.
    Params settled;
    for (const auto& [name, value] : b.reported) {
      if (!pr::is_fixed_parameter(name)) settled.emplace_back(name, value);
    }
    for (const auto& [name, value] : desired) {
      if (!pr::is_reported_parameter(name)) set_param(settled, name, value);
    }
    params_ = ParamSetTable::process().intern(std::move(settled));
  }
  b.synced_params = params_;
  co_return std::nullopt;
}

// `sql`, sent to the backend, may change session settings: they are read back when the
// transaction ends, with the custom parameter names it may set.
void ClientSession::note_settings_change(std::string_view sql) {
  settings_changed_ = true;
  if (!custom_names_) custom_names_ = std::make_unique<std::vector<std::string>>();
  pr::collect_custom_names(sql, *custom_names_);
}

// Sends the read-back query (protocol::read_settings_query()) to the idle backend; its answer is
// consumed by the pump (on_readback_message()). The client may send its next transaction meanwhile:
// the backend answers it after this query. Returns whether the pump reads on (false: it has
// stopped).
bool ClientSession::start_settings_readback() {
  settings_changed_ = false;
  // The custom parameters the client already expects are read too: a RESET ALL may end them.
  std::vector<std::string> names =
      custom_names_ ? std::move(*custom_names_) : std::vector<std::string>();
  custom_names_.reset();
  for (const auto& [name, value] : *params_) {
    if (pr::is_custom_name(name) && std::find(names.begin(), names.end(), name) == names.end()) {
      names.push_back(name);
    }
  }
  pr::Buffer query;
  pr::build_query(query, pr::read_settings_query(names));
  error_code ec;
  // Nothing is outstanding, so the socket's send buffer is empty and a short message goes
  // whole. Were it cut, the stream to the backend would be broken: give the backend up.
  if (send_now(backend_->socket, asio::buffer(query), ec) != query.size()) {
    log::session().warn("settings_readback_failed session={} reason=send", key_pid_);
    backend_failed_ = true;
    end_backend_pump({}, false);
    return false;
  }
  readback_ = std::make_unique<SettingsReadback>();
  if (pending_syncs_++ == 0) statement_started();  // timed as a statement (statement_timeout)
  backend_scanner_ = pr::StreamScanner(pr::Direction::Backend, max_message_,
                                       kBackendInspectReadback, kReadbackInspectMax);
  return true;
}

void ClientSession::on_readback_message(pr::ByteView msg) {
  Backend& b = *backend_;
  switch (static_cast<char>(msg[0])) {
    case pr::be::kDataRow: {
      auto row = pr::read_data_row(msg);
      if (row && row->size() == 2 && (*row)[0] && (*row)[1]) {
        readback_->rows.emplace_back(*(*row)[0], *(*row)[1]);
      } else {
        readback_->failed = true;
      }
      break;
    }
    case pr::be::kErrorResponse:
      readback_->failed = true;
      break;
    case pr::be::kParameterStatus:
      if (auto p = pr::read_parameter_status(msg)) {
        b.reported[std::string(p->name)] = std::string(p->value);
      }
      break;
    case pr::be::kReadyForQuery: {
      b.tx = pr::read_ready_for_query(msg).value_or(pr::TxStatus::Failed);
      const std::unique_ptr<SettingsReadback> done = std::move(readback_);
      use_relay_backend_scanner();
      if (--pending_syncs_ > 0) statement_started();  // the client's next statement runs now
      if (done->failed) {
        // The settings on this backend are unknown: the client keeps it, as before this feature.
        log::session().warn("settings_readback_failed session={} reason=server", key_pid_);
        pin(pr::SessionFeature::SettingsUnread);
        break;
      }
      params_ = ParamSetTable::process().intern(
          pr::merge_session_settings(params_->params(), done->rows));
      b.applied.clear();
      for (const auto& [name, value] : *params_) {
        if (!pr::is_reported_parameter(name)) b.applied.emplace_back(name, value);
      }
      b.synced_params = params_;
      break;
    }
    default:
      break;
  }
}

}  // namespace sluice
