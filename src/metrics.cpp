#include "src/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <stdexcept>

namespace sluice {
namespace {

constexpr bool metrics_table_is_ordered() {
  for (std::size_t i = 0; i < kMetrics.size(); ++i) {
    if (static_cast<std::size_t>(kMetrics[i].id) != i) return false;
  }
  return true;
}
static_assert(metrics_table_is_ordered(), "kMetrics rows must be in MetricId order");

enum class BackendState { Connecting, Idle, Active };
constexpr std::array<const char*, 3> kBackendStates{"connecting", "idle", "active"};

double breaker_value(pools::BreakerState s) {
  switch (s) {
    case pools::BreakerState::Closed:
      return 0;
    case pools::BreakerState::HalfOpen:
      return 1;
    case pools::BreakerState::Open:
      return 2;
  }
  return 0;
}

}  // namespace

const char* to_string(ConnectionLimit l) {
  switch (l) {
    case ConnectionLimit::MaxClientConn:
      return "max_client_conn";
    case ConnectionLimit::MaxPeerLogins:
      return "max_peer_logins";
    case ConnectionLimit::LoginPeerRate:
      return "login_peer_rate";
  }
  return "?";
}

const char* to_string(CancelOutcome o) {
  switch (o) {
    case CancelOutcome::Forwarded:
      return "forwarded";
    case CancelOutcome::Dequeued:
      return "dequeued";
    case CancelOutcome::NothingRunning:
      return "nothing_running";
    case CancelOutcome::UnknownKey:
      return "unknown_key";
    case CancelOutcome::RateLimited:
      return "rate_limited";
  }
  return "unknown_key";
}

const char* to_string(Task t) {
  switch (t) {
    case Task::AcceptLoop:
      return "accept_loop";
    case Task::MaintenanceLoop:
      return "maintenance_loop";
    case Task::ProbeLoop:
      return "probe_loop";
    case Task::ClientSession:
      return "client_session";
    case Task::HttpAcceptLoop:
      return "http_accept_loop";
    case Task::HttpConnection:
      return "http_connection";
    case Task::WarmUp:
      return "warm_up";
    case Task::BreakerProbe:
      return "breaker_probe";
    case Task::CancelRequest:
      return "cancel_request";
    case Task::TlsBridge:
      return "tls_bridge";
    case Task::TlsBridgeReader:
      return "tls_bridge_reader";
    case Task::ConnectionRefusal:
      return "connection_refusal";
    case Task::BackendConnect:
      return "backend_connect";
  }
  return "client_session";
}

const std::vector<double>& duration_buckets() {
  static const std::vector<double> buckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                           0.25,   0.5,   1,      2.5,   5,    10,    30};
  return buckets;
}

// A counter fed from a cumulative source value (see the file comment of metrics.hpp).
struct Metrics::CounterTrack {
  prometheus::Counter* counter = nullptr;
  std::uint64_t last = 0;

  void advance(std::uint64_t value) {
    std::uint64_t delta = value >= last ? value - last : value;  // went back: the source reset
    if (delta > 0) counter->Increment(static_cast<double>(delta));
    last = value;
  }
};

struct Metrics::BulkheadEntry {
  BulkheadSeries events;
  prometheus::Gauge* waiters = nullptr;
  prometheus::Gauge* oldest_wait = nullptr;
  prometheus::Gauge* in_use = nullptr;
  prometheus::Gauge* borrowed = nullptr;
  prometheus::Gauge* reserved = nullptr;
  prometheus::Gauge* max = nullptr;
  prometheus::Gauge* clients = nullptr;
  CounterTrack admissions;
  std::array<CounterTrack, pools::kRefusalReasonCount> refusals;  // by RefusalReason
  CounterTrack expirations;
  CounterTrack cancellations;
  CounterTrack timeouts;
  std::uint64_t seen = 0;  // generation of the last snapshot that had it

