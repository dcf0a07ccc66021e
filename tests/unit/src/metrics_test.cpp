// Metrics: every series the config implies exists at zero, update() follows a snapshot's
// cumulative counters by deltas and never goes backwards, and render() is well-formed text
// exposition 0.0.4. report_task_failure counts into the registered Metrics.
#include "src/metrics.hpp"

#include "src/task_failure.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <exception>
#include <map>
#include <new>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using sluice::Metrics;

sluice::config::Config two_server_config() {
  sluice::config::Config cfg;
  cfg.servers["main"] = sluice::config::Server{.name = "main"};
  cfg.servers["replica"] = sluice::config::Server{.name = "replica", .port = 5433};
  sluice::config::Bulkhead batch;
  batch.name = "batch";
  batch.server = "main";
  cfg.bulkheads.push_back(batch);
  return cfg;
}

bool is_name_char(char c, bool first) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
  return alpha || (!first && c >= '0' && c <= '9');
}

// Parses text exposition 0.0.4 strictly enough for our output: returns sample key
// ("name{labels}") -> value, and FAILs on any malformed line or a sample whose family lacks a
// HELP or TYPE line before it.
std::map<std::string, double> parse_exposition(const std::string& text) {
  std::map<std::string, double> samples;
  std::set<std::string> help, type;
  std::map<std::string, std::string> kind;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    INFO("line: " << line);
    REQUIRE(!line.empty());
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      std::size_t sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      std::string name = rest.substr(0, sp);
      if (line[2] == 'H') {
        help.insert(name);
      } else {
        type.insert(name);
        kind[name] = rest.substr(sp + 1);
        CHECK((kind[name] == "counter" || kind[name] == "gauge" || kind[name] == "histogram"));
      }
      continue;
    }
    REQUIRE(line[0] != '#');
    std::size_t i = 0;
    while (i < line.size() && is_name_char(line[i], i == 0)) ++i;
    REQUIRE(i > 0);
    std::string name = line.substr(0, i);
    std::string key = name;
    if (i < line.size() && line[i] == '{') {
      std::size_t close = line.find('}', i);
      REQUIRE(close != std::string::npos);
      std::string labels = line.substr(i + 1, close - i - 1);
      // name="value" pairs separated by commas; our values contain no quotes or commas.
      std::istringstream ls(labels);
      std::string pair;
      while (std::getline(ls, pair, ',')) {
        std::size_t eq = pair.find('=');
        REQUIRE(eq != std::string::npos);
        REQUIRE(pair.size() >= eq + 3);
        CHECK(pair[eq + 1] == '"');
        CHECK(pair.back() == '"');
        bool valid_name = eq > 0;
        for (std::size_t k = 0; k < eq; ++k)
          valid_name = valid_name && is_name_char(pair[k], k == 0);
        CHECK(valid_name);
      }
      key = line.substr(0, close + 1);
      i = close + 1;
    }
    REQUIRE(i < line.size());
    REQUIRE(line[i] == ' ');
    std::string value = line.substr(i + 1);
    REQUIRE(value.find(' ') == std::string::npos);
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    REQUIRE(end == value.c_str() + value.size());
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s(suffix);
      if (family.size() > s.size() && family.ends_with(s) &&
          kind.count(family.substr(0, family.size() - s.size())) != 0) {
        family = family.substr(0, family.size() - s.size());
      }
    }
    CHECK(help.count(family) == 1);
    CHECK(type.count(family) == 1);
    CHECK(samples.count(key) == 0);
    samples[key] = v;
  }
  return samples;
}

std::string bh(const std::string& name, const std::string& server, const std::string& bulkhead) {
  return name + "{bulkhead=\"" + bulkhead + "\",server=\"" + server + "\"}";
}

