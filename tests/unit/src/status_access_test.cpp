// status_password on the metrics port: which requests may read /status and the dashboard, and
// that the check is the one route_request applies (/metrics and /healthz stay open).
#include "src/http/status_access.hpp"

#include "src/http/dashboard.hpp"
#include "src/http/routes.hpp"
#include "src/http/server.hpp"

#include <catch2/catch.hpp>

#include <memory>
#include <string>

namespace {

using sluice::http::HttpRequest;
using sluice::http::HttpResponse;
using sluice::http::status_authorized;

constexpr const char* kPassword = "0123456789abcdef-secret";

// base64 of "anyone:0123456789abcdef-secret", "anyone:wrong", "no colon".
constexpr const char* kBasicRight = "Basic YW55b25lOjAxMjM0NTY3ODlhYmNkZWYtc2VjcmV0";
constexpr const char* kBasicWrong = "Basic YW55b25lOndyb25n";
constexpr const char* kBasicNoColon = "Basic bm8gY29sb24=";

HttpRequest get(std::string path, std::string authorization = "") {
  return HttpRequest{.method = "GET", .path = std::move(path), .authorization = authorization};
}

struct Routes {
  Routes() {
    cfg.servers["main"] = sluice::config::Server{.name = "main"};
    metrics = std::make_unique<sluice::Metrics>(cfg);
  }
  HttpResponse operator()(const HttpRequest& r) {
    return sluice::http::route_request(
        r, [] { return sluice::Snapshot{}; }, *metrics, cfg);
  }
  sluice::config::Config cfg;
  std::unique_ptr<sluice::Metrics> metrics;
};

bool has_challenge(const HttpResponse& r) {
  for (const auto& [name, value] : r.headers) {
    if (name == "WWW-Authenticate" && value.starts_with("Basic realm=")) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("status_authorized takes the password as Basic (any user) or Bearer", "[http]") {
  CHECK(status_authorized(kBasicRight, kPassword));
  CHECK(status_authorized("basic   YW55b25lOjAxMjM0NTY3ODlhYmNkZWYtc2VjcmV0 ", kPassword));
  CHECK(status_authorized(std::string("Bearer ") + kPassword, kPassword));
  CHECK(status_authorized(std::string("bearer ") + kPassword, kPassword));

  CHECK_FALSE(status_authorized(kBasicWrong, kPassword));
  CHECK_FALSE(status_authorized(kBasicNoColon, kPassword));
  CHECK_FALSE(status_authorized("Basic !!not base64!!", kPassword));
  CHECK_FALSE(status_authorized("Bearer 0123456789abcdef-secre", kPassword));    // a prefix
  CHECK_FALSE(status_authorized("Bearer 0123456789abcdef-secrett", kPassword));  // longer
  CHECK_FALSE(status_authorized("Bearer", kPassword));
  CHECK_FALSE(status_authorized("", kPassword));
  CHECK_FALSE(status_authorized(kPassword, kPassword));  // no scheme
  CHECK_FALSE(status_authorized(std::string("Digest ") + kPassword, kPassword));
  // No password configured is never a match, whatever is presented.
  CHECK_FALSE(status_authorized("Bearer ", ""));
  CHECK_FALSE(status_authorized("", ""));
}

TEST_CASE("with status_password, /status and / need it; /metrics and /healthz never do", "[http]") {
  Routes routes;
  routes.cfg.status_password = kPassword;
  for (const char* path : {"/status", "/"}) {
    INFO(path);
    for (const char* wrong : {"", kBasicWrong, "Bearer nope"}) {
      const HttpResponse r = routes(get(path, wrong));
      CHECK(r.status == 401);
      CHECK(has_challenge(r));
      CHECK(r.body.find("\"servers\"") == std::string::npos);
    }
    CHECK(routes(get(path, kBasicRight)).status == 200);
    CHECK(routes(get(path, std::string("Bearer ") + kPassword)).status == 200);
  }
  CHECK(routes(get("/", kBasicRight)).body == std::string(sluice::http::kDashboardHtml));
  CHECK(routes(get("/metrics")).status == 200);
  CHECK(routes(get("/healthz")).status == 200);
  CHECK(routes(get("/nope")).status == 404);

  routes.cfg.status_password.clear();  // a reload that removes it applies to the next request
  CHECK(routes(get("/status")).status == 200);
}

TEST_CASE("/status follows status_detail", "[http]") {
  Routes routes;
  CHECK(routes(get("/status")).body.find(R"("detail":"redacted")") != std::string::npos);
  routes.cfg.status_detail = sluice::config::StatusDetail::Full;
  CHECK(routes(get("/status")).body.find(R"("detail":"full")") != std::string::npos);
}

TEST_CASE("parse_request_head keeps one Authorization field and refuses two", "[http]") {
  auto p = sluice::http::parse_request_head(
      "GET /status HTTP/1.1\r\nHost: h\r\nauthorization:   Bearer abc  \r\nAccept: */*");
  REQUIRE(p.status == 0);
  CHECK(p.request.authorization == "Bearer abc");
  CHECK(sluice::http::parse_request_head("GET / HTTP/1.1\r\nHost: h").request.authorization == "");
  CHECK(sluice::http::parse_request_head(
            "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b")
            .status == 400);
}