  void zero_gauges() {
    for (prometheus::Gauge* g : {waiters, oldest_wait, in_use, borrowed, reserved, max, clients}) {
      g->Set(0);
    }
  }
};

struct Metrics::ServerEntry {
  ServerSeries events;
  std::array<prometheus::Gauge*, 3> backends{};  // by BackendState
  prometheus::Gauge* capacity = nullptr;
  prometheus::Gauge* in_use = nullptr;
  prometheus::Gauge* breaker = nullptr;
  CounterTrack connect_attempts;
  CounterTrack connect_failures;
  std::uint64_t seen = 0;

  void zero_gauges() {
    for (prometheus::Gauge* g : backends) g->Set(0);
    for (prometheus::Gauge* g : {capacity, in_use, breaker}) g->Set(0);
  }
};

struct Metrics::ProcessEntry {
  std::array<prometheus::Gauge*, kClientStateCount> clients{};  // by ClientState
  CounterTrack accepted;
  CounterTrack bytes_received;
  CounterTrack bytes_sent;
  CounterTrack protocol_errors;
};

Metrics::Metrics(const config::Config& cfg) : registry_(std::make_shared<prometheus::Registry>()) {
  for (const MetricSpec& spec : kMetrics) {
    Families& f = families_[static_cast<std::size_t>(spec.id)];
    std::string name(spec.name);
    std::string help(spec.help);
    switch (spec.kind) {
      case MetricKind::Counter:
        f.counter = &prometheus::BuildCounter().Name(name).Help(help).Register(*registry_);
        break;
      case MetricKind::Gauge:
        f.gauge = &prometheus::BuildGauge().Name(name).Help(help).Register(*registry_);
        break;
      case MetricKind::Histogram:
        f.histogram = &prometheus::BuildHistogram().Name(name).Help(help).Register(*registry_);
        break;
    }
  }

  process_ = std::make_unique<ProcessEntry>();
  for (std::size_t i = 0; i < kClientStateCount; ++i) {
    process_->clients[i] =
        &add_gauge(MetricId::ClientConnections, {to_string(static_cast<ClientState>(i))});
  }
  process_->accepted.counter = &add_counter(MetricId::ClientConnectionsAccepted, {});
  process_->bytes_received.counter = &add_counter(MetricId::ClientBytesReceived, {});
  process_->bytes_sent.counter = &add_counter(MetricId::ClientBytesSent, {});
  process_->protocol_errors.counter = &add_counter(MetricId::ProtocolErrors, {});
  for (std::size_t i = 0; i < kTaskCount; ++i) {
    escaped_exceptions_[i] =
        &add_counter(MetricId::EscapedExceptions, {to_string(static_cast<Task>(i))});
  }
  for (std::size_t i = 0; i < kCancelOutcomeCount; ++i) {
    cancel_requests_[i] =
        &add_counter(MetricId::CancelRequests, {to_string(static_cast<CancelOutcome>(i))});
  }
  for (std::size_t i = 0; i < kConnectionLimitCount; ++i) {
    connections_refused_[i] = &add_counter(MetricId::ClientConnectionsRefused,
                                           {to_string(static_cast<ConnectionLimit>(i))});
  }
  add_gauge(MetricId::BuildInfo, {SLUICE_VERSION}).Set(1);

  std::lock_guard lock(mutex_);
  for (const auto& [name, server] : cfg.servers) bulkhead_entry(name, pools::kDefaultBulkhead);
  for (const config::Bulkhead& b : cfg.bulkheads) {
    // A bulkhead may omit `server` when only one is configured.
    std::string server = b.server;
    if (server.empty() && cfg.servers.size() == 1) server = cfg.servers.begin()->first;
    if (cfg.servers.contains(server)) bulkhead_entry(server, b.name);
  }
}

Metrics::~Metrics() = default;

