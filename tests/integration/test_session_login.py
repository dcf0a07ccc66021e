"""Session pooling, issue 13 item 1: a login never waits for a backend.

A session-mode client is welcomed from the pool's known ParameterStatus values and takes its
backend with its first message, keeping it until it leaves. Applications that open all their
connections before running anything (fixed-size driver pools, workers on a barrier) must not
deadlock a pool smaller than their connection count. What the client waits for, at its first
message, is shown as `waiting` and bounded by its bulkhead's max_wait (53300, a retry hint).

Sluice listens on a port below 32768 here (pgcluster.free_port_below): the tests open hundreds
of client connections, whose local ports come from the kernel's range above it.
"""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from admin_console import USERS, Admin
from concurrency import run_threads
from pgcluster import free_port_below

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

CLIENTS = 200
BACKENDS = 10
# max_wait (the default bulkhead's is query_wait_timeout) is generous: every client's query is
# short, so all of them are served long before it.
MANY_CLIENTS = {
    "max_client_conn": CLIENTS + 50,
    "query_wait_timeout": "60s",
    "databases": {"app": {"pool_mode": "session", "pool_size": BACKENDS}},
}
ONE_BACKEND = {"databases": {"app": {"pool_mode": "session", "pool_size": 1}}}


def start(start_sluice, config):
    return start_sluice(config=config, users=USERS, port=free_port_below())


def clients_of(admin, application_name):
    return [c for c in admin.table("SHOW CLIENTS") if c["application_name"] == application_name]


