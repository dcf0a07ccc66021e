"""Session state under transaction pooling: what each client sees although it shares backends.

Reported parameters (TimeZone, application_name) stay per client across many interleaved
transactions on one or two backends; a client that dies mid-transaction or mid-query leaves no
transaction, lock or running query behind; session settings (SET, RESET, set_config, RESET ALL,
DISCARD ALL) follow the client from backend to backend; session features (LISTEN, temp tables,
SET ROLE) pin the client to its backend and keep working; cancel requests reach the
backend the client is using and nothing else; back-to-back transactions of several clients never
stall.
"""

import re
import select
import socket
import struct
import threading
import time

import psycopg
import pytest

import pgwire
from pgwire import message
from concurrency import run_threads
from conftest import TARGET

POOL_SIZE = 2


def tx_config(pool_size=POOL_SIZE, **extra):
    return {"databases": {"app": {"pool_mode": "transaction", "pool_size": pool_size}},
            "query_wait_timeout": "10s", **extra}


pytestmark = [pytest.mark.sluice_config(config=tx_config()), pytest.mark.sluice_threads(2)]


def wait_until(predicate, timeout, interval=0.05):
    """Polls `predicate` until true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def pinned_lines(log, reason=None):
    lines = [line for line in log.splitlines() if "client_pinned" in line]
    if reason is not None:
        lines = [line for line in lines if f"reason={reason} " in line + " "]
    return lines


def raw_connect(target, **params):
    return pgwire.connect(target.host, target.port, "alice", "app", "alice-secret", **params)


def app_activity(pg):
    """(pid, state, query) of alice's client backends in app."""
    return pg.execute("SELECT pid, state, query FROM pg_stat_activity WHERE datname = 'app'"
                      " AND usename = 'alice' AND backend_type = 'client backend'")


# ---- reported parameters ---------------------------------------------------------------------

# Zones without daylight saving time, so the offset now() shows is fixed.
ZONES = [
    ("UTC", "+00"),
    ("Asia/Kolkata", "+05:30"),
    ("Asia/Tokyo", "+09"),
    ("America/Caracas", "-04"),
    ("Asia/Kathmandu", "+05:45"),
    ("Etc/GMT+3", "-03"),  # POSIX sign: three hours behind UTC
]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("pool_size", [1, 2])
def test_each_client_keeps_its_own_timezone(pg, start_sluice, pool_size):
    sluice = start_sluice(config=tx_config(pool_size))
    server_default = pg.execute("SHOW TimeZone", dbname="app")[0][0]
    rounds = 25
    pids = set()
    lock = threading.Lock()

    def client(i, zone, offset):
        with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
            if i % 2:
                conn.execute(f"SET TIME ZONE '{zone}'")
            else:
                conn.execute(f"SET timezone = '{zone}'")
            assert conn.info.parameter_status("TimeZone") == zone
            for r in range(rounds):
                if r % 3 == 0:
                    with conn.transaction():
                        shown = conn.execute("SHOW TimeZone").fetchone()[0]
                        now = conn.execute("SELECT now()::text").fetchone()[0]
                        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                elif r % 3 == 1:
                    shown, now, pid = conn.execute(
                        "SELECT current_setting('TimeZone'), now()::text,"
                        " pg_backend_pid()").fetchone()
                else:
                    # SET LOCAL changes this transaction only.
                    with conn.transaction():
                        conn.execute("SET LOCAL TimeZone = 'Pacific/Kiritimati'")
                        assert conn.execute("SELECT now()::text").fetchone()[0].endswith("+14")
                    shown, now, pid = conn.execute(
                        "SELECT current_setting('TimeZone'), now()::text,"
                        " pg_backend_pid()").fetchone()
                assert shown == zone, f"client {i} round {r}: TimeZone {shown}, want {zone}"
                assert now.endswith(offset), f"client {i} round {r}: now() {now}, want {offset}"
                with lock:
                    pids.add(pid)
            assert conn.info.parameter_status("TimeZone") == zone

    def bystander():
        # Never set a zone: always the server's default, whatever the others left behind.
        with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
            for _ in range(rounds):
                assert conn.execute("SHOW TimeZone").fetchone()[0] == server_default

    targets = [lambda i=i, z=z, o=o: client(i, z, o) for i, (z, o) in enumerate(ZONES)]
    errors = run_threads(targets + [bystander], timeout=150)
    assert not errors, errors
    if TARGET == "sluice":
        assert len(pids) <= pool_size
    assert pinned_lines(sluice.log()) == []


