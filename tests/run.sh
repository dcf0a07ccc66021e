#!/usr/bin/env bash
# THE test command (README, .ci/run): installs missing Debian packages (as root), configures and
# builds, then runs every test with ctest: unit tests, fuzz-corpus replays, and the integration
# tests, which start their own throwaway PostgreSQL 15. Exits with ctest's status.
#
# Usage: tests/run.sh [--asan | --tsan]
#   --asan  build in build-asan with -DSLUICE_SANITIZE=asan (address + undefined behaviour) and run
#           every test against it
#   --tsan  build in build-tsan with -DSLUICE_SANITIZE=tsan (data races) and run the tests that use
#           more than one thread: the unit tests (ctest label `unit`) and the integration files
#           marked `sluice_threads`, which run Sluice with two event loops (label `threads`)
# A sanitizer report in Sluice's log fails the integration test that started it (conftest.py).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=support/deps.sh
source "$here/support/deps.sh"

build_dir="$SLUICE_ROOT/build"
cmake_args=()
ctest_args=()
case "${1:-}" in
  "") ;;
  --asan)
    build_dir="$SLUICE_ROOT/build-asan"
    cmake_args=(-DSLUICE_SANITIZE=asan)
    # Symbolised stack traces for UBSan reports; ASan reports them by default.
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
    ;;
  --tsan)
    build_dir="$SLUICE_ROOT/build-tsan"
    cmake_args=(-DSLUICE_SANITIZE=tsan)
    # A process with a race report exits with status 66 at the end, so ctest counts it as failed.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-second_deadlock_stack=1}
    # Not the fuzz-corpus replays (one thread) nor the unmarked integration files (a client or two
    # at a time): little for TSan to find there, and TSan's slowdown would cost CI minutes.
    ctest_args=(-L 'unit|threads')
    ;;
  *)
    echo "usage: $0 [--asan | --tsan]" >&2
    exit 2
    ;;
esac

sluice_ensure_packages
sluice_configure "$build_dir" "${cmake_args[@]}"
sluice_compile "$build_dir"

status=0
ctest --test-dir "$build_dir" --output-on-failure "${ctest_args[@]}" || status=$?
exit "$status"
