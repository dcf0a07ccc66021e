#include "src/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sluice::log {
namespace {

std::shared_ptr<spdlog::logger> make(const std::string& name,
                                     const std::shared_ptr<spdlog::sinks::sink>& sink) {
  auto logger = std::make_shared<spdlog::logger>(name, sink);
  spdlog::register_logger(logger);
  return logger;
}

struct Loggers {
  std::shared_ptr<spdlog::logger> session, pool, config, main;
};

Loggers& loggers() {
  static Loggers l = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    sink->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %n %v");
    return Loggers{make("session", sink), make("pool", sink), make("config", sink),
                   make("main", sink)};
  }();
  return l;
}

}  // namespace

void init_logging(const std::string& level) {
  loggers();
  set_level(level);
  spdlog::flush_on(spdlog::level::warn);
}

void set_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

spdlog::logger& session() { return *loggers().session; }
spdlog::logger& pool() { return *loggers().pool; }
spdlog::logger& config() { return *loggers().config; }
spdlog::logger& main() { return *loggers().main; }

}  // namespace sluice::log
