#include "src/http/routes.hpp"

#include "src/http/dashboard.hpp"
#include "src/http/status_access.hpp"
#include "src/http/status_json.hpp"

namespace sluice::http {

HttpResponse route_request(const HttpRequest& request, const std::function<Snapshot()>& snapshot,
                           Metrics& metrics, const config::Config& cfg) {
  HttpResponse r;
  const bool protected_path = request.path == "/status" || request.path == "/";
  if (protected_path && !cfg.status_password.empty() &&
      !status_authorized(request.authorization, cfg.status_password)) {
    r.status = 401;
    r.body = "Unauthorized: status_password\n";
    r.headers.emplace_back("WWW-Authenticate", std::string(kStatusChallenge));
    return r;
  }
  if (request.path == "/metrics") {
    metrics.update(snapshot());
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics.render();
  } else if (request.path == "/status") {
    r.content_type = "application/json";
    r.body = status_json(snapshot(), cfg.status_detail);
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
