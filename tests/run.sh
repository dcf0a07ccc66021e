#!/usr/bin/env bash
# THE test command (README, .ci/run): installs missing Debian packages (as root), configures and
# builds, then runs every test with ctest: unit tests, fuzz-corpus replays, and the integration
# tests, which start their own throwaway PostgreSQL 15. Exits with ctest's status.
#
# Usage: tests/run.sh [--asan]
#   --asan  build in build-asan with -DSLUICE_SANITIZE=asan (address + undefined behaviour)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=support/deps.sh
source "$here/support/deps.sh"

build_dir="$SLUICE_ROOT/build"
cmake_args=()
case "${1:-}" in
  "") ;;
  --asan)
    build_dir="$SLUICE_ROOT/build-asan"
    cmake_args=(-DSLUICE_SANITIZE=asan)
    # Symbolised stack traces for UBSan reports; ASan reports them by default.
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
    ;;
  *)
    echo "usage: $0 [--asan]" >&2
    exit 2
    ;;
esac

sluice_ensure_packages
sluice_configure "$build_dir" "${cmake_args[@]}"
sluice_compile "$build_dir"

status=0
ctest --test-dir "$build_dir" --output-on-failure || status=$?
exit "$status"
