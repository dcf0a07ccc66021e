"""Cancel requests and dying backends.

Cancel: libpq's PQcancel (psycopg's Connection.cancel) sends a CancelRequest with the
BackendKeyData the client got at login (issued by the pooler), to the pooler, which must
forward it to the right backend. Backend death: pg_terminate_backend from a direct superuser
connection; the client sees an error and the pool recovers.
"""

import socket
import struct
import threading
import time

import psycopg
import pytest

import pgwire
from pgcluster import port_accepts

pytestmark = pytest.mark.sluice_threads(2)

ONE_BACKEND = {"databases": {"app": {"pool_size": 1}}}


def cancel_after_start(pg, conn, pattern, errors):
    """Thread body: waits until `pattern` runs on some backend, then cancels conn's query."""
    try:
        pg.wait_for_query(pattern, timeout=10)
        conn.cancel()
    except Exception as e:  # reported by the main thread
        errors.append(e)


def test_cancel_of_pg_sleep_returns_57014_quickly(pg, sluice):
    with sluice.connect() as conn:
        errors = []
        canceller = threading.Thread(
            target=cancel_after_start, args=(pg, conn, "SELECT pg_sleep(10)%", errors))
        canceller.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute("SELECT pg_sleep(10)")
        elapsed = time.monotonic() - started
        canceller.join(timeout=10)
        assert not errors, errors
        assert caught.value.sqlstate == "57014"
        assert elapsed < 5, f"cancel took {elapsed:.1f}s"
        assert conn.execute("SELECT 1").fetchone() == (1,)  # same session, still usable


def test_cancel_goes_to_the_right_backend(pg, sluice):
    # Two sessions sleep at once; cancelling one must not touch the other.
    with sluice.connect() as victim, sluice.connect() as bystander:
        results = {}

        def sleep(name, conn, seconds):
            try:
                conn.execute(f"SELECT pg_sleep({seconds}), '{name}'")
                results[name] = "completed"
            except psycopg.Error as e:
                results[name] = e.sqlstate

        threads = [threading.Thread(target=sleep, args=("bystander", bystander, 2))]
        threads[0].start()
        pg.wait_for_query("SELECT pg_sleep(2)%", timeout=10)
        errors = []
        canceller = threading.Thread(
            target=cancel_after_start, args=(pg, victim, "SELECT pg_sleep(10)%", errors))
        canceller.start()
        sleep("victim", victim, 10)
        canceller.join(timeout=10)
        threads[0].join(timeout=10)
        assert not errors, errors
        assert results == {"victim": "57014", "bystander": "completed"}


def test_cancel_with_a_wrong_key_cancels_nothing(pg, sluice):
    with sluice.connect() as conn:
        outcome = []

        def run():
            try:
                conn.execute("SELECT pg_sleep(1.5)")
                outcome.append("completed")
            except psycopg.Error as e:
                outcome.append(e.sqlstate)

        worker = threading.Thread(target=run)
        worker.start()
        pg.wait_for_query("SELECT pg_sleep(1.5)%", timeout=10)
        # CancelRequest: length 16, code 80877102, then a process id and key nobody was given.
        with socket.create_connection((sluice.host, sluice.port), timeout=5) as raw:
            raw.sendall(struct.pack("!IIII", 16, 80877102, 12345, 0xDEADBEEF))
            raw.settimeout(5)
            assert raw.recv(100) == b""  # the server answers a cancel request by closing
        worker.join(timeout=10)
        assert outcome == ["completed"]


@pytest.mark.sluice_config(config=ONE_BACKEND)
def test_terminated_idle_backend_gives_an_error_and_the_pool_recovers(pg, sluice):
    conn = sluice.connect()
    # The query runs on the backend, so this is PostgreSQL's pid, not a pooler-issued one.
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert pg.execute("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    deadline = time.monotonic() + 10
    while pid in pg.backend_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()

    # pool_size 1: the next client can only work if the dead backend left the pool.
    with sluice.connect() as fresh:
        assert fresh.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
        assert fresh.execute("SELECT 1").fetchone() == (1,)
    assert port_accepts(sluice.port)


@pytest.mark.sluice_config(config=ONE_BACKEND)
def test_backend_terminated_mid_query_fails_the_query_promptly(pg, sluice):
    with sluice.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]

        def terminate():
            pg.wait_for_query("SELECT pg_sleep(30)%", timeout=10)
            pg.execute("SELECT pg_terminate_backend(%s)", (pid,))

        killer = threading.Thread(target=terminate)
        killer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT pg_sleep(30)")
        killer.join(timeout=10)
        assert time.monotonic() - started < 10
    for _ in range(3):  # several sessions in a row on the replacement backend
        with pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret") as client:
            assert client.query("SELECT 1") == [["1"]]