def test_application_name_from_startup_in_every_transaction(pg, sluice):
    names = [f"worker-{i}" for i in range(5)]
    seen_by_server = []

    def client(name):
        with psycopg.connect(sluice.conninfo(application_name=name), autocommit=True) as conn:
            for r in range(20):
                if r % 2:
                    with conn.transaction():
                        got = conn.execute("SELECT current_setting('application_name')").fetchone()
                        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                        # The backend itself says so to others while this client holds it.
                        row = pg.execute("SELECT application_name FROM pg_stat_activity"
                                         " WHERE pid = %s", (pid,))
                        seen_by_server.append((name, row[0][0]))
                else:
                    got = conn.execute("SHOW application_name").fetchone()
                assert got == (name,)
            # Changed by SET: that is what it keeps from then on.
            conn.execute(f"SET application_name = '{name}-renamed'")
            for _ in range(5):
                assert conn.execute("SHOW application_name").fetchone() == (name + "-renamed",)

    errors = run_threads([lambda n=n: client(n) for n in names], timeout=90)
    assert not errors, errors
    assert seen_by_server and all(want == got for want, got in seen_by_server), seen_by_server
    assert pinned_lines(sluice.log()) == []


# ---- clients that disappear ------------------------------------------------------------------


def abrupt_close(client, how):
    """Drops the connection without Terminate: a FIN ("close") or a TCP reset ("reset")."""
    if how == "reset":
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.sock.close()


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.sluice_config(config=tx_config(pool_size=1))
def test_client_killed_mid_transaction_leaves_no_transaction_or_lock(pg, sluice, how):
    pg.execute("CREATE TABLE IF NOT EXISTS locked_rows (id int PRIMARY KEY, v int)", dbname="app")
    pg.execute("INSERT INTO locked_rows VALUES (1, 0) ON CONFLICT DO NOTHING", dbname="app")
    pg.execute("GRANT ALL ON locked_rows TO alice", dbname="app")

    victim = raw_connect(sluice)
    victim.query("BEGIN")
    victim.query("UPDATE locked_rows SET v = v + 1 WHERE id = 1")
    victim.query("SELECT pg_advisory_xact_lock(4242)")
    pid = int(victim.query("SELECT pg_backend_pid()")[0][0])
    assert pg.execute("SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory'",
                      (pid,)) == [(1,)]
    abrupt_close(victim, how)

    def clean():
        open_tx = [r for r in app_activity(pg) if r[1].startswith("idle in transaction")]
        locks = pg.execute("SELECT count(*) FROM pg_locks WHERE pid = %s", (pid,))[0][0]
        return not open_tx and locks == 0

    assert wait_until(clean, timeout=10), (app_activity(pg), pg.execute(
        "SELECT locktype, mode, granted FROM pg_locks WHERE pid = %s", (pid,)))
    # Closed, not returned to the pool (README: the backend is closed, the transaction rolls back).
    assert wait_until(lambda: pid not in [r[0] for r in app_activity(pg)], timeout=10)
    assert pg.execute("SELECT v FROM locked_rows WHERE id = 1", dbname="app") == [(0,)]

    # pool_size 1: the next client can only work if the slot came back, on a clean backend.
    with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
        with conn.transaction():
            assert conn.execute("SELECT pg_try_advisory_xact_lock(4242)").fetchone() == (True,)
            assert conn.execute("SELECT v FROM locked_rows WHERE id = 1 FOR UPDATE NOWAIT"
                                ).fetchone() == (0,)
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.targets("sluice")  # PostgreSQL itself only notices at its next write
@pytest.mark.parametrize("how", ["close", "reset"])
def test_client_killed_during_a_query_has_it_cancelled(pg, sluice, how):
    victim = raw_connect(sluice)
    victim.send(pgwire.message(b"Q", b"SELECT pg_sleep(30)\0"))
    pid = pg.wait_for_query("SELECT pg_sleep(30)%", timeout=10)
    started = time.monotonic()
    abrupt_close(victim, how)

    def gone():
        rows = pg.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
        return not rows or rows[0][0] != "active"

    assert wait_until(gone, timeout=5), app_activity(pg)
    assert time.monotonic() - started < 5
    with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


# ---- pinning ---------------------------------------------------------------------------------


