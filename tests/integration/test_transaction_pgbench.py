"""pgbench through the pooler in transaction mode: 64 clients share 8 backends.

Initialisation (DDL, COPY, VACUUM) through the pooler, then select-only runs with every query
protocol (-M simple / extended / prepared: the last uses named prepared statements that must work
on whichever backend a transaction lands on) and the TPC-B-like default script. Every run is
bounded by a transaction count (-t), must process exactly clients x transactions with zero
failures, and a direct superuser connection polls pg_stat_activity while it runs to check that
the pooler never held more than pool_size backends.
"""

import re
import subprocess
import threading
import time

import pytest

from pgcluster import clean_env

POOL_SIZE = 8
CLIENTS = 64
TRANSACTION_MODE = {"databases": {"app": {"pool_mode": "transaction", "pool_size": POOL_SIZE}}}

pytestmark = [pytest.mark.sluice_config(config=TRANSACTION_MODE), pytest.mark.sluice_threads(2)]


def pgbench(target, *args, timeout, pg=None):
    """Runs pgbench against `target`. If it is still running after `timeout`, the test fails with
    what the server's backends were doing at that moment (a stalled client shows up there)."""
    env = clean_env(PGPASSWORD="alice-secret", PGCONNECT_TIMEOUT="10")
    argv = ["pgbench", "-h", target.host, "-p", str(target.port), "-U", "alice", *args, "app"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        activity = pg.execute(
            "SELECT pid, state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity"
            " WHERE datname = 'app' AND backend_type = 'client backend'") if pg else "?"
        proc.kill()
        stdout, stderr = proc.communicate(timeout=10)
        pytest.fail(f"pgbench {' '.join(args)} still running after {timeout}s; backends then: "
                    f"{activity}\n{stdout[-2000:]}\n{stderr[-2000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def summary(result):
    """(processed, failed) from pgbench's report; asserts it ran cleanly."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    assert processed and failed, output
    assert "error" not in result.stderr.lower(), result.stderr
    return int(processed.group(1)), int(failed.group(1))


class BackendWatcher:
    """Polls pg_stat_activity over a direct superuser connection (Unix socket, so it is never
    one of the counted backends) and records the most backends of alice in app seen at once."""

    def __init__(self, pg, interval=0.01):
        self.pg = pg
        self.interval = interval
        self.samples = 0
        self.most = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with self.pg.superuser() as conn:
                while not self._stop.is_set():
                    (count,) = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app'"
                        " AND usename = 'alice' AND backend_type = 'client backend'").fetchone()
                    self.samples += 1
                    self.most = max(self.most, count)
                    self._stop.wait(self.interval)
        except Exception as e:  # reported by the test
            self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "watcher did not stop"


@pytest.fixture(scope="module")
def initialised(pg):
    """pgbench tables for the module, created through the first pooler that asks for them."""
    def ensure(target):
        if not pg.execute("SELECT to_regclass('public.pgbench_accounts')", dbname="app")[0][0]:
            result = pgbench(target, "-i", "-s", "1", "-q", timeout=180, pg=pg)
            assert result.returncode == 0, result.stdout + result.stderr
    return ensure


def test_pgbench_init_through_the_pooler(pg, sluice):
    with BackendWatcher(pg) as watcher:
        result = pgbench(sluice, "-i", "-s", "1", "-q", timeout=180, pg=pg)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done" in result.stderr, result.stderr
    assert pg.execute("SELECT count(*) FROM pgbench_accounts", dbname="app") == [(100000,)]
    assert pg.execute("SELECT count(*) FROM pgbench_branches", dbname="app") == [(1,)]
    assert pg.execute("SELECT count(*) FROM pgbench_tellers", dbname="app") == [(10,)]
    # VACUUM ran (it cannot run inside a transaction block, so the pooler must not add one).
    assert pg.execute("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables"
                      " WHERE relname = 'pgbench_accounts'", dbname="app") == [(True,)]
    assert watcher.error is None, watcher.error
    assert watcher.most <= 1


# pgbench -M prepared prepares each command with a blocking PQprepare (Parse, Sync) the first time
# a client runs it, which stalls the whole pgbench thread until the answer comes. With the TPC-B-
# like script, other clients of the same thread may hold every backend in an open transaction,
# waiting for that thread to send their next command: if the pooler needed a backend to answer
# that Parse, nothing would move until query_wait_timeout. Sluice answers a Parse+Sync outside a
# transaction itself once a backend of the pool has parsed that statement (every client prepares
# the same ones), so the prepared TPC-B run shares 2 pgbench threads among 64 clients too.
RUNS = [
    # (id, pgbench arguments, transactions per client)
    ("select-only-simple", ["-S", "-M", "simple", "-j", "2"], 200),
    ("select-only-extended", ["-S", "-M", "extended", "-j", "2"], 200),
    ("select-only-prepared", ["-S", "-M", "prepared", "-j", "2"], 200),
    ("tpcb-simple", ["-M", "simple", "-j", "2"], 100),
    ("tpcb-extended", ["-M", "extended", "-j", "2"], 100),
    ("tpcb-prepared", ["-M", "prepared", "-j", "2"], 100),
]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("args,per_client", [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_pgbench_64_clients_over_8_backends(pg, sluice, initialised, args, per_client):
    initialised(sluice)
    with BackendWatcher(pg) as watcher:
        # A run takes seconds here; the bound only turns a stall into a failure with details.
        result = pgbench(sluice, *args, "-c", str(CLIENTS), "-t", str(per_client), timeout=150,
                         pg=pg)
    processed, failed = summary(result)
    expected = CLIENTS * per_client
    assert (processed, failed) == (expected, 0), result.stdout
    assert f"{expected}/{expected}" in result.stdout
    assert f"number of clients: {CLIENTS}" in result.stdout

    assert watcher.error is None, watcher.error
    assert watcher.samples > 0
    assert 1 <= watcher.most <= POOL_SIZE, f"saw {watcher.most} backends for pool_size {POOL_SIZE}"

    if "-S" not in args:
        # pgbench truncates pgbench_history before a run (it was not given -n); every TPC-B-like
        # transaction then inserted exactly one row and committed.
        history = pg.execute("SELECT count(*) FROM pgbench_history", dbname="app")[0][0]
        assert history == expected
    # Nothing is left open on the server once pgbench has disconnected.
    deadline = time.monotonic() + 10
    while True:
        open_tx = pg.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = 'app'"
                             " AND state LIKE 'idle in transaction%'")[0][0]
        if open_tx == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert open_tx == 0
