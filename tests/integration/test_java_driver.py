"""pgJDBC through the pooler, in transaction and session pooling mode (issue 20).

pgJDBC 42.5 (Debian's libpostgresql-jdbc-java) at its defaults, as seen on the wire: after an
SSLRequest and a startup packet with extra_float_digits=2, it sends `SET extra_float_digits = 3`
and `SET application_name = 'PostgreSQL JDBC Driver'` as extended-protocol queries (each with its
own Sync); with autocommit off it sends BEGIN itself in front of a transaction's first statement
and prepares its COMMIT as the named statement S_1 at the first commit, while other statements
(BEGIN included) become named S_2, S_3, ... at their fifth execution (prepareThreshold; a batch
names its statement at once). setFetchSize reads through a named portal (C_1) with one
Execute(max 10) and Sync per fetch inside the transaction; setQueryTimeout sends a CancelRequest.
Sluice used to pin every such client to its backend (`client_pinned ... reason=set_unreported`),
so each Java connection held a backend for life, and the next client of a backend reset with
DISCARD ALL failed at its first COMMIT with `prepared statement "S_1" does not exist` (26000),
because the pooler's per-backend statement cache was not cleared.

Each scenario is a sub-command of java/PgJdbcCheck.java, compiled once per module with javac; it
checks every result itself and prints one JSON summary, which the tests assert on. In
transaction mode the tests also require that no client was pinned and, where several clients
share the pool, that no more backends than pool_size were used. Skipped when javac or the pgJDBC
jar (/usr/share/java/postgresql.jar) is missing. Run with /usr/bin/python3, e.g.
  SLUICE_BIN=build/sluice /usr/bin/python3 -m pytest -q tests/integration/test_java_driver.py
"""

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from conftest import TARGET

pytestmark = pytest.mark.sluice_threads(2)

JAR = Path("/usr/share/java/postgresql.jar")
SOURCE = Path(__file__).resolve().parent / "java" / "PgJdbcCheck.java"

# PgBouncer 1.18 keeps neither protocol-level prepared statements nor session settings in
# transaction mode, so that mode is only checked against Sluice (and PostgreSQL itself).
MODES = [pytest.param("transaction", marks=pytest.mark.targets("sluice", "direct")), "session"]


def pool_config(mode, pool_size):
    # query_wait_timeout: a client stuck behind pinned backends fails within the test's time.
    return {"databases": {"app": {"pool_mode": mode, "pool_size": pool_size}},
            "query_wait_timeout": "10s"}


@pytest.fixture(scope="module")
def jdbc_classpath(tmp_path_factory):
    """Compiles PgJdbcCheck.java once for the module; returns the java -cp value."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if not javac or not java:
        pytest.skip("javac/java are not installed (Debian: default-jdk-headless)")
    if not JAR.exists():
        pytest.skip(f"{JAR} is missing (Debian: libpostgresql-jdbc-java)")
    out = tmp_path_factory.mktemp("jdbc")
    result = subprocess.run([javac, "-cp", str(JAR), "-d", str(out), str(SOURCE)],
                            capture_output=True, text=True, timeout=180,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"javac failed:\n{result.stdout}\n{result.stderr}"
    return f"{out}:{JAR}"


def jdbc_url(target, **params):
    """The JDBC URL of the pooler (or server) for alice on app; params are pgJDBC properties.
    Timeouts keep a stuck driver from outliving the test."""
    props = {"user": "alice", "password": "alice-secret", "connectTimeout": 10,
             "loginTimeout": 15, "socketTimeout": 60, **params}
    return (f"jdbc:postgresql://127.0.0.1:{target.port}/app?"
            + urllib.parse.urlencode({k: str(v) for k, v in props.items()}))


def run_java(classpath, command, url, *args, timeout=170):
    """Runs one PgJdbcCheck scenario; returns its JSON summary. Exit status 1 (a check failed)
    still has a summary; the test asserts on its errors first, for the better message."""
    result = subprocess.run(["java", "-cp", classpath, "PgJdbcCheck", command, url,
                             *map(str, args)],
                            capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), (
        f"no summary (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    report = json.loads(lines[-1])
    report["returncode"] = result.returncode
    report["stderr"] = result.stderr[-3000:]
    return report


def assert_clean(report):
    """No check failed and no exception escaped in the Java program."""
    assert report["error_count"] == 0, json.dumps(report["errors"], indent=1)
    assert report["returncode"] == 0, report["stderr"]
    assert report["checks"] > 0


def full_log(target):
    """The pooler's whole log (PoolerProcess.log() is only its tail); empty for direct."""
    log_file = getattr(target, "log_file", None)
    if log_file is None or not Path(log_file).exists():
        return ""
    return Path(log_file).read_text(errors="replace")


