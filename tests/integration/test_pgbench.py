"""pgbench through the pooler in session mode: initialisation (COPY, DDL, VACUUM), select-only
runs with each query protocol (-M simple / extended / prepared), and the "done when" run of 32
clients for 10 seconds. Every run must end with zero failed transactions.
"""

import re
import subprocess

import pytest

from pgcluster import clean_env

pytestmark = pytest.mark.sluice_threads(2)


def pgbench(target, *args, timeout):
    env = clean_env(PGPASSWORD="alice-secret", PGCONNECT_TIMEOUT="10")
    argv = ["pgbench", "-h", target.host, "-p", str(target.port), "-U", "alice", *args, "app"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def summary(result):
    """(processed, failed) from pgbench's report; asserts it ran cleanly."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    assert processed and failed, output
    assert "error" not in result.stderr.lower(), result.stderr
    return int(processed.group(1)), int(failed.group(1))


@pytest.fixture(scope="module")
def initialised(pg):
    """pgbench tables for the module, created by the first test that runs (through the pooler).
    Returns a function that makes sure they exist."""
    def ensure(target):
        if not pg.execute("SELECT to_regclass('public.pgbench_accounts')", dbname="app")[0][0]:
            result = pgbench(target, "-i", "-s", "1", "-q", timeout=120)
            assert result.returncode == 0, result.stdout + result.stderr
    return ensure


def test_pgbench_init_through_the_pooler(pg, sluice):
    result = pgbench(sluice, "-i", "-s", "1", "-q", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pg.execute("SELECT count(*) FROM pgbench_accounts", dbname="app") == [(100000,)]
    assert pg.execute("SELECT count(*) FROM pgbench_branches", dbname="app") == [(1,)]


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_select_only(sluice, initialised, mode):
    initialised(sluice)
    # Bounded by count (-t), not by time: 8 clients x 200 transactions.
    result = pgbench(sluice, "-S", "-M", mode, "-c", "8", "-j", "2", "-t", "200", timeout=120)
    processed, failed = summary(result)
    assert (processed, failed) == (1600, 0)
    assert "1600/1600" in result.stdout


@pytest.mark.sluice_config(config={"servers": {"main": {"max_connections": 60}},
                                   "databases": {"app": {"pool_size": 40}}})
def test_pgbench_32_clients_for_10_seconds(sluice, initialised):
    # The "done when" run: session mode, 32 clients, 10 seconds, no failed transaction.
    initialised(sluice)
    result = pgbench(sluice, "-S", "-c", "32", "-j", "2", "-T", "10", timeout=90)
    processed, failed = summary(result)
    assert failed == 0
    assert processed > 0
