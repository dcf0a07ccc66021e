// Who may read /status and the dashboard: the check of status_password.
//
// PgBouncer shows pools, users and servers only on its admin console, to stats_users. Sluice's
// /status says as much (with status_detail = "full"), and metrics_listen is often reachable by
// more people than the console, so an operator can require a password there too. A request
// carries it as HTTP Basic credentials (any user name: browsers prompt for both and send them
// again with the dashboard's polls) or as `Authorization: Bearer PASSWORD` (scripts).
//
// Pure; any thread.
#pragma once

#include <string_view>

namespace sluice::http {

// The WWW-Authenticate value of a 401 from /status or /.
inline constexpr std::string_view kStatusChallenge = R"(Basic realm="sluice", charset="UTF-8")";

// Whether `authorization`, the request's Authorization field value ("" when absent), carries
// `password`. The comparison takes the same time whatever the guess and however long either is
// (SHA-256 of both, compared with CRYPTO_memcmp). An empty `password` is never matched.
bool status_authorized(std::string_view authorization, std::string_view password);

}  // namespace sluice::http
