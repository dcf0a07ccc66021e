// Metrics: Sluice's Prometheus metrics over one prometheus-cpp Registry.
//
// Every metric is declared once, in kMetrics below (name, type, label names, help). Two kinds of
// series feed it:
//   - Snapshot-driven: gauges and cumulative counters are set from a Snapshot by update(), called
//     at scrape time, so /metrics, /status and the admin console read the same numbers.
//     prometheus-cpp counters only go up: update() keeps the last value seen per series and
//     increments by the difference; a source that went backwards was reset (its owner was
//     rebuilt) and everything it counted since then is new, as Prometheus's rate() assumes.
//   - Event-driven: histograms (durations) and counters with no cumulative source are bumped by
//     the runtime through handles (BulkheadSeries, ServerSeries) resolved once, e.g. per client
//     session; the hot path then never looks anything up by string nor allocates.
//
// Label values come only from the config (server and bulkhead names) and fixed enums (state,
// reason): every series the config implies exists at zero from construction. Series are never
// removed, so handles stay valid for the Metrics object's lifetime; a bulkhead or server missing
// from a snapshot (dropped by a reload) has its gauges set to zero.
//
// Thread-safe: update(), render(), ensure_bulkhead() and the *_series() look-ups may be called
// from any thread (a mutex guards the series maps); the handles' event calls are lock-free
// atomics (histograms take prometheus-cpp's own short per-histogram lock).
#pragma once

#include "config/config.hpp"
#include "src/snapshot.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice {

enum class MetricKind { Counter, Gauge, Histogram };

// Index of a metric family in kMetrics.
enum class MetricId : std::size_t {
  // per bulkhead {server, bulkhead}
  QueueWaiters,
  QueueOldestWait,
  BulkheadSlotsInUse,
  BulkheadSlotsBorrowed,
  BulkheadSlotsReserved,
  BulkheadSlotsMax,
  BulkheadClients,
  Admissions,
  AdmissionRefusals,  // + reason
  QueueExpirations,
  QueueCancellations,
  StatementTimeouts,
  StatementCancels,
  QueueWait,
  TransactionDuration,
  QueryDuration,
  // per server {server}
  BackendConnections,  // + state
  BackendConnectAttempts,
  BackendConnectFailures,
  BackendConnectDuration,
  ServerSlotsCapacity,
  ServerSlotsInUse,
  CircuitBreakerState,
  // process
  ClientConnections,  // {state}
  ClientConnectionsAccepted,
  ClientBytesReceived,
  ClientBytesSent,
  ProtocolErrors,
  EscapedExceptions,         // {task}
  CancelRequests,            // {outcome}
  ClientConnectionsRefused,  // {limit}
  BuildInfo,                 // {version}
};
inline constexpr std::size_t kMetricCount = static_cast<std::size_t>(MetricId::BuildInfo) + 1;

struct MetricSpec {
  MetricId id;
  std::string_view name;
  MetricKind kind;
  std::array<std::string_view, 3> labels;  // label names in order; unused ones are empty
  std::string_view help;

  std::size_t label_count() const {
    std::size_t n = 0;
    while (n < labels.size() && !labels[n].empty()) ++n;
    return n;
  }
};