@pytest.mark.targets("sluice")
def test_listen_client_is_pinned_and_receives_notifications(sluice):
    with psycopg.connect(sluice.conninfo(), autocommit=True) as listener, \
            psycopg.connect(sluice.conninfo(), autocommit=True) as notifier:
        received = []
        listener.add_notify_handler(received.append)
        listener.execute("LISTEN sluice_tx_channel")
        listener_pid = listener.execute("SELECT pg_backend_pid()").fetchone()[0]
        log = sluice.log()
        pinned = pinned_lines(log, "listen")
        assert len(pinned) == 1, log
        assert re.search(r"client_pinned session=\d+ reason=listen db=app user=alice", pinned[0])

        # Others keep getting transactions on the remaining backend meanwhile.
        for i in range(3):
            with notifier.transaction():
                notifier.execute("SELECT pg_notify('sluice_tx_channel', %s)", (f"in-tx-{i}",))
                assert notifier.execute("SELECT pg_backend_pid()").fetchone()[0] != listener_pid
            notifier.execute("SELECT pg_notify('sluice_tx_channel', %s)", (f"auto-{i}",))

        # Delivered to the idle listener without it sending anything.
        want = [f"{kind}-{i}" for i in range(3) for kind in ("in-tx", "auto")]
        deadline = time.monotonic() + 10
        while len(received) < len(want) and time.monotonic() < deadline:
            readable, _, _ = select.select([listener.fileno()], [], [], 0.5)
            if readable:
                listener.execute("SELECT 1")  # psycopg dispatches notifications while reading
        assert [(n.channel, n.payload) for n in received] == \
            [("sluice_tx_channel", p) for p in want]
        assert all(n.pid != listener_pid for n in received)
        # Pinned: the same backend for every later transaction.
        for _ in range(5):
            assert listener.execute("SELECT pg_backend_pid()").fetchone()[0] == listener_pid
        listener.execute("UNLISTEN sluice_tx_channel")
        notifier.execute("NOTIFY sluice_tx_channel, 'after-unlisten'")
        listener.execute("SELECT pg_sleep(0.2)")
        assert len(received) == len(want)


@pytest.mark.targets("sluice")
def test_temp_table_client_is_pinned_and_keeps_its_table(sluice):
    with psycopg.connect(sluice.conninfo(), autocommit=True) as owner:
        owner.execute("CREATE TEMP TABLE scratch (v int)")
        assert len(pinned_lines(sluice.log(), "temp_object")) == 1, sluice.log()
        owner_pid = owner.execute("SELECT pg_backend_pid()").fetchone()[0]

        def other_client(i):
            with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
                for _ in range(10):
                    with conn.transaction():
                        assert conn.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
                        assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != owner_pid

        others = [threading.Thread(target=other_client, args=(i,), daemon=True) for i in range(3)]
        errors = []
        for t in others:
            t.start()
        for i in range(10):
            with owner.transaction():
                owner.execute("INSERT INTO scratch VALUES (%s)", (i,))
            assert owner.execute("SELECT count(*), pg_backend_pid() FROM scratch"
                                 ).fetchone() == (i + 1, owner_pid)
        for t in others:
            t.join(timeout=30)
            if t.is_alive():
                errors.append("other client stuck")
        assert not errors
        assert owner.execute("SELECT sum(v) FROM scratch").fetchone() == (45,)
    assert len(pinned_lines(sluice.log())) == 1


def run_elsewhere(conn, holder, sql):
    """Runs `sql` on `conn` while `holder` holds, in an open transaction, the backend `conn` used
    last (idle backends are reused most recently used first, so the holder's transaction gets
    it): `conn`'s transaction must run on another backend. Returns (rows, backend pid)."""
    last = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    # `conn` has its ReadyForQuery a moment before its backend is back in the pool: until then
    # the holder gets another one. Bounded: 50 tries.
    for _ in range(50):
        holder.execute("BEGIN")
        held = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
        if held == last or TARGET != "sluice":
            break
        holder.execute("COMMIT")
        time.sleep(0.01)
    try:
        with conn.transaction():
            rows = conn.execute(sql).fetchall()
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    finally:
        holder.execute("COMMIT")
    if TARGET == "sluice":
        assert held == last and pid != held, (last, held, pid)
    return rows, pid