sluice::Snapshot snapshot_with(std::uint64_t admitted, std::uint32_t waiters) {
  sluice::Snapshot s;
  sluice::BulkheadSnapshot b;
  b.server = "main";
  b.stats.name = "batch";
  b.stats.admitted = admitted;
  b.stats.waiters = waiters;
  b.stats.reserved = 2;
  b.stats.max = 10;
  b.stats.oldest_wait = std::chrono::milliseconds(1500);
  b.stats.refused[static_cast<std::size_t>(sluice::pools::RefusalReason::QueueFull)] = admitted;
  s.bulkheads.push_back(b);
  sluice::ServerSnapshot server;
  server.name = "main";
  server.admission.capacity = 20;
  server.admission.breaker = sluice::pools::BreakerState::Open;
  server.backends.idle = 3;
  server.connect_attempts = admitted;
  s.servers.push_back(server);
  s.process.clients_by_state[static_cast<std::size_t>(sluice::ClientState::Waiting)] = waiters;
  s.process.clients_accepted = admitted;
  s.process.traffic.bytes_in = 1000 * admitted;
  return s;
}

}  // namespace

TEST_CASE("Every series the config implies exists at zero from the start", "[metrics]") {
  Metrics m(two_server_config());
  auto samples = parse_exposition(m.render());
  for (const char* server : {"main", "replica"}) {
    CHECK(samples.at(bh("sluice_queue_waiters", server, "default")) == 0);
    CHECK(samples.at(bh("sluice_admissions_total", server, "default")) == 0);
    CHECK(samples.at(bh("sluice_queue_wait_seconds_count", server, "default")) == 0);
    for (const char* reason : {"queue_full", "queue_age", "predicted_wait", "max_wait",
                               "rate_limit", "max_clients", "server_down"}) {
      CHECK(
          samples.at(std::string("sluice_admission_refusals_total{bulkhead=\"default\",reason=\"") +
                     reason + "\",server=\"" + server + "\"}") == 0);
    }
    for (const char* state : {"connecting", "idle", "active"}) {
      CHECK(samples.at(std::string("sluice_backend_connections{server=\"") + server +
                       "\",state=\"" + state + "\"}") == 0);
    }
    CHECK(samples.at(std::string("sluice_circuit_breaker_state{server=\"") + server + "\"}") == 0);
  }
  // The configured [[bulkheads]] entry, on its server only.
  CHECK(samples.at(bh("sluice_bulkhead_slots_in_use", "main", "batch")) == 0);
  CHECK(samples.count(bh("sluice_bulkhead_slots_in_use", "replica", "batch")) == 0);
  for (const char* state : {"login", "idle", "waiting", "active"}) {
    CHECK(samples.at(std::string("sluice_client_connections{state=\"") + state + "\"}") == 0);
  }
  CHECK(samples.at("sluice_client_connections_accepted_total") == 0);
  CHECK(samples.at("sluice_protocol_errors_total") == 0);
  CHECK(samples.at(std::string("sluice_build_info{version=\"") + SLUICE_VERSION + "\"}") == 1);
}

TEST_CASE("Every metric of the table is exported with HELP and TYPE", "[metrics]") {
  Metrics m(two_server_config());
  std::string text = m.render();
  parse_exposition(text);
  for (const sluice::MetricSpec& spec : sluice::kMetrics) {
    INFO(spec.name);
    std::string name(spec.name);
    CHECK(text.find("# HELP " + name + " ") != std::string::npos);
    const char* type = spec.kind == sluice::MetricKind::Counter ? "counter"
                       : spec.kind == sluice::MetricKind::Gauge ? "gauge"
                                                                : "histogram";
    CHECK(text.find("# TYPE " + name + " " + type + "\n") != std::string::npos);
    CHECK(name.rfind("sluice_", 0) == 0);
    CHECK(name.ends_with("_total") == (spec.kind == sluice::MetricKind::Counter));
  }
}

