#include "src/task_failure.hpp"

#include "src/log.hpp"

#include <atomic>
#include <exception>
#include <string>

namespace sluice {
namespace {

std::atomic<Metrics*> g_metrics{nullptr};

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

void set_task_failure_metrics(Metrics* metrics) { g_metrics.store(metrics); }

void report_task_failure(Task task, std::exception_ptr e) noexcept {
  if (!e) return;
  if (Metrics* m = g_metrics.load(); m != nullptr) m->count_task_failure(task);
  try {
    log::main().error("escaped_exception task={} error=\"{}\"", to_string(task),
                      log::escaped(what_of(e)));
  } catch (...) {
    // Logging itself failed (memory exhaustion): the counter above still has it.
  }
}

}  // namespace sluice
