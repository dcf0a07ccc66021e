#include "src/http/routes.hpp"

#include "src/http/dashboard.hpp"
#include "src/http/status_json.hpp"

namespace sluice::http {

HttpResponse route_request(const HttpRequest& request, const std::function<Snapshot()>& snapshot,
                           Metrics& metrics) {
  HttpResponse r;
  if (request.path == "/metrics") {
    metrics.update(snapshot());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics.render();
  } else if (request.path == "/status") {
    r.content_type = "application/json";
    r.body = status_json(snapshot());
  } else if (request.path == "/") {
    r.content_type = "text/html; charset=utf-8";
    r.body = std::string(kDashboardHtml);
  } else if (request.path == "/healthz") {
    r.body = "ok";
  } else {
    r.status = 404;
    r.body = "not found\n";
  }
  return r;
}

}  // namespace sluice::http