TEST_CASE("update() moves counters by deltas and never backwards", "[metrics]") {
  Metrics m(two_server_config());
  const std::string admissions = bh("sluice_admissions_total", "main", "batch");
  const std::string refused =
      "sluice_admission_refusals_total{bulkhead=\"batch\",reason=\"queue_full\",server=\"main\"}";

  m.update(snapshot_with(5, 7));
  auto s = parse_exposition(m.render());
  CHECK(s.at(admissions) == 5);
  CHECK(s.at(refused) == 5);
  CHECK(s.at(bh("sluice_queue_waiters", "main", "batch")) == 7);
  CHECK(s.at(bh("sluice_queue_oldest_wait_seconds", "main", "batch")) == Approx(1.5));
  CHECK(s.at(bh("sluice_bulkhead_slots_reserved", "main", "batch")) == 2);
  CHECK(s.at(bh("sluice_bulkhead_slots_max", "main", "batch")) == 10);
  CHECK(s.at("sluice_server_slots_capacity{server=\"main\"}") == 20);
  CHECK(s.at("sluice_circuit_breaker_state{server=\"main\"}") == 2);
  CHECK(s.at("sluice_backend_connections{server=\"main\",state=\"idle\"}") == 3);
  CHECK(s.at("sluice_backend_connect_attempts_total{server=\"main\"}") == 5);
  CHECK(s.at("sluice_client_connections{state=\"waiting\"}") == 7);
  CHECK(s.at("sluice_client_connections_accepted_total") == 5);
  CHECK(s.at("sluice_client_bytes_received_total") == 5000);

  m.update(snapshot_with(5, 7));  // nothing new
  CHECK(parse_exposition(m.render()).at(admissions) == 5);

  m.update(snapshot_with(8, 1));
  s = parse_exposition(m.render());
  CHECK(s.at(admissions) == 8);
  CHECK(s.at(bh("sluice_queue_waiters", "main", "batch")) == 1);

  // The source went back (rebuilt on reload): what it counted since is added, nothing removed.
  m.update(snapshot_with(3, 0));
  s = parse_exposition(m.render());
  CHECK(s.at(admissions) == 11);
  CHECK(s.at("sluice_client_connections_accepted_total") == 11);

  m.update(snapshot_with(4, 0));
  CHECK(parse_exposition(m.render()).at(admissions) == 12);
}

TEST_CASE("A bulkhead missing from a snapshot keeps its counters and reads zero waiters",
          "[metrics]") {
  Metrics m(two_server_config());
  m.update(snapshot_with(5, 7));
  sluice::Snapshot empty;
  m.update(empty);
  auto s = parse_exposition(m.render());
  CHECK(s.at(bh("sluice_queue_waiters", "main", "batch")) == 0);
  CHECK(s.at(bh("sluice_bulkhead_slots_max", "main", "batch")) == 0);
  CHECK(s.at("sluice_server_slots_capacity{server=\"main\"}") == 0);
  CHECK(s.at(bh("sluice_admissions_total", "main", "batch")) == 5);
}

TEST_CASE("Event handles are resolved once and feed their series", "[metrics]") {
  Metrics m(two_server_config());
  sluice::BulkheadSeries* a = m.bulkhead_series("main", "batch");
  CHECK(a == m.bulkhead_series("main", "batch"));
  CHECK(a != m.bulkhead_series("main", "default"));
  m.ensure_bulkhead("replica", "reports");
  sluice::BulkheadSeries* r = m.bulkhead_series("replica", "reports");

  using namespace std::chrono_literals;
  a->observe_queue_wait(2ms);
  a->observe_transaction(40ms);
  a->observe_query(300us);
  a->observe_query(20s);
  a->count_statement_cancel();
  r->count_statement_cancel();
  r->count_statement_cancel();
  m.server_series("main")->observe_connect(15ms);
  m.count_task_failure(sluice::Task::WarmUp);

  auto s = parse_exposition(m.render());
  CHECK(s.at(bh("sluice_queue_wait_seconds_count", "main", "batch")) == 1);
  CHECK(s.at(bh("sluice_queue_wait_seconds_sum", "main", "batch")) == Approx(0.002));
  CHECK(s.at(bh("sluice_transaction_duration_seconds_count", "main", "batch")) == 1);
  CHECK(s.at(bh("sluice_query_duration_seconds_count", "main", "batch")) == 2);
  CHECK(s.at("sluice_query_duration_seconds_bucket{bulkhead=\"batch\",server=\"main\","
             "le=\"0.0005\"}") == 1);
  CHECK(s.at("sluice_query_duration_seconds_bucket{bulkhead=\"batch\",server=\"main\","
             "le=\"+Inf\"}") == 2);
  CHECK(s.at(bh("sluice_statement_cancels_total", "main", "batch")) == 1);
  CHECK(s.at(bh("sluice_statement_cancels_total", "replica", "reports")) == 2);
  CHECK(s.at(bh("sluice_queue_waiters", "replica", "reports")) == 0);
  CHECK(s.at("sluice_backend_connect_duration_seconds_count{server=\"main\"}") == 1);
  CHECK(s.at("sluice_escaped_exceptions_total{task=\"warm_up\"}") == 1);
  CHECK(s.at("sluice_escaped_exceptions_total{task=\"accept_loop\"}") == 0);
}