@pytest.mark.timeout(120)
def test_session_settings_follow_the_client_to_other_backends(pg, sluice):
    """SET, RESET, set_config, RESET ALL and DISCARD ALL of unreported parameters do not pin: the
    settings a client made reach every backend its later transactions use, and no other client
    sees them. A SET that fails or is rolled back changes nothing."""
    pg.execute("CREATE SCHEMA IF NOT EXISTS elsewhere AUTHORIZATION alice", dbname="app")
    pg.execute("CREATE TABLE IF NOT EXISTS elsewhere.marker (v text)", dbname="app")
    pg.execute("DELETE FROM elsewhere.marker", dbname="app")
    pg.execute("INSERT INTO elsewhere.marker VALUES ('found it')", dbname="app")
    pg.execute("GRANT ALL ON elsewhere.marker TO alice", dbname="app")
    default_path = pg.execute("SHOW search_path", dbname="app")[0][0]
    show = ("SELECT current_setting('search_path'), current_setting('statement_timeout'),"
            " current_setting('extra_float_digits'), current_setting('myapp.tenant', true)")
    default_timeout = pg.execute("SHOW statement_timeout", dbname="app")[0][0]
    default_digits = pg.execute("SHOW extra_float_digits", dbname="app")[0][0]
    # No automatic server-side prepares: psycopg 3.1 keeps using its statements after the client's
    # own DISCARD ALL below (which fails directly against PostgreSQL too).
    with psycopg.connect(sluice.conninfo(), autocommit=True, prepare_threshold=None) as conn, \
            psycopg.connect(sluice.conninfo(), autocommit=True) as holder:
        conn.execute("SET search_path = elsewhere, public")
        conn.execute("SET SESSION statement_timeout TO '5s'")
        conn.execute("SELECT set_config('myapp.tenant', '42', false)")
        conn.execute("SELECT set_config('extra_float_digits', '2', true)")  # local: no effect
        for _ in range(3):
            rows, _ = run_elsewhere(conn, holder, show)
            assert rows == [("elsewhere, public", "5s", default_digits, "42")]
            assert conn.execute("SELECT v FROM marker").fetchone() == ("found it",)
            # The other client's transactions never see them. (A custom parameter that was reset
            # reads '' where it once existed, NULL elsewhere, as on PostgreSQL.)
            seen = holder.execute(show).fetchone()
            assert seen[:3] == (default_path, default_timeout, default_digits)
            assert seen[3] in (None, "")

        # A SET the server refuses, and one that is rolled back, change nothing.
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET statement_timeout = 'soon'")
        conn.execute("BEGIN")
        conn.execute("SET search_path = public")
        conn.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SET extra_float_digits = 1; SELECT 1 / 0")
        rows, _ = run_elsewhere(conn, holder, show)
        assert rows == [("elsewhere, public", "5s", default_digits, "42")]

        # Set inside a committed transaction: kept.
        with conn.transaction():
            conn.execute("SET extra_float_digits = 1")
        rows, _ = run_elsewhere(conn, holder, show)
        assert rows == [("elsewhere, public", "5s", "1", "42")]

        # RESET of one, then RESET ALL: back to the defaults, on every backend.
        conn.execute("RESET statement_timeout")
        rows, _ = run_elsewhere(conn, holder, show)
        assert rows == [("elsewhere, public", default_timeout, "1", "42")]
        conn.execute("/* hidden */ SELECT 1; RESET ALL")
        rows, _ = run_elsewhere(conn, holder, show)
        assert rows[0][:3] == (default_path, default_timeout, default_digits)

        # DISCARD ALL too.
        conn.execute("SET search_path = elsewhere")
        rows, _ = run_elsewhere(conn, holder, show)
        assert rows[0][0] == "elsewhere"
        conn.execute("DISCARD ALL")
        rows, _ = run_elsewhere(conn, holder, show)
        assert rows[0][0] == default_path
    assert pinned_lines(sluice.log()) == [], sluice.log()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("when", ["with the SET in flight", "right after its answer"])
def test_settings_of_a_client_that_leaves_at_once_reach_nobody(pg, sluice, when):
    """A client that sets something and disconnects before Sluice could read its settings back
    leaves a backend whose settings Sluice does not know: that backend must not serve anyone."""
    default_path = pg.execute("SHOW search_path", dbname="app")[0][0]
    for i in range(20):
        with raw_connect(sluice) as c:
            set_sql = f"SET search_path = leak_{i}".encode() + b"\0"
            if when == "with the SET in flight":
                c.send(message(b"Q", set_sql) + message(b"X"))
            else:
                c.send(message(b"Q", set_sql))
                c.expect(b"C")
                c.expect(b"Z")
                c.send(message(b"X"))
        with raw_connect(sluice) as other:
            assert other.query("SHOW search_path") == [[default_path]], i
    assert pinned_lines(sluice.log()) == []


