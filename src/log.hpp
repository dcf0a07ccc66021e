// Logging: one named spdlog logger per component; lines are a stable event name followed by
// key=value fields (spdlog 1.10 has no MDC). Never log passwords, SCRAM payloads or SQL text at
// info or above. Loggers are created once in init_logging() and are thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace sluice::log {

void init_logging(const std::string& level);
void set_level(const std::string& level);

spdlog::logger& session();
spdlog::logger& pool();
spdlog::logger& config();
spdlog::logger& main();

}  // namespace sluice::log
