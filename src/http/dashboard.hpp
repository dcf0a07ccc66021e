// The dashboard page (src/http/dashboard.html), embedded into the binary at build time by
// src/http/embed.cmake (see CMakeLists.txt), so the page always matches the binary serving it.
#pragma once

#include <string_view>

namespace sluice::http {

extern const std::string_view kDashboardHtml;

}  // namespace sluice::http