@pytest.mark.timeout(60)
@pytest.mark.sluice_config(config=tx_config(pool_size=1))
def test_settings_reach_a_backend_in_the_clients_own_encoding(sluice):
    """The previous client left its backend in LATIN1. The next client's settings are UTF-8 and
    must be read as UTF-8 (issue 12 item 9): Sluice sets client_encoding first and binds every
    value as a parameter, instead of sending SQL text the backend would read as LATIN1."""
    for _ in range(3):
        with psycopg.connect(sluice.conninfo(), autocommit=True, client_encoding="LATIN1") as a:
            assert a.execute("SHOW client_encoding").fetchone()[0] == "LATIN1"
        with psycopg.connect(sluice.conninfo(), autocommit=True,
                             options="-c myapp.tenant=caf\u00e9") as b:
            assert b.execute("SHOW client_encoding").fetchone()[0] == "UTF8"
            assert b.execute("SELECT current_setting('myapp.tenant')").fetchone()[0] == "caf\u00e9"


@pytest.mark.targets("sluice")
def test_select_into_temp_pins_and_keeps_its_table(sluice):
    """SELECT … INTO TEMP creates a temporary table: the client keeps its backend."""
    with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT 7 AS v INTO TEMP picked")
        assert len(pinned_lines(sluice.log(), "temp_object")) == 1, sluice.log()
        for _ in range(3):
            assert conn.execute("SELECT v FROM picked").fetchone() == (7,)


@pytest.mark.targets("sluice")
def test_set_role_pins(pg, sluice):
    """SET ROLE is not handed from client to client: the client keeps its backend."""
    with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
        conn.execute("SET ROLE alice")
        assert len(pinned_lines(sluice.log(), "set_role")) == 1, sluice.log()
        assert conn.execute("SELECT current_user").fetchone() == ("alice",)


# ---- cancel ----------------------------------------------------------------------------------


def cancel_when_running(pg, conn, pattern, errors):
    try:
        pg.wait_for_query(pattern, timeout=10)
        conn.cancel()
    except Exception as e:  # reported by the main thread
        errors.append(e)


@pytest.mark.parametrize("in_transaction", [False, True])
def test_cancel_reaches_the_running_query(pg, sluice, in_transaction):
    with psycopg.connect(sluice.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        errors = []
        canceller = threading.Thread(
            target=cancel_when_running, args=(pg, conn, "SELECT pg_sleep(10)%", errors))
        if in_transaction:
            conn.execute("BEGIN")
            conn.execute("SELECT 1")
        canceller.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as caught:
            conn.execute("SELECT pg_sleep(10)")
        elapsed = time.monotonic() - started
        canceller.join(timeout=10)
        assert not errors, errors
        assert caught.value.sqlstate == "57014"
        assert elapsed < 5, f"cancel took {elapsed:.1f}s"
        if in_transaction:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            conn.execute("ROLLBACK")
        for _ in range(3):
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.targets("sluice")
@pytest.mark.sluice_config(config=tx_config(pool_size=1))
def test_cancel_between_transactions_does_not_hit_another_client(pg, sluice):
    with psycopg.connect(sluice.conninfo(), autocommit=True) as idle, \
            psycopg.connect(sluice.conninfo(), autocommit=True) as busy:
        idle_pid = idle.execute("SELECT pg_backend_pid()").fetchone()[0]
        outcome = []

        def run():
            try:
                outcome.append(busy.execute("SELECT pg_sleep(2), pg_backend_pid()").fetchone()[1])
            except psycopg.Error as e:
                outcome.append(e.sqlstate)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        busy_pid = pg.wait_for_query("SELECT pg_sleep(2)%", timeout=10)
        assert busy_pid == idle_pid  # pool_size 1: the backend idle's cancel key once pointed to
        idle.cancel()  # idle is between transactions: this must not reach busy's query
        worker.join(timeout=10)
        assert outcome == [busy_pid]
        assert idle.execute("SELECT 1").fetchone() == (1,)


# ---- liveness --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_back_to_back_transactions_of_several_clients_never_stall(sluice):
    # Each reply must come within a few seconds; a backend handed back while a client's next
    # message is already on its way must not leave that message unanswered.
    clients, iterations = 4, 300
    stalls = []

    def client(c):
        with raw_connect(sluice, application_name=f"c{c}") as conn:
            for i in range(iterations):
                for step, sql in enumerate(("SELECT 1", "BEGIN", "SELECT 2", "COMMIT")):
                    try:
                        conn.query(sql, timeout=5)
                    except TimeoutError:
                        stalls.append((c, i, step, sql))
                        return

    errors = run_threads([lambda c=c: client(c) for c in range(clients)], timeout=100)
    assert not errors, errors
    assert stalls == []
