// The routes of the metrics port: what each path answers.
//   /metrics  Prometheus text exposition 0.0.4 (Metrics::update from a fresh snapshot, render)
//   /status   the dashboard's JSON (status_json.hpp), as detailed as `status_detail` says
//   /         the dashboard page (embedded dashboard.html)
//   /healthz  "ok"
// anything else 404. With `status_password` set, /status and / answer 401 (with a Basic
// challenge) to a request that does not carry it (status_access.hpp); /metrics, whose labels
// name only configured servers and bulkheads, and /healthz never ask. The HttpServer has already
// refused methods other than GET and HEAD. Runs on the HttpServer's thread; `snapshot` is called
// at most once per request; `cfg` is the running config (read per request, so a reload applies
// to the next one).
#pragma once

#include "config/config.hpp"
#include "src/http/server.hpp"
#include "src/metrics.hpp"
#include "src/snapshot.hpp"

#include <functional>

namespace sluice::http {

HttpResponse route_request(const HttpRequest& request, const std::function<Snapshot()>& snapshot,
                           Metrics& metrics, const config::Config& cfg);

}  // namespace sluice::http
