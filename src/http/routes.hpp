// The routes of the metrics port: what each path answers.
//   /metrics  Prometheus text exposition 0.0.4 (Metrics::update from a fresh snapshot, render)
//   /status   the dashboard's JSON (status_json.hpp)
//   /         the dashboard page (embedded dashboard.html)
//   /healthz  "ok"
// anything else 404. The HttpServer has already refused methods other than GET and HEAD.
// Runs on the HttpServer's thread; `snapshot` is called at most once per request.
#pragma once

#include "src/http/server.hpp"
#include "src/metrics.hpp"
#include "src/snapshot.hpp"

#include <functional>

namespace sluice::http {

HttpResponse route_request(const HttpRequest& request, const std::function<Snapshot()>& snapshot,
                           Metrics& metrics);

}  // namespace sluice::http