def pinned_lines(target, allowed_reasons=()):
    """The pooler's client_pinned lines, except those for one of allowed_reasons."""
    return [line for line in full_log(target).splitlines() if "client_pinned" in line
            and not any(f"reason={r} " in line + " " for r in allowed_reasons)]


def assert_transaction_pooled(target, mode, report=None, pool_size=None):
    """In transaction mode behind Sluice: nothing pinned, at most pool_size backends seen."""
    if mode != "transaction" or TARGET != "sluice":
        return
    assert pinned_lines(target) == []
    if report is not None and pool_size is not None:
        assert 1 <= len(report["pids"]) <= pool_size, report["pids"]


# ---- issue 20 --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("neighbour", ["none", "listen"])
@pytest.mark.parametrize("threshold", ["default", "1"])
@pytest.mark.parametrize("mode", MODES)
def test_issue_program_sequential_connections(start_sluice, jdbc_classpath, mode, threshold,
                                              neighbour):
    # The reporter's program: 5 connections one after another, autocommit off, one
    # PreparedStatement executed 10 times with a commit after each. With neighbour=listen a
    # connection pinned by LISTEN (legitimately) runs the same statement between two of them and
    # leaves: its backend is reset, and the statement cache must forget what the reset dropped.
    sluice = start_sluice(config=pool_config(mode, 10))
    params = {} if threshold == "default" else {"prepareThreshold": threshold}
    report = run_java(jdbc_classpath, "issue", jdbc_url(sluice, **params), 5, 10, neighbour)
    assert_clean(report)
    assert report["ok_connections"] == 5
    if mode == "transaction" and TARGET == "sluice":
        assert pinned_lines(sluice, allowed_reasons=("listen",)) == []


# ---- many threads over a small pool ----------------------------------------------------------


@pytest.mark.timeout(200)
@pytest.mark.parametrize("mode", MODES)
def test_concurrent_threads_over_a_small_pool(start_sluice, jdbc_classpath, mode):
    # 16 threads, 50 connections in all (each thread opens several, one after another), four
    # prepared-statement transactions each. Transaction mode shares 4 backends among them;
    # session mode gives each concurrent connection its own backend, so nothing waits on a
    # connection that holds its backend until it closes.
    threads, connections, tx = 16, 50, 4
    pool_size = 4 if mode == "transaction" else threads
    sluice = start_sluice(config=pool_config(mode, pool_size))
    report = run_java(jdbc_classpath, "concurrent", jdbc_url(sluice), threads, connections, tx)
    assert_clean(report)
    assert (report["connections"], report["transactions"]) == (connections, connections * tx)
    assert_transaction_pooled(sluice, mode, report, pool_size)


# ---- protocol features pgJDBC relies on ------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_batches(start_sluice, jdbc_classpath, mode):
    sluice = start_sluice(config=pool_config(mode, 4))
    report = run_java(jdbc_classpath, "batch", jdbc_url(sluice), f"jdbc_batch_{mode}")
    assert_clean(report)
    assert_transaction_pooled(sluice, mode)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_fetch_size_cursors_in_transactions(start_sluice, jdbc_classpath, mode):
    sluice = start_sluice(config=pool_config(mode, 4))
    report = run_java(jdbc_classpath, "fetchsize", jdbc_url(sluice))
    assert_clean(report)
    assert_transaction_pooled(sluice, mode)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_query_timeout_cancels_and_the_connection_goes_on(start_sluice, jdbc_classpath, mode):
    sluice = start_sluice(config=pool_config(mode, 4))
    report = run_java(jdbc_classpath, "timeout", jdbc_url(sluice))
    assert_clean(report)
    assert_transaction_pooled(sluice, mode)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_error_in_a_transaction_then_rollback_and_reuse(start_sluice, jdbc_classpath, mode):
    sluice = start_sluice(config=pool_config(mode, 4))
    report = run_java(jdbc_classpath, "txerror", jdbc_url(sluice))
    assert_clean(report)
    assert_transaction_pooled(sluice, mode)


# ---- session settings ------------------------------------------------------------------------


@pytest.mark.timeout(200)
@pytest.mark.parametrize("mode", MODES)
def test_session_settings_follow_each_connection(start_sluice, jdbc_classpath, tenant_schemas,
                                                mode):
    # 12 connections at once, each with its own search_path, statement_timeout and
    # ApplicationName; transaction mode shares 4 backends among them, so their transactions
    # keep moving between backends and the settings must follow each connection.
    connections, rounds = 12, 20
    pool_size = 4 if mode == "transaction" else connections
    sluice = start_sluice(config=pool_config(mode, pool_size))
    report = run_java(jdbc_classpath, "settings", jdbc_url(sluice), connections, rounds,
                      len(tenant_schemas))
    assert_clean(report)
    assert_transaction_pooled(sluice, mode, report, pool_size)
    if mode == "transaction" and TARGET == "sluice":
        assert report["moved"] > 0, "no connection changed backend: the test tested nothing"
