// The result sets of the admin console's SHOW commands, rendered from a Snapshot as
// RowDescription, DataRows and CommandComplete "SHOW" (as PgBouncer tags them).
//
// Types: int8 for counts, float8 for durations in milliseconds (NULL when there is none), bool for
// flags, text otherwise; traffic times are int8 microseconds, as in PgBouncer's SHOW STATS.
// Pure; any thread.
#pragma once

#include "protocol/builders.hpp"
#include "src/admin/admin_command.hpp"
#include "src/snapshot.hpp"

namespace sluice {

// False for the items that do not read the pooler's state (VERSION, HELP).
bool show_needs_snapshot(admin::ShowItem item);

// Appends the result set of SHOW `item` to `out`. `snapshot` was taken with clients when `item` is
// CLIENTS; it is not read when show_needs_snapshot(item) is false. A snapshot without a config
// (null) renders no config rows.
void render_show(admin::ShowItem item, const Snapshot& snapshot, protocol::Buffer& out);

}  // namespace sluice
