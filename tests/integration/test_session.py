"""Session-mode semantics: one client holds one backend for its whole session (temp tables,
settings, prepared statements, LISTEN survive between statements), large messages in both
directions, and what happens to the backend when the session ends: reset with
server_reset_query and reuse, or close (in a transaction, past server_lifetime, idle too long).
"""

import select
import time

import pytest

import pgwire

ONE_BACKEND = {"databases": {"app": {"pool_size": 1}}}


def backend_pid(conn):
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def wait_until(predicate, timeout, interval=0.05):
    """Polls `predicate` until true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def test_session_state_survives_across_statements(sluice):
    with sluice.connect() as conn:
        pid = backend_pid(conn)
        conn.execute("CREATE TEMP TABLE scratch (v int)")
        conn.execute("INSERT INTO scratch VALUES (1), (2)")
        conn.execute("SET work_mem = '7MB'")
        conn.execute("PREPARE total AS SELECT sum(v) FROM scratch")
        with conn.transaction():
            conn.execute("INSERT INTO scratch VALUES (3)")
        conn.execute("INSERT INTO scratch VALUES (4)")
        assert conn.execute("EXECUTE total").fetchone() == (10,)
        assert conn.execute("SHOW work_mem").fetchone() == ("7MB",)
        assert backend_pid(conn) == pid


def test_listen_notify_between_two_sessions(sluice):
    with sluice.connect() as listener, sluice.connect() as notifier:
        received = []
        listener.add_notify_handler(received.append)
        listener.execute("LISTEN sluice_channel")
        notifier.execute("NOTIFY sluice_channel, 'hello'")
        # The notification must reach the idle listener without it sending anything: the
        # pooler relays backend messages even when the client is not waiting for a result.
        readable, _, _ = select.select([listener.fileno()], [], [], 10)
        assert readable, "no notification within 10s"
        listener.execute("SELECT 1")  # psycopg dispatches pending notifications while reading
        assert [(n.channel, n.payload) for n in received] == [("sluice_channel", "hello")]


def test_fifty_megabyte_result(sluice):
    with sluice.connect() as conn:
        rows = conn.execute("SELECT repeat('x', 1000000) FROM generate_series(1, 50)").fetchall()
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert len(rows) == 50
    assert sum(len(row[0]) for row in rows) == 50_000_000
    assert all(row[0].strip("x") == "" for row in rows)


def test_large_messages_from_the_client(sluice):
    big = "y" * 20_000_000
    with sluice.connect() as conn:  # extended protocol: a 20 MB Bind
        assert conn.execute("SELECT length(%s::text)", (big,)).fetchone() == (20_000_000,)
    with pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret") as client:
        # simple protocol: a 10 MB Query message
        assert client.query(f"SELECT length('{big[:10_000_000]}')") == [["10000000"]]


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config=ONE_BACKEND)
def test_backend_is_reset_and_reused_by_the_next_client(pg, sluice):
    with sluice.connect() as first:
        pid = backend_pid(first)
        first.execute("CREATE TEMP TABLE leftover (v int)")
        first.execute("SET work_mem = '7MB'")
        first.execute("PREPARE leftover_stmt AS SELECT 1")
        first.execute("LISTEN leftover_channel")
    with sluice.connect() as second:
        assert backend_pid(second) == pid
        # DISCARD ALL ran in between: nothing of the first session is visible.
        assert second.execute("SELECT to_regclass('pg_temp.leftover')").fetchone() == (None,)
        assert second.execute("SHOW work_mem").fetchone() == ("4MB",)
        assert second.execute("SELECT count(*) FROM pg_prepared_statements"
                              " WHERE name = 'leftover_stmt'").fetchone() == (0,)
        assert second.execute("SELECT count(*) FROM pg_listening_channels()").fetchone() == (0,)
    assert pg.backend_pids("alice") == [pid]


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config=ONE_BACKEND)
def test_backend_left_in_a_transaction_is_closed_not_reused(pg, sluice):
    client = pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret")
    pid = int(client.query("SELECT pg_backend_pid()")[0][0])
    client.query("BEGIN")
    client.query("CREATE TEMP TABLE half_done (v int)")
    client.close()  # vanish mid-transaction, without a Terminate message
    with sluice.connect() as second:
        assert backend_pid(second) != pid
        assert second.execute("SELECT to_regclass('pg_temp.half_done')").fetchone() == (None,)
    assert wait_until(lambda: pid not in pg.backend_pids(), timeout=10)


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config={"databases": {"app": {"pool_size": 1,
                                                         "server_lifetime": "1s"}}})
def test_backend_past_its_lifetime_is_closed_on_release(pg, sluice):
    with sluice.connect() as first:
        pid = backend_pid(first)
        time.sleep(1.5)  # outlive server_lifetime while in use: it must not be cut mid-session
        assert backend_pid(first) == pid
    assert wait_until(lambda: pid not in pg.backend_pids(), timeout=10)
    with sluice.connect() as second:
        assert backend_pid(second) != pid


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config={"databases": {"app": {"server_idle_timeout": "1s"}}})
def test_idle_backend_is_closed_after_server_idle_timeout(pg, sluice):
    with sluice.connect() as conn:
        pid = backend_pid(conn)
    assert pid in pg.backend_pids("alice")
    assert wait_until(lambda: pid not in pg.backend_pids(), timeout=10)