namespace {

prometheus::Labels make_labels(const MetricSpec& spec,
                               std::initializer_list<std::string_view> values) {
  if (values.size() != spec.label_count()) {
    throw std::logic_error("metric " + std::string(spec.name) + ": wrong number of label values");
  }
  prometheus::Labels labels;
  std::size_t i = 0;
  for (std::string_view v : values) labels.emplace(spec.labels[i++], v);
  return labels;
}

}  // namespace

prometheus::Gauge& Metrics::add_gauge(MetricId id, std::initializer_list<std::string_view> values) {
  return families_[static_cast<std::size_t>(id)].gauge->Add(make_labels(metric_spec(id), values));
}

prometheus::Counter& Metrics::add_counter(MetricId id,
                                          std::initializer_list<std::string_view> values) {
  return families_[static_cast<std::size_t>(id)].counter->Add(make_labels(metric_spec(id), values));
}

prometheus::Histogram& Metrics::add_histogram(MetricId id,
                                              std::initializer_list<std::string_view> values) {
  return families_[static_cast<std::size_t>(id)].histogram->Add(
      make_labels(metric_spec(id), values), duration_buckets());
}

Metrics::ServerEntry& Metrics::server_entry(const std::string& server) {
  auto it = servers_.find(server);
  if (it != servers_.end()) return *it->second;
  auto e = std::make_unique<ServerEntry>();
  for (std::size_t i = 0; i < kBackendStates.size(); ++i) {
    e->backends[i] = &add_gauge(MetricId::BackendConnections, {server, kBackendStates[i]});
  }
  e->capacity = &add_gauge(MetricId::ServerSlotsCapacity, {server});
  e->in_use = &add_gauge(MetricId::ServerSlotsInUse, {server});
  e->breaker = &add_gauge(MetricId::CircuitBreakerState, {server});
  e->connect_attempts.counter = &add_counter(MetricId::BackendConnectAttempts, {server});
  e->connect_failures.counter = &add_counter(MetricId::BackendConnectFailures, {server});
  e->events.connect_duration = &add_histogram(MetricId::BackendConnectDuration, {server});
  return *servers_.emplace(server, std::move(e)).first->second;
}

Metrics::BulkheadEntry& Metrics::bulkhead_entry(const std::string& server,
                                                const std::string& name) {
  auto key = std::make_pair(server, name);
  auto it = bulkheads_.find(key);
  if (it != bulkheads_.end()) return *it->second;
  server_entry(server);  // a bulkhead's server has its series too
  auto e = std::make_unique<BulkheadEntry>();
  std::initializer_list<std::string_view> labels{server, name};
  e->waiters = &add_gauge(MetricId::QueueWaiters, labels);
  e->oldest_wait = &add_gauge(MetricId::QueueOldestWait, labels);
  e->in_use = &add_gauge(MetricId::BulkheadSlotsInUse, labels);
  e->borrowed = &add_gauge(MetricId::BulkheadSlotsBorrowed, labels);
  e->reserved = &add_gauge(MetricId::BulkheadSlotsReserved, labels);
  e->max = &add_gauge(MetricId::BulkheadSlotsMax, labels);
  e->clients = &add_gauge(MetricId::BulkheadClients, labels);
  e->admissions.counter = &add_counter(MetricId::Admissions, labels);
  for (std::size_t i = 0; i < pools::kRefusalReasonCount; ++i) {
    const char* reason = pools::to_string(static_cast<pools::RefusalReason>(i));
    e->refusals[i].counter = &add_counter(MetricId::AdmissionRefusals, {server, name, reason});
  }
  e->expirations.counter = &add_counter(MetricId::QueueExpirations, labels);
  e->cancellations.counter = &add_counter(MetricId::QueueCancellations, labels);
  e->timeouts.counter = &add_counter(MetricId::StatementTimeouts, labels);
  e->events.statement_cancels = &add_counter(MetricId::StatementCancels, labels);
  e->events.queue_wait = &add_histogram(MetricId::QueueWait, labels);
  e->events.transaction = &add_histogram(MetricId::TransactionDuration, labels);
  e->events.query = &add_histogram(MetricId::QueryDuration, labels);
  return *bulkheads_.emplace(std::move(key), std::move(e)).first->second;
}

