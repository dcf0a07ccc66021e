#!/usr/bin/env bash
# Relay-path profile of Sluice against PgBouncer (bench/PROFILE.md): CPU per transaction,
# syscalls per transaction, perf call graphs, callgrind instruction and allocation counts per
# transaction, idle-client memory with heaptrack attribution. Needs root on Debian 12 with
# postgresql-15, pgbouncer, python3-psycopg, linux-perf, valgrind, heaptrack.
#
#   bench/profile/relay.sh                              everything (~35 min), binary build-perf/sluice
#   bench/profile/relay.sh --phases cpu --reps 5        only CPU per transaction
#   bench/profile/relay.sh --sluice-bin A --baseline-bin B --phases cpu      A/B of two builds
#   bench/profile/relay.sh --rows 100                   a 100-row query instead of pgbench -S
#   bench/profile/relay.sh --help                       every option
#
# Build the binary first, e.g.
#   cmake -S "$REPO" -B "$REPO/build-perf" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_INTEGRATION=OFF
#   cmake --build "$REPO/build-perf" --target sluice
# Output: bench/out/profile/RUN_ID/ (summary.md, summary.json, perf/, callgrind/, heaptrack/).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for tool in perf valgrind heaptrack pgbench pgbouncer; do
  command -v "$tool" >/dev/null || echo "relay.sh: $tool not found; its phase will fail" >&2
done
# 2000+ idle clients need as many descriptors in the client process and in the pooler.
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]]; then hard=1048576; fi
ulimit -n $(( hard < 65536 ? hard : 65536 ))
exec /usr/bin/python3 -u "$here/relay.py" "$@"
