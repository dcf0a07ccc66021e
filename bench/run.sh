#!/usr/bin/env bash
# Sluice benchmark: one command. Installs what is missing (as root, Debian 12), raises the file
# descriptor limit, then hands over to runner.py (which builds Sluice, starts PostgreSQL 15,
# PgBouncer and Sluice on 127.0.0.1, runs the scenarios and writes the report).
#
#   bench/run.sh              full run: 15 s per run, 3 interleaved repetitions, medians
#   bench/run.sh --quick      short runs, 1 repetition: checks the harness in a few minutes
#   bench/run.sh --only throughput,hop     (or numbers: --only 1,2)
#   bench/run.sh --help       all options
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3   # Debian's python, where python3-psycopg/asyncpg/matplotlib live

packages=(pgbouncer postgresql-15 postgresql-client-15 python3 python3-psycopg python3-asyncpg
          python3-matplotlib build-essential cmake ninja-build pkg-config libboost-dev libssl-dev
          libspdlog-dev libfmt-dev prometheus-cpp-dev catch2 libpq-dev libtoml11-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "bench: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "bench: installing ${missing[*]}"
  # The benchmark starts its own throwaway cluster; keep the package from creating and starting
  # a system one on port 5432.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/sluice-bench.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 10000 idle clients need 10000+ descriptors in the client process and in the pooler.
hard=$(ulimit -Hn)
if [[ $hard == unlimited ]]; then hard=1048576; fi
ulimit -n $(( hard < 65536 ? hard : 65536 ))

cleanup() { "$PY" "$here/runner.py" --cleanup >/dev/null 2>&1 || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

BENCH_COMMAND="bench/run.sh${*:+ $*}" "$PY" -u "$here/runner.py" "$@"
