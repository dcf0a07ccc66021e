"""Client-side limits: max_client_conn refuses with 53300 before authentication (and never
blocks cancel requests), and client_login_timeout closes clients that do not finish logging in.
"""

import socket
import threading
import time

import psycopg
import pytest

import pgwire
from conftest import expected_sqlstate
from pgcluster import port_accepts

pytestmark = pytest.mark.sluice_threads(2)

THREE_CLIENTS = {"max_client_conn": 3}


def can_log_in(target) -> bool:
    try:
        with pgwire.connect(target.host, target.port, "alice", "app", "alice-secret", timeout=5):
            return True
    except (pgwire.ServerError, pgwire.ConnectionClosed, OSError):
        return False


def wait_until(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config=THREE_CLIENTS)
def test_fourth_client_is_refused_with_53300_before_authentication(sluice):
    held = [sluice.connect() for _ in range(3)]
    try:
        with pgwire.WireClient(sluice.host, sluice.port) as client:
            client.send(pgwire.startup_packet("alice", "app"))
            kind, body = client.read_message()
            # An ErrorResponse first, not an authentication request: refused before any
            # password is asked for (and before any backend work).
            assert kind == b"E", (kind, body)
            fields = pgwire.parse_error_fields(body)
            assert fields["C"] == expected_sqlstate("53300"), fields
            assert client.read_until_closed(timeout=5) == []

        with pytest.raises(psycopg.OperationalError):
            sluice.connect()
        for conn in held:  # the admitted clients are unaffected
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        held.pop().close()
    try:
        # A slot frees up when a client leaves (asynchronously, hence the bounded polling).
        assert wait_until(lambda: can_log_in(sluice), timeout=10)
    finally:
        for conn in held:
            conn.close()


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config=THREE_CLIENTS)
def test_cancel_requests_pass_even_at_max_client_conn(pg, sluice):
    held = [sluice.connect() for _ in range(3)]
    try:
        outcome = []

        def run():
            try:
                held[0].execute("SELECT pg_sleep(10)")
                outcome.append("completed")
            except psycopg.Error as e:
                outcome.append(e.sqlstate)

        worker = threading.Thread(target=run)
        worker.start()
        pg.wait_for_query("SELECT pg_sleep(10)%", timeout=10)
        started = time.monotonic()
        held[0].cancel()
        worker.join(timeout=10)
        assert outcome == ["57014"]
        assert time.monotonic() - started < 5
    finally:
        for conn in held:
            conn.close()


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config={"client_login_timeout": "1s"})
def test_client_that_never_logs_in_is_closed_after_client_login_timeout(sluice):
    silent = socket.create_connection((sluice.host, sluice.port), timeout=10)
    partial = socket.create_connection((sluice.host, sluice.port), timeout=10)
    with silent, partial:
        partial.sendall(pgwire.startup_packet("alice", "app")[:6])  # half a startup packet
        started = time.monotonic()
        for sock in (silent, partial):
            data = b""
            try:
                while chunk := sock.recv(4096):  # an ErrorResponse may come before the close
                    data += chunk
                    assert len(data) < 65536
            except ConnectionResetError:
                pass
            assert not data or data[:1] == b"E", data
        assert time.monotonic() - started < 1 + 5
    # ...and stalled clients did not stop the listener.
    assert port_accepts(sluice.port)
    assert can_log_in(sluice)