def wait_for_state(admin, application_name, state, timeout=10):
    """Polls SHOW CLIENTS until the client named `application_name` is in `state`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = clients_of(admin, application_name)
        if rows and rows[0]["state"] == state:
            return rows[0]
        assert time.monotonic() < deadline, f"{application_name} never {state}: {rows}"
        time.sleep(0.05)


def backend_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


@pytest.mark.timeout(150)
def test_two_hundred_clients_log_in_before_any_runs_a_query(start_sluice):
    sluice = start(start_sluice, MANY_CLIENTS)
    admin = Admin(sluice)
    conns = []
    try:
        # Every login must finish without a backend: before this change the 11th waited for one
        # of the first ten to leave, which none of them would (this loop is their "barrier").
        for i in range(CLIENTS):
            try:
                conns.append(psycopg.connect(
                    sluice.conninfo(connect_timeout=5, application_name=f"c{i}",
                                    options=f"-c search_path=s{i % 4}"), autocommit=True))
            except psycopg.OperationalError as e:
                pytest.fail(f"login {i + 1} of {CLIENTS} failed ({BACKENDS} backends): {e}")
        assert [c.info.parameter_status("application_name") for c in conns[:3]] == \
            ["c0", "c1", "c2"]
        clients = [c for c in admin.table("SHOW CLIENTS") if c["database"] == "app"]
        assert len(clients) == CLIENTS
        assert {c["state"] for c in clients} == {"idle"}
        assert all(c["backend_pid"] is None for c in clients)
        app = next(p for p in admin.table("SHOW POOLS") if p["database"] == "app")
        assert int(app["backends_active"]) == 0 and int(app["slots_in_use"]) == 0

        barrier = threading.Barrier(CLIENTS, timeout=30)
        served, refused = {}, []

        def work(i):
            barrier.wait()
            try:
                served[i] = conns[i].execute(
                    "SELECT pg_backend_pid(), current_setting('application_name'),"
                    " current_setting('search_path'), pg_sleep(0.02)").fetchone()[:3]
            except psycopg.errors.TooManyConnections as e:  # past max_wait: refused, not hung
                refused.append(e)
            finally:
                conns[i].close()  # its backend goes to the next waiter

        assert run_threads([lambda i=i: work(i) for i in range(CLIENTS)], timeout=100) == []
        assert refused == []
        assert sorted(served) == list(range(CLIENTS))
        # Each client's startup settings were on the backend it got, which it kept meanwhile.
        for i, (_, application_name, search_path) in served.items():
            assert (application_name, search_path) == (f"c{i}", f"s{i % 4}")
        assert len({pid for pid, _, _ in served.values()}) <= BACKENDS
    finally:
        for c in conns:
            c.close()
        admin.close()


@pytest.mark.parametrize("pool", ["warm", "cold"])
def test_startup_settings_reach_the_backend_taken_at_the_first_message(
        start_sluice, pg, tenant_schemas, pool):
    sluice = start(start_sluice, ONE_BACKEND)
    admin = Admin(sluice)
    if pool == "warm":  # the pool knows the server's ParameterStatus values
        with sluice.connect() as first:
            first.execute("SET search_path = s1")  # reset (DISCARD ALL) before the next client
    with sluice.connect(options="-c search_path=s3 -c work_mem=5MB",
                        application_name="tenant3") as conn:
        assert conn.info.parameter_status("application_name") == "tenant3"
        assert conn.info.parameter_status("TimeZone")  # from the pool, or the lent backend
        row = wait_for_state(admin, "tenant3", "idle")
        assert row["backend_pid"] is None
        assert conn.execute("SELECT name FROM whoami").fetchone() == ("s3",)
        assert conn.execute("SHOW work_mem").fetchone() == ("5MB",)
        assert conn.execute("SELECT current_setting('application_name')").fetchone() == \
            ("tenant3",)
        row = wait_for_state(admin, "tenant3", "active")
        assert int(row["backend_pid"]) == backend_pid(conn)
    assert len(pg.backend_pids("alice")) == 1
    admin.close()


def test_a_client_that_leaves_before_its_first_message_takes_no_backend(start_sluice, pg):
    sluice = start(start_sluice, {"databases": {"app": {"pool_mode": "session",
                                                        "pool_size": 2}}})
    admin = Admin(sluice)
    with sluice.connect(application_name="holder") as holder:
        pid = backend_pid(holder)
        for _ in range(5):
            with sluice.connect(application_name="visitor") as visitor:
                assert wait_for_state(admin, "visitor", "idle")["backend_pid"] is None
        # Nobody but the holder ever needed a backend: the pool's second was never connected.
        assert pg.backend_pids("alice") == [pid]
        app = next(p for p in admin.table("SHOW POOLS") if p["database"] == "app")
        assert (app["backends_active"], app["backends_idle"], app["slots_in_use"]) == \
            ("1", "0", "1")
    admin.close()


def test_the_first_message_waits_shown_as_waiting_until_a_backend_frees(start_sluice):
    sluice = start(start_sluice, ONE_BACKEND)
    admin = Admin(sluice)
    holder = sluice.connect()
    holder_pid = backend_pid(holder)  # the only backend, kept by the session
    with sluice.connect(connect_timeout=5, application_name="waiter") as waiter:
        assert wait_for_state(admin, "waiter", "idle")["backend_pid"] is None
        got = []
        thread = threading.Thread(target=lambda: got.append(backend_pid(waiter)), daemon=True)
        thread.start()
        row = wait_for_state(admin, "waiter", "waiting")
        assert row["backend_pid"] is None
        lists = {r["list"]: int(r["items"]) for r in admin.table("SHOW LISTS")}
        assert lists["clients_waiting"] == 1
        time.sleep(0.2)
        assert float(wait_for_state(admin, "waiter", "waiting")["wait_ms"]) >= 150
        holder.close()  # reset, then handed to the waiter
        thread.join(timeout=10)
        assert got == [holder_pid]
        row = wait_for_state(admin, "waiter", "active")
        assert int(row["backend_pid"]) == holder_pid
        assert backend_pid(waiter) == holder_pid  # kept for the rest of the session
    admin.close()


def test_a_wait_past_max_wait_is_refused_with_a_retry_hint_and_the_client_stays(start_sluice):
    sluice = start(start_sluice, {**ONE_BACKEND, "query_wait_timeout": "300ms"})
    holder = sluice.connect()
    backend_pid(holder)
    with sluice.connect(connect_timeout=5) as client:
        with pytest.raises(psycopg.errors.TooManyConnections) as refused:
            client.execute("SELECT 1")
        assert refused.value.sqlstate == "53300"
        assert refused.value.diag.message_primary == \
            'sluice: bulkhead "default" is saturated: max_wait'
        assert re.fullmatch(r"retry after \d+ ms", refused.value.diag.message_hint or "")
        holder.close()
        assert client.execute("SELECT 41 + 1").fetchone() == (42,)  # the session goes on


def test_cancel_requests_of_a_client_without_a_backend(start_sluice):
    sluice = start(start_sluice, ONE_BACKEND)
    admin = Admin(sluice)
    holder = sluice.connect()
    holder_pid = backend_pid(holder)
    with sluice.connect(connect_timeout=5, application_name="canceller") as client:
        client.cancel()  # nothing running, nothing waiting: no effect
        outcome = []

        def query():
            try:
                outcome.append(client.execute("SELECT 1").fetchone())
            except psycopg.Error as e:
                outcome.append(e)

        thread = threading.Thread(target=query, daemon=True)
        thread.start()
        wait_for_state(admin, "canceller", "waiting")
        client.cancel()  # leaves the queue: its query never reached the database
        thread.join(timeout=10)
        assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.QueryCanceled)
        assert "never reached the database" in (outcome[0].diag.message_detail or "")
        assert wait_for_state(admin, "canceller", "idle")["backend_pid"] is None
        holder.close()
        assert backend_pid(client) == holder_pid
    admin.close()


def test_an_invalid_startup_setting_is_reported_at_the_first_message(start_sluice):
    # As in transaction mode (and PgBouncer): the login is welcomed from the pool's values, so a
    # setting the server rejects is only seen when the client's first message takes a backend.
    sluice = start(start_sluice, ONE_BACKEND)
    with sluice.connect() as first:
        backend_pid(first)  # the pool now knows the server's values
    with sluice.connect(options="-c work_mem=banana") as bad:
        # FATAL, then the connection closes (libpq reports the text, not the SQLSTATE).
        with pytest.raises(psycopg.OperationalError,
                           match='invalid value for parameter "work_mem": "banana"'):
            bad.execute("SELECT 1")
        assert bad.broken
    with sluice.connect() as after:  # the pool's only slot was given back
        assert after.execute("SELECT 1").fetchone() == (1,)
