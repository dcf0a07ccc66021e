"""Fixtures for the integration tests: a real PostgreSQL 15 per test module and a pooler per test.

Which pooler the `sluice` fixture starts is chosen by SLUICE_TEST_TARGET:
  sluice     (default) $SLUICE_BIN, else build/sluice in the repository;
  pgbouncer  Debian's PgBouncer, configured from the same dict: checks the tests' own logic
             against a known-good pooler;
  direct     no pooler, clients talk to PostgreSQL itself: checks the PostgreSQL fixture and the
             tests that do not depend on pooling.
Tests that only make sense for some targets say so with @pytest.mark.targets(...), and are
skipped for the others. Run with /usr/bin/python3 (Debian's psycopg and pytest), e.g.
  SLUICE_TEST_TARGET=direct /usr/bin/python3 -m pytest -q tests/integration
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

import pgcluster  # noqa: E402  (needs the sys.path entry above)

TARGET = os.environ.get("SLUICE_TEST_TARGET", "sluice")
TARGET_CLASSES = {
    "sluice": pgcluster.SluiceProcess,
    "pgbouncer": pgcluster.PgBouncerProcess,
    "direct": pgcluster.DirectTarget,
}
if TARGET not in TARGET_CLASSES:
    raise pytest.UsageError(f"SLUICE_TEST_TARGET must be one of {sorted(TARGET_CLASSES)}")

# SQLSTATEs where PgBouncer 1.18 knowingly differs from PostgreSQL (and so from Sluice); only
# used when validating the tests against PgBouncer.
PGBOUNCER_SQLSTATES = {"28P01": "08P01", "53300": "08P01"}


def expected_sqlstate(code: str) -> str:
    """`code`, or what the validation target sends instead."""
    return PGBOUNCER_SQLSTATES.get(code, code) if TARGET == "pgbouncer" else code


DEFAULT_TIMEOUT = 120  # seconds per test unless @pytest.mark.timeout(n)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "targets(*names): run only when SLUICE_TEST_TARGET is one of the names")
    config.addinivalue_line(
        "markers", "sluice_config(config=None, users=None): config and auth-file overrides for "
                   "the `sluice` fixture (merged into pgcluster.default_config)")
    config.addinivalue_line("markers", f"timeout(seconds): time limit, default {DEFAULT_TIMEOUT}")
    config.addinivalue_line(
        "markers", "sluice_threads(n): every pooler the test starts runs n event-loop threads "
                   "unless its config says otherwise; on a module, it also puts the file in the "
                   "`threads` ctest label that the ThreadSanitizer build runs (.ci/run)")


def pytest_runtest_setup(item):
    marker = item.get_closest_marker("targets")
    if marker and TARGET not in marker.args:
        pytest.skip(f"only for targets {', '.join(marker.args)} (SLUICE_TEST_TARGET={TARGET})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Remember each phase's outcome so fixture teardown can add the pooler's log on failure.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


class TimeLimitExceeded(Exception):
    """Raised in the main thread when a test runs past its time limit."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """Fails a test that runs too long instead of letting it hang until ctest's timeout.

    Only the test body is timed: setup and teardown have their own bounded waits, and an alarm
    in the middle of a fixture's teardown could leave a server running. SIGALRM interrupts
    blocking socket waits in the main thread (psycopg and our raw client wait in Python, which
    runs the handler on EINTR); threads must be joined with timeouts.
    """
    marker = item.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT

    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"test exceeded its {seconds}s time limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def pg():
    """A fresh PostgreSQL 15 for the module: roles alice (SCRAM), bob (md5), database app."""
    with pgcluster.PgCluster() as cluster:
        yield cluster


def make_pooler(pg, config=None, users=None, **kwargs):
    """An unstarted pooler of the selected target for `pg` (also for module-scoped fixtures)."""
    return TARGET_CLASSES[TARGET](pg, config=config, users=users, **kwargs)


@pytest.fixture
def start_sluice(pg, request):
    """Factory: start_sluice(config={...}, users={...}) starts a pooler with that config merged
    into the defaults and returns it; under @pytest.mark.sluice_threads(n), with `threads = n`
    unless that config names `threads`. Everything started is stopped after the test; a pooler
    that died without being signalled, or whose log holds a sanitizer report, fails the test (a
    crash or a data race must not pass unnoticed)."""
    started = []
    threads = request.node.get_closest_marker("sluice_threads")

    def start(config=None, users=None, **kwargs):
        if threads:
            # Beneath the test's own config, which may still ask for another count.
            config = pgcluster.merge({"threads": threads.args[0]}, config or {})
        pooler = make_pooler(pg, config, users, **kwargs)
        started.append(pooler)
        return pooler.start()

    yield start

    crashed = []
    for pooler in started:
        if not pooler.running() and not getattr(pooler, "signalled", False):
            crashed.append(f"{pooler.name} exited unexpectedly with code "
                           f"{pooler.proc.returncode}\n{pooler.log()}")
        if isinstance(pooler, pgcluster.PoolerProcess):
            pooler.stop()  # LeakSanitizer reports at exit
            report = pooler.sanitizer_report()
            if report:
                crashed.append(f"{pooler.name} reported a sanitizer error\n{report}")
        failed = any(getattr(request.node, f"rep_{phase}", None) is not None
                     and getattr(request.node, f"rep_{phase}").failed
                     for phase in ("setup", "call"))
        if failed and pooler.log():
            print(f"--- {pooler.name} log (tail) ---\n{pooler.log()}", file=sys.stderr)
        pooler.cleanup()
    if crashed:
        pytest.fail("\n".join(crashed))


@pytest.fixture
def sluice(start_sluice, request):
    """The pooler with the defaults, or with @pytest.mark.sluice_config(config=..., users=...)."""
    marker = request.node.get_closest_marker("sluice_config")
    return start_sluice(**(marker.kwargs if marker else {}))


TENANT_SCHEMAS = 8  # s0..s7


@pytest.fixture(scope="module")
def tenant_schemas(pg):
    """Schemas s0..s7 owned by alice, each with a table whoami naming its schema, and
    public.whoami naming 'public': an unqualified `whoami` shows which search_path applies (the
    per-connection search_path of multi-tenant applications). Returns their names."""
    with pg.connect("alice", pg.ALICE_PASSWORD, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.whoami (name text)")
        conn.execute("TRUNCATE public.whoami")
        conn.execute("INSERT INTO public.whoami VALUES ('public')")
        for k in range(TENANT_SCHEMAS):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS s{k}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS s{k}.whoami (name text)")
            conn.execute(f"TRUNCATE s{k}.whoami")
            conn.execute(f"INSERT INTO s{k}.whoami VALUES ('s{k}')")
    return [f"s{k}" for k in range(TENANT_SCHEMAS)]