// Every metric Sluice exports, once. Sorted by MetricId (checked at compile time).
// Slots are separate gauges rather than one gauge with a `kind` label: sum() across a label
// must make sense (STYLE.md §7), and capacity + in_use does not.
inline constexpr std::array<MetricSpec, kMetricCount> kMetrics{{
    {MetricId::QueueWaiters,
     "sluice_queue_waiters",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Clients queued for a backend slot of the bulkhead."},
    {MetricId::QueueOldestWait,
     "sluice_queue_oldest_wait_seconds",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Age of the bulkhead's oldest queued client; 0 when none waits."},
    {MetricId::BulkheadSlotsInUse,
     "sluice_bulkhead_slots_in_use",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Backend slots the bulkhead holds."},
    {MetricId::BulkheadSlotsBorrowed,
     "sluice_bulkhead_slots_borrowed",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Backend slots the bulkhead holds beyond its reserved share."},
    {MetricId::BulkheadSlotsReserved,
     "sluice_bulkhead_slots_reserved",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Backend slots reserved for the bulkhead (configured)."},
    {MetricId::BulkheadSlotsMax,
     "sluice_bulkhead_slots_max",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Backend slots the bulkhead may hold at most (configured)."},
    {MetricId::BulkheadClients,
     "sluice_bulkhead_clients",
     MetricKind::Gauge,
     {"server", "bulkhead"},
     "Client connections counted against the bulkhead."},
    {MetricId::Admissions,
     "sluice_admissions_total",
     MetricKind::Counter,
     {"server", "bulkhead"},
     "Backend slots granted to the bulkhead's clients, at once or from the queue."},
    {MetricId::AdmissionRefusals,
     "sluice_admission_refusals_total",
     MetricKind::Counter,
     {"server", "bulkhead", "reason"},
     "Transactions or connections refused by admission control, by reason."},
    {MetricId::QueueExpirations,
     "sluice_queue_expirations_total",
     MetricKind::Counter,
     {"server", "bulkhead"},
     "Queued clients refused after waiting max_wait (also counted as reason=max_wait)."},
    {MetricId::QueueCancellations,
     "sluice_queue_cancellations_total",
     MetricKind::Counter,
     {"server", "bulkhead"},
     "Queued clients that left the queue before a slot was granted."},
    {MetricId::StatementTimeouts,
     "sluice_statement_timeouts_total",
     MetricKind::Counter,
     {"server", "bulkhead"},
     "Transactions ended by the bulkhead's statement_timeout."},
    {MetricId::StatementCancels,
     "sluice_statement_cancels_total",
     MetricKind::Counter,
     {"server", "bulkhead"},
     "Cancel requests sent to a backend for the bulkhead's clients (client cancels and statement "
     "timeouts)."},
    {MetricId::QueueWait,
     "sluice_queue_wait_seconds",
     MetricKind::Histogram,
     {"server", "bulkhead"},
     "Time clients waited for a backend slot, admitted or not."},
    {MetricId::TransactionDuration,
     "sluice_transaction_duration_seconds",
     MetricKind::Histogram,
     {"server", "bulkhead"},
     "Time a backend was held for one transaction (session: one session)."},
    {MetricId::QueryDuration,
     "sluice_query_duration_seconds",
     MetricKind::Histogram,
     {"server", "bulkhead"},
     "Time from a Query or Sync to the ReadyForQuery that answers it."},
    {MetricId::BackendConnections,
     "sluice_backend_connections",
     MetricKind::Gauge,
     {"server", "state"},
     "Backend connections to the server, by state."},
    {MetricId::BackendConnectAttempts,
     "sluice_backend_connect_attempts_total",
     MetricKind::Counter,
     {"server"},
     "Backend connections Sluice started to open."},
    {MetricId::BackendConnectFailures,
     "sluice_backend_connect_failures_total",
     MetricKind::Counter,
     {"server"},
     "Backend connections that failed to open or log in."},
    {MetricId::BackendConnectDuration,
     "sluice_backend_connect_duration_seconds",
     MetricKind::Histogram,
     {"server"},
     "Time to open and log in a backend connection."},
    {MetricId::ServerSlotsCapacity,
     "sluice_server_slots_capacity",
     MetricKind::Gauge,
     {"server"},
     "Backend slots of the server in total (its max_connections)."},
    {MetricId::ServerSlotsInUse,
     "sluice_server_slots_in_use",
     MetricKind::Gauge,
     {"server"},
     "Backend slots of the server held by clients."},
    {MetricId::CircuitBreakerState,
     "sluice_circuit_breaker_state",
     MetricKind::Gauge,
     {"server"},
     "The server's circuit breaker: 0 closed, 1 half-open, 2 open."},
    {MetricId::ClientConnections,
     "sluice_client_connections",
     MetricKind::Gauge,
     {"state"},
     "Client connections, by state."},
    {MetricId::ClientConnectionsAccepted,
     "sluice_client_connections_accepted_total",
     MetricKind::Counter,
     {},
     "Client connections accepted."},
    {MetricId::ClientBytesReceived,
     "sluice_client_bytes_received_total",
     MetricKind::Counter,
     {},
     "Bytes received from clients."},
    {MetricId::ClientBytesSent,
     "sluice_client_bytes_sent_total",
     MetricKind::Counter,
     {},
     "Bytes sent to clients."},
    {MetricId::ProtocolErrors,
     "sluice_protocol_errors_total",
     MetricKind::Counter,
     {},
     "Connections closed for a PostgreSQL protocol violation."},
    {MetricId::EscapedExceptions,
     "sluice_escaped_exceptions_total",
     MetricKind::Counter,
     {"task"},
     "Exceptions that escaped a coroutine (bugs or resource exhaustion), by task."},
    {MetricId::CancelRequests,
     "sluice_cancel_requests_total",
     MetricKind::Counter,
     {"outcome"},
     "CancelRequests received from clients, by what became of them."},
    {MetricId::ClientConnectionsRefused,
     "sluice_client_connections_refused_total",
     MetricKind::Counter,
     {"limit"},
     "Client connections refused before authentication (53300), by the limit they met."},
    {MetricId::BuildInfo,
     "sluice_build_info",
     MetricKind::Gauge,
     {"version"},
     "Always 1; the labels say which build runs."},
}};

inline constexpr const MetricSpec& metric_spec(MetricId id) {
  return kMetrics[static_cast<std::size_t>(id)];
}

// What became of a client's CancelRequest (label `outcome` of sluice_cancel_requests_total).
enum class CancelOutcome {
  Forwarded,       // sent to the backend the session is using
  Dequeued,        // the session was queued for a slot: it left the queue (57014)
  NothingRunning,  // the key is right but the session runs nothing on a backend: no effect
  UnknownKey,      // no live session has this key: no effect
  RateLimited,     // the peer's cancel budget is spent (CancelRateLimiter): dropped unread
};
inline constexpr std::size_t kCancelOutcomeCount = 5;
// Exactly: forwarded, dequeued, nothing_running, unknown_key, rate_limited.
const char* to_string(CancelOutcome o);

// The limit a client connection met before authentication (label `limit` of
// sluice_client_connections_refused_total; issue 12, item 5).
enum class ConnectionLimit {
  MaxClientConn,  // max_client_conn (an over-limit connection that was not the admin console)
  MaxPeerLogins,  // max_peer_logins
  LoginPeerRate,  // login_peer_rate
};
inline constexpr std::size_t kConnectionLimitCount = 3;
// Exactly: max_client_conn, max_peer_logins, login_peer_rate.
const char* to_string(ConnectionLimit l);

// A coroutine started with asio::co_spawn (label `task` of sluice_escaped_exceptions_total;
// src/task_failure.hpp reports the exception that ended one).
enum class Task {
  AcceptLoop,         // a listener's accept loop
  MaintenanceLoop,    // the once-a-second upkeep
  ProbeLoop,          // the circuit breaker's background prober
  ClientSession,      // a client session (login, relay, admin console)
  HttpAcceptLoop,     // the metrics_listen accept loop
  HttpConnection,     // one HTTP connection on metrics_listen
  WarmUp,             // a connection opened for min_pool_size
  BreakerProbe,       // a connection opened as the circuit breaker's probe
  CancelRequest,      // a CancelRequest Sluice sends for a statement or a departed client
  TlsBridge,          // a TLS client's handshake and its copy towards the client
  TlsBridgeReader,    // a TLS client's copy towards the session
  ConnectionRefusal,  // the 53300 answer to a connection refused before login
  BackendConnect,     // a client's backend connect run apart from it (it may stop waiting)
};
inline constexpr std::size_t kTaskCount = 13;
// Exactly: accept_loop, maintenance_loop, probe_loop, client_session, http_accept_loop,
// http_connection, warm_up, breaker_probe, cancel_request, tls_bridge, tls_bridge_reader,
// connection_refusal, backend_connect.
const char* to_string(Task t);

// Bucket boundaries of every duration histogram, in seconds.
const std::vector<double>& duration_buckets();

// Event-driven series of one bulkhead. Pointers are never null and stay valid while the Metrics
// object lives; any thread may call these.
struct BulkheadSeries {
  prometheus::Histogram* queue_wait = nullptr;
  prometheus::Histogram* transaction = nullptr;
  prometheus::Histogram* query = nullptr;
  prometheus::Counter* statement_cancels = nullptr;

  void observe_queue_wait(std::chrono::nanoseconds d) const { queue_wait->Observe(seconds(d)); }
  void observe_transaction(std::chrono::nanoseconds d) const { transaction->Observe(seconds(d)); }
  void observe_query(std::chrono::nanoseconds d) const { query->Observe(seconds(d)); }
  void count_statement_cancel() const { statement_cancels->Increment(); }

  static double seconds(std::chrono::nanoseconds d) {
    return std::chrono::duration<double>(d).count();
  }
};

// Event-driven series of one server; as BulkheadSeries.
struct ServerSeries {
  prometheus::Histogram* connect_duration = nullptr;

  void observe_connect(std::chrono::nanoseconds d) const {
    connect_duration->Observe(BulkheadSeries::seconds(d));
  }
};

class Metrics {
 public:
  // Creates every series `cfg` implies, at zero: per server, its "default" bulkhead and each
  // [[bulkheads]] entry naming it.
  explicit Metrics(const config::Config& cfg);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Creates the series of (server, bulkhead) if missing. Names must come from the config.
  void ensure_bulkhead(const std::string& server, const std::string& name);

  // The event handles of a bulkhead or server, created if missing (names from the config only).
  // Takes the lock: resolve once (per session, per connect), then keep the pointer.
  BulkheadSeries* bulkhead_series(const std::string& server, const std::string& name);
  ServerSeries* server_series(const std::string& server);

  // One coroutine of `task` ended by an exception (report_task_failure). Lock-free; any thread.
  void count_task_failure(Task task);
  // One CancelRequest and what became of it. Lock-free; any thread.
  void count_cancel_request(CancelOutcome outcome);
  // One client connection refused before authentication. Lock-free; any thread.
  void count_connection_refused(ConnectionLimit limit);

  // Sets gauges and advances counters from `snapshot` (see the file comment).
  void update(const Snapshot& snapshot);

  // Text exposition format 0.0.4 of everything registered.
  std::string render() const;

  prometheus::Registry& registry() { return *registry_; }

 private:
  struct CounterTrack;
  struct BulkheadEntry;
  struct ServerEntry;
  struct ProcessEntry;
  struct Families {
    prometheus::Family<prometheus::Counter>* counter = nullptr;
    prometheus::Family<prometheus::Gauge>* gauge = nullptr;
    prometheus::Family<prometheus::Histogram>* histogram = nullptr;
  };

  prometheus::Gauge& add_gauge(MetricId id, std::initializer_list<std::string_view> values);
  prometheus::Counter& add_counter(MetricId id, std::initializer_list<std::string_view> values);
  prometheus::Histogram& add_histogram(MetricId id, std::initializer_list<std::string_view> values);
  // Both need mutex_ held.
  ServerEntry& server_entry(const std::string& server);
  BulkheadEntry& bulkhead_entry(const std::string& server, const std::string& name);

  void update_server(ServerEntry& e, const ServerSnapshot& s);
  void update_bulkhead(BulkheadEntry& e, const pools::BulkheadStats& s);
  void update_process(const ProcessSnapshot& p);

  std::shared_ptr<prometheus::Registry> registry_;
  std::array<Families, kMetricCount> families_{};  // by MetricId; set once in the constructor

  mutable std::mutex mutex_;
  // Guarded by mutex_ (the maps and the entries' last-seen counter values; the prometheus
  // objects they point to are thread-safe themselves). Map nodes never move.
  std::map<std::string, std::unique_ptr<ServerEntry>> servers_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<BulkheadEntry>> bulkheads_;
  std::unique_ptr<ProcessEntry> process_;
  std::uint64_t generation_ = 0;                                       // update() calls so far
  std::array<prometheus::Counter*, kTaskCount> escaped_exceptions_{};  // by Task
  std::array<prometheus::Counter*, kCancelOutcomeCount> cancel_requests_{};  // by CancelOutcome
  std::array<prometheus::Counter*, kConnectionLimitCount> connections_refused_{};  // by limit
};

}  // namespace sluice
