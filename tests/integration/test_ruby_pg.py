"""Rails' connection pattern with Debian's ruby-pg through the pooler, in both pooling modes.

ActiveRecord's PostgreSQL adapter configures every connection with session-level SETs
(client_min_messages, standard_conforming_strings, intervalstyle, timezone and, per tenant,
`SET search_path TO <schema>, public`), then prepares statements with PQprepare under the names
a1, a2, a3, ... in the order the connection first uses them, and runs them with exec_prepared in
many transactions. So the same statement names carry different SQL on different connections,
and the same SQL text must read different tables depending on the connection's search_path.
Sluice used to pin such a client to its backend at its first `SET search_path`
(`client_pinned ... reason=set_unreported`), so a few Rails connections held every backend of a
small pool and the rest waited (issue 20).

ruby/rails_pattern.rb checks every result itself and prints one JSON summary; the tests assert
on it, and in transaction mode also that no client was pinned, that the pool's backends were
shared (at most pool_size of them) and that connections really moved between them. Skipped when
ruby or ruby-pg is missing. Run with /usr/bin/python3, e.g.
  SLUICE_BIN=build/sluice /usr/bin/python3 -m pytest -q tests/integration/test_ruby_pg.py
"""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TARGET, TENANT_SCHEMAS

pytestmark = pytest.mark.sluice_threads(2)

SCRIPT = Path(__file__).resolve().parent / "ruby" / "rails_pattern.rb"
CONNECTIONS = 8
TRANSACTION_POOL = 3

# PgBouncer 1.18 keeps neither protocol-level prepared statements nor session settings in
# transaction mode, so that mode is only checked against Sluice (and PostgreSQL itself).
MODES = [pytest.param("transaction", marks=pytest.mark.targets("sluice", "direct")), "session"]


@pytest.fixture(scope="module")
def ruby():
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.skip("ruby is not installed (Debian: ruby, ruby-pg)")
    probe = subprocess.run([ruby, "-e", "require 'pg'; require 'json'"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.skip(f"ruby-pg is not usable (Debian: ruby-pg): {probe.stderr.strip()}")
    return ruby


def run_rails(ruby, target, layout, transactions):
    """Runs rails_pattern.rb against `target`; returns its JSON summary (exit status 1, a failed
    check, still has one: the test asserts on its errors first, for the better message)."""
    result = subprocess.run(
        [ruby, str(SCRIPT), target.host, str(target.port), "alice", "alice-secret", "app", layout,
         str(CONNECTIONS), str(transactions), str(TENANT_SCHEMAS)],
        capture_output=True, text=True, timeout=170, stdin=subprocess.DEVNULL)
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), (
        f"no summary (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    report = json.loads(lines[-1])
    assert report["error_count"] == 0, json.dumps(report["errors"], indent=1)
    assert result.returncode == 0, result.stderr
    assert report["checks"] > 0
    return report


def pinned_lines(target):
    """client_pinned lines of the pooler's whole log (PoolerProcess.log() is only its tail)."""
    log_file = getattr(target, "log_file", None)
    if log_file is None or not Path(log_file).exists():
        return []
    return [line for line in Path(log_file).read_text(errors="replace").splitlines()
            if "client_pinned" in line]


def start(start_sluice, mode):
    # Session mode gives every connection its own backend (it holds one from login to close).
    pool_size = TRANSACTION_POOL if mode == "transaction" else CONNECTIONS
    # query_wait_timeout: a client stuck behind pinned backends fails within the test's time.
    config = {"databases": {"app": {"pool_mode": mode, "pool_size": pool_size}},
              "query_wait_timeout": "10s"}
    return start_sluice(config=config), pool_size


def assert_transaction_pooled(target, mode, report, pool_size):
    """In transaction mode behind Sluice: nothing pinned, the pool's backends shared by all
    connections, and connections moved between them (else the test proved nothing)."""
    if mode != "transaction" or TARGET != "sluice":
        return
    assert pinned_lines(target) == []
    assert 1 <= len(report["pids"]) <= pool_size, report["pids"]
    assert report["moved"] > 0, "no connection changed backend: the test tested nothing"


@pytest.mark.timeout(200)
@pytest.mark.parametrize("mode", MODES)
def test_rails_connections_in_threads(start_sluice, ruby, tenant_schemas, mode):
    # Eight connections at once, each in its own thread, over three backends in transaction mode.
    transactions = 30
    sluice, pool_size = start(start_sluice, mode)
    report = run_rails(ruby, sluice, "threads", transactions)
    # rails_pattern.rb's rounds: r % 7 == 3 fails and rolls back, odd r runs in autocommit,
    # the rest are committed transactions.
    committed = sum(1 for r in range(transactions) if r % 7 != 3 and r % 2 == 0)
    assert report["transactions"] == CONNECTIONS * committed
    assert_transaction_pooled(sluice, mode, report, pool_size)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("mode", MODES)
def test_rails_connections_interleaved(start_sluice, ruby, tenant_schemas, mode):
    # One thread, three transactions open at once, a different three every round: with three
    # backends in transaction mode, every connection's transactions are spread over them.
    transactions = 24
    sluice, pool_size = start(start_sluice, mode)
    report = run_rails(ruby, sluice, "interleaved", transactions)
    assert report["transactions"] == 3 * transactions
    assert_transaction_pooled(sluice, mode, report, pool_size)