void Metrics::ensure_bulkhead(const std::string& server, const std::string& name) {
  std::lock_guard lock(mutex_);
  bulkhead_entry(server, name);
}

BulkheadSeries* Metrics::bulkhead_series(const std::string& server, const std::string& name) {
  std::lock_guard lock(mutex_);
  return &bulkhead_entry(server, name).events;
}

ServerSeries* Metrics::server_series(const std::string& server) {
  std::lock_guard lock(mutex_);
  return &server_entry(server).events;
}

void Metrics::count_task_failure(Task task) {
  escaped_exceptions_[static_cast<std::size_t>(task)]->Increment();
}

void Metrics::count_cancel_request(CancelOutcome outcome) {
  cancel_requests_[static_cast<std::size_t>(outcome)]->Increment();
}

void Metrics::count_connection_refused(ConnectionLimit limit) {
  connections_refused_[static_cast<std::size_t>(limit)]->Increment();
}

void Metrics::update(const Snapshot& snapshot) {
  std::lock_guard lock(mutex_);
  ++generation_;
  for (const ServerSnapshot& s : snapshot.servers) {
    ServerEntry& e = server_entry(s.name);
    e.seen = generation_;
    update_server(e, s);
  }
  for (const BulkheadSnapshot& b : snapshot.bulkheads) {
    BulkheadEntry& e = bulkhead_entry(b.server, b.stats.name);
    e.seen = generation_;
    update_bulkhead(e, b.stats);
  }
  for (auto& [name, e] : servers_) {
    if (e->seen != generation_) e->zero_gauges();
  }
  for (auto& [key, e] : bulkheads_) {
    if (e->seen != generation_) e->zero_gauges();
  }
  update_process(snapshot.process);
}

void Metrics::update_server(ServerEntry& e, const ServerSnapshot& s) {
  e.backends[static_cast<std::size_t>(BackendState::Connecting)]->Set(s.backends.connecting);
  e.backends[static_cast<std::size_t>(BackendState::Idle)]->Set(s.backends.idle);
  e.backends[static_cast<std::size_t>(BackendState::Active)]->Set(s.backends.active);
  e.capacity->Set(s.admission.capacity);
  e.in_use->Set(s.admission.in_use);
  e.breaker->Set(breaker_value(s.admission.breaker));
  e.connect_attempts.advance(s.connect_attempts);
  e.connect_failures.advance(s.connect_failures);
}

void Metrics::update_bulkhead(BulkheadEntry& e, const pools::BulkheadStats& s) {
  e.waiters->Set(s.waiters);
  e.oldest_wait->Set(s.oldest_wait ? std::chrono::duration<double>(*s.oldest_wait).count() : 0.0);
  e.in_use->Set(s.in_use);
  e.borrowed->Set(s.borrowed);
  e.reserved->Set(s.reserved);
  e.max->Set(s.max);
  e.clients->Set(s.clients);
  e.admissions.advance(s.admitted);
  for (std::size_t i = 0; i < e.refusals.size(); ++i) e.refusals[i].advance(s.refused[i]);
  e.expirations.advance(s.expired);
  e.cancellations.advance(s.cancelled);
  e.timeouts.advance(s.timeouts);
}

void Metrics::update_process(const ProcessSnapshot& p) {
  for (std::size_t i = 0; i < kClientStateCount; ++i)
    process_->clients[i]->Set(p.clients_by_state[i]);
  process_->accepted.advance(p.clients_accepted);
  process_->bytes_received.advance(p.traffic.bytes_in);
  process_->bytes_sent.advance(p.traffic.bytes_out);
  process_->protocol_errors.advance(p.protocol_errors);
}

std::string Metrics::render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace sluice
