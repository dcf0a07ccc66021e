"""Signals. SIGTERM: stop accepting, let sessions finish for up to shutdown_timeout, then close
the remaining clients with FATAL 57P01 and exit 0. SIGINT: exit immediately.

Only for the sluice target: PgBouncer 1.18's signals mean something else.
"""

import signal
import threading
import time

import psycopg
import pytest

import pgwire

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

SLACK = 5  # seconds allowed beyond shutdown_timeout for signal delivery and process exit


def login_refused(target) -> bool:
    """True if a new client cannot get a session: connection refused, or an error and close.
    A login that works is False; so is a server that accepts but never answers (timeout)."""
    try:
        client = pgwire.connect(target.host, target.port, "alice", "app", "alice-secret",
                                timeout=3)
    except (ConnectionRefusedError, ConnectionResetError, pgwire.ServerError,
            pgwire.ConnectionClosed):
        return True
    except TimeoutError:
        return False
    client.close()
    return False


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@pytest.mark.sluice_config(config={"shutdown_timeout": "10s"})
def test_sigterm_drains_running_sessions_and_refuses_new_clients(pg, sluice):
    conn = sluice.connect()
    outcome = []

    def run():
        try:
            conn.execute("SELECT pg_sleep(1)")
            outcome.append("completed")
        except psycopg.Error as e:
            outcome.append(repr(e))

    worker = threading.Thread(target=run)
    worker.start()
    pg.wait_for_query("SELECT pg_sleep(1)%", timeout=10)
    signalled_at = time.monotonic()
    sluice.send_signal(signal.SIGTERM)

    # New clients are turned away while the old session is still in its query...
    assert wait_until(lambda: login_refused(sluice), timeout=2)
    worker.join(timeout=10)
    assert outcome == ["completed"]

    # ...and after it: the session itself goes on until its client leaves.
    assert sluice.running()
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert login_refused(sluice)
    conn.close()

    assert sluice.wait(timeout=10 + SLACK) == 0
    assert time.monotonic() - signalled_at < 10 + SLACK


@pytest.mark.sluice_config(config={"shutdown_timeout": "1s"})
def test_sigterm_closes_lingering_clients_with_57P01_after_shutdown_timeout(sluice):
    raw = pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret")
    conn = sluice.connect()
    assert raw.query("SELECT 1") == [["1"]]
    assert conn.execute("SELECT 1").fetchone() == (1,)

    signalled_at = time.monotonic()
    sluice.send_signal(signal.SIGTERM)
    with raw:
        messages = raw.read_until_closed(timeout=1 + SLACK)
    closed_after = time.monotonic() - signalled_at
    errors = [pgwire.parse_error_fields(body) for kind, body in messages if kind == b"E"]
    assert [(e.get("V"), e.get("C")) for e in errors] == [("FATAL", "57P01")], messages
    # Idle but connected is still a session: it may stay until shutdown_timeout, not be cut
    # at once. (0.8 rather than 1.0 only to absorb timer granularity.)
    assert closed_after >= 0.8

    assert sluice.wait(timeout=1 + SLACK) == 0
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()


@pytest.mark.sluice_config(config={"shutdown_timeout": "30s"})
def test_sigint_exits_at_once_even_with_busy_clients(pg, sluice):
    raw = pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret")
    raw.send(pgwire.message(b"Q", b"SELECT pg_sleep(20)\0"))
    pg.wait_for_query("SELECT pg_sleep(20)%", timeout=10)
    sluice.send_signal(signal.SIGINT)
    sluice.wait(timeout=SLACK)  # raises TimeoutExpired if it lingers; exit code unspecified
    with raw:
        messages = raw.read_until_closed(timeout=SLACK)
    # Closed without finishing the query (a RowDescription may already have been relayed).
    assert not any(kind in (b"C", b"Z") for kind, _ in messages), messages


@pytest.mark.timeout(90)
def test_rolling_restart_a_new_sluice_beside_the_old_one_takes_over(start_sluice):
    """SO_REUSEPORT: the new process binds the same port while the old one runs; SIGTERM makes
    the old one stop accepting and exit when its clients are gone; no client is refused."""
    old = start_sluice(config={"shutdown_timeout": "60s"})
    held = old.connect()  # a client of the old process, mid-session
    held.execute("SELECT 1")
    new = start_sluice(config={"shutdown_timeout": "60s"}, port=old.port)
    assert new.running() and old.running()
    old.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    # Every new client is served (by the new process) while the old one drains.
    for _ in range(20):
        with new.connect() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    assert old.running()  # still serving its client
    assert held.execute("SELECT 2").fetchone() == (2,)
    held.close()
    assert old.wait(timeout=20) == 0
    with new.connect() as c:
        assert c.execute("SELECT 3").fetchone() == (3,)
