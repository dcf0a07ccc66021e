// What becomes of an exception that ends a coroutine started with asio::co_spawn. Asio 1.18's
// `detached` would drop it (STYLE.md §2), so every co_spawn in src/ completes through
// report_task_failure, directly or by on_task_exit: one error line
// `escaped_exception task=<task> error="<what()>"` (logger `main`) and one increment of
// sluice_escaped_exceptions_total{task} in the Metrics registered here (the Runtime's, for its
// lifetime; before it exists a failure is only logged). Any thread.
#pragma once

#include "src/metrics.hpp"

#include <exception>

namespace sluice {

// Where failures are counted from now on; null stops counting (before `metrics` goes away).
void set_task_failure_metrics(Metrics* metrics);

// Logs and counts `e`, the exception that ended `task`; nothing for a null `e` (it returned).
// Never throws: it runs as a completion handler, where an exception would stop the event loop.
void report_task_failure(Task task, std::exception_ptr e) noexcept;

// The completion handler of a co_spawn whose coroutine needs no clean-up of its own.
inline auto on_task_exit(Task task) {
  return [task](std::exception_ptr e) { report_task_failure(task, e); };
}

}  // namespace sluice