TEST_CASE("A task ended by an exception is counted by task; one that returned is not",
          "[metrics]") {
  using sluice::Task;
  Metrics m(two_server_config());
  const auto count = [&m](const char* task) {
    return parse_exposition(m.render())
        .at("sluice_escaped_exceptions_total{task=\"" + std::string(task) + "\"}");
  };
  for (std::size_t i = 0; i < sluice::kTaskCount; ++i) {
    CHECK(count(sluice::to_string(static_cast<Task>(i))) == 0);  // every task from zero
  }
  sluice::set_task_failure_metrics(&m);
  sluice::report_task_failure(Task::CancelRequest,
                              std::make_exception_ptr(std::runtime_error("no route\nto host")));
  sluice::report_task_failure(Task::CancelRequest, std::make_exception_ptr(42));  // not std::
  sluice::report_task_failure(Task::TlsBridge, nullptr);  // the coroutine returned
  sluice::on_task_exit(Task::HttpConnection)(std::make_exception_ptr(std::bad_alloc()));
  sluice::on_task_exit(Task::HttpAcceptLoop)(nullptr);
  sluice::set_task_failure_metrics(nullptr);
  sluice::report_task_failure(Task::CancelRequest,  // after the Metrics were unregistered
                              std::make_exception_ptr(std::runtime_error("late")));
  CHECK(count("cancel_request") == 2);
  CHECK(count("tls_bridge") == 0);
  CHECK(count("http_connection") == 1);
  CHECK(count("http_accept_loop") == 0);
}

TEST_CASE("Cancel requests are counted by outcome, every outcome from zero", "[metrics]") {
  Metrics m(two_server_config());
  const auto key = [](const char* outcome) {
    return std::string("sluice_cancel_requests_total{outcome=\"") + outcome + "\"}";
  };
  auto s = parse_exposition(m.render());
  for (const char* outcome :
       {"forwarded", "dequeued", "nothing_running", "unknown_key", "rate_limited"}) {
    CHECK(s.at(key(outcome)) == 0);
  }
  m.count_cancel_request(sluice::CancelOutcome::Forwarded);
  m.count_cancel_request(sluice::CancelOutcome::RateLimited);
  m.count_cancel_request(sluice::CancelOutcome::RateLimited);
  m.count_cancel_request(sluice::CancelOutcome::UnknownKey);
  s = parse_exposition(m.render());
  CHECK(s.at(key("forwarded")) == 1);
  CHECK(s.at(key("rate_limited")) == 2);
  CHECK(s.at(key("unknown_key")) == 1);
  CHECK(s.at(key("dequeued")) == 0);
  CHECK(s.at(key("nothing_running")) == 0);
}

TEST_CASE("Handles, updates and renders may run on several threads at once", "[metrics]") {
  Metrics m(two_server_config());
  constexpr int kThreads = 4;
  constexpr int kRounds = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kRounds; ++i) {
        sluice::BulkheadSeries* s = m.bulkhead_series("main", t % 2 == 0 ? "batch" : "default");
        s->observe_query(std::chrono::microseconds(i));
        s->count_statement_cancel();
      }
    });
  }
  threads.emplace_back([&m] {
    for (int i = 0; i < kRounds / 10; ++i) {
      m.update(snapshot_with(static_cast<std::uint64_t>(i), 1));
      (void)m.render();
    }
  });
  for (auto& t : threads) t.join();
  auto s = parse_exposition(m.render());
  CHECK(s.at(bh("sluice_statement_cancels_total", "main", "batch")) == kRounds * kThreads / 2);
  CHECK(s.at(bh("sluice_query_duration_seconds_count", "main", "default")) ==
        kRounds * kThreads / 2);
  CHECK(s.at(bh("sluice_admissions_total", "main", "batch")) == kRounds / 10 - 1);
}
