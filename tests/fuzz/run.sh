#!/bin/bash
# Builds the libFuzzer targets with clang (-fsanitize=fuzzer,address,undefined) into build-fuzz/
# and runs each for MINUTES (default 10), one after the other, on its checked-in corpus.
#
#   tests/fuzz/run.sh [MINUTES] [TARGET...]      e.g. tests/fuzz/run.sh 3 statement_mapper_fuzz
#
# TARGETs are names of tests/fuzz/*_fuzz.cpp (default: all). The checked-in corpus
# (tests/fuzz/corpus/<target>/) is read only: new inputs go to build-fuzz/fuzz-runs/<target>/corpus
# and crash, leak, timeout and OOM files to build-fuzz/fuzz-runs/<target>/artifacts. Add an input
# worth keeping to the corpus by hand (`<target> -minimize_crash=1 -runs=10000 CRASH` shrinks a
# crash first). Prints runs, coverage and any crash file per target; exits 1 if any target found
# one. Local only: no network, nothing written outside build-fuzz/.
#
# Environment: SLUICE_FUZZ_BUILD (build directory, default <repo>/build-fuzz), SLUICE_FUZZ_JOBS
# (build parallelism, default 2), CXX (default clang++-14, else clang++). Not run by CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${SLUICE_FUZZ_BUILD:-$ROOT/build-fuzz}
JOBS=${SLUICE_FUZZ_JOBS:-2}

MINUTES=10
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
  MINUTES=$1
  shift
fi
if [[ $MINUTES -lt 1 ]]; then
  echo "MINUTES must be at least 1" >&2
  exit 2
fi

ALL=()
for f in "$ROOT"/tests/fuzz/*_fuzz.cpp; do
  ALL+=("$(basename "$f" .cpp)")
done
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL[@]}")
for t in "${TARGETS[@]}"; do
  if [[ ! -f $ROOT/tests/fuzz/$t.cpp ]]; then
    echo "unknown fuzz target: $t (have: ${ALL[*]})" >&2
    exit 2
  fi
done

# ---- toolchain: clang with libFuzzer and the sanitizer runtimes (Debian: clang-14,
# libclang-rt-14-dev) ----
if [[ -z ${CXX:-} ]]; then
  CXX=$(command -v clang++-14 || command -v clang++ || true)
fi
if [[ -z $CXX ]] || ! "$CXX" --version 2>/dev/null | grep -q clang; then
  echo "clang++ not found. Install it with:" >&2
  echo "  apt-get install -y clang-14 libclang-rt-14-dev" >&2
  exit 1
fi
FUZZER_LIB=$("$CXX" -print-file-name=libclang_rt.fuzzer-x86_64.a)
if [[ ! -f $FUZZER_LIB ]]; then
  echo "libFuzzer (libclang_rt.fuzzer) not found for $CXX. Install it with:" >&2
  echo "  apt-get install -y libclang-rt-14-dev" >&2
  exit 1
fi

# ---- build ----
# SLUICE_SANITIZE=asan adds address,undefined (no recovery) to every object; fuzzer-no-link adds
# the coverage instrumentation; SLUICE_LIBFUZZER links the targets with libFuzzer's main().
# clang 14 with libstdc++ needs BOOST_ASIO_HAS_CO_AWAIT=1 (STYLE guide; set by sluice_core too).
echo "== building fuzz targets in $BUILD"
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link -DBOOST_ASIO_HAS_CO_AWAIT=1" \
  -DSLUICE_SANITIZE=asan -DSLUICE_LIBFUZZER=ON -DSLUICE_INTEGRATION=OFF >"$BUILD/configure.log" 2>&1 ||
  { cat "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}"

# ---- run ----
SECONDS_EACH=$((MINUTES * 60))
RUNS="$BUILD/fuzz-runs"
mkdir -p "$RUNS"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

declare -A RESULT
FOUND=0
for t in "${TARGETS[@]}"; do
  dir="$RUNS/$t"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  seeds="$ROOT/tests/fuzz/corpus/$t"
  inputs=("$dir/corpus")  # the first directory receives new inputs; the seeds are only read
  [[ -d $seeds ]] && inputs+=("$seeds")
  echo "== $t: ${MINUTES} min (log: $dir/log)"
  touch "$dir/.start"  # artifacts of this run are the files newer than this
  set +e
  # The outer timeout bounds a libFuzzer that stops honouring -max_total_time (a hang in setup).
  timeout --kill-after=30 $((SECONDS_EACH + 120)) "$BUILD/tests/$t" \
    -max_total_time="$SECONDS_EACH" -timeout=25 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${inputs[@]}" >"$dir/log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$dir/log" | tail -1)
  corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$dir/log" | tail -1)
  crashes=$(find "$dir/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' -o -name 'slow-unit-*' \) -newer "$dir/.start" 2>/dev/null | sort | tr '\n' ' ')
  if [[ $rc -ne 0 || -n $crashes ]]; then
    FOUND=1
    status="FOUND (exit $rc) ${crashes:-see log}"
  else
    status="ok"
  fi
  RESULT[$t]="runs=${runs:-?} ${cov:-cov: ?} ${corp:-} -- $status"
  echo "   ${RESULT[$t]}"
done

echo
echo "== summary (${MINUTES} min each)"
for t in "${TARGETS[@]}"; do
  printf '%-24s %s\n' "$t" "${RESULT[$t]}"
done
exit $FOUND
