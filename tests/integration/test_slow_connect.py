"""A client waits for a backend at most its bulkhead's max_wait, even when the backend's connect
takes longer (issue 14, item 3: "the hidden checkout poll goes").

A fake server (tests/support/phased_server.py) in front of the real PostgreSQL first relays at
once, so that the pool learns the server's parameters and later clients log in without a
backend; then it delays every new login by SLOW_DELAY, longer than the bulkhead's max_wait
(MAX_WAIT). A client whose transaction needs a new backend then gets 53300 at max_wait instead of
waiting for the connect (or, behind connects that fill max_connect_attempts, for a poll), the
refusal is counted as max_wait, and the connect it started is not wasted: the backend goes idle
and serves the next transaction without another connect.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

import pgcluster
import pgwire
from admin_console import USERS, Admin
from concurrency import wait_for
from phased_server import PhasedServer

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

SLOW_DELAY = 3.0  # s the fake server sits on a login before relaying it
MAX_WAIT = 1.0  # s: the bulkhead's max_wait
MARGIN = 1.5  # s: a refusal comes within max_wait plus this on a busy 2-core machine
HINT = re.compile(r"retry after (\d+) ms")


def start_slow(start_sluice, fake: PhasedServer, max_wait: float = MAX_WAIT, **server):
    return start_sluice(config={
        "query_wait_timeout": f"{int(max_wait * 1000)}ms",  # the default bulkhead's max_wait
        "servers": {"slow": {"host": "127.0.0.1", "port": fake.port, "max_connections": 4,
                             "connect_timeout": "20s", **server}},
        "databases": {"slow": {"server": "slow", "dbname": "app", "pool_mode": "transaction",
                               "pool_size": 4}},
    }, users=USERS)


def client(sluice) -> pgwire.WireClient:
    return pgwire.connect("127.0.0.1", sluice.port, "alice", "slow",
                          pgcluster.PgCluster.ALICE_PASSWORD, timeout=30)


def bulkhead_row(admin: Admin) -> dict:
    return next(r for r in admin.table("SHOW BULKHEADS")
                if r["server"] == "slow" and r["name"] == "default")


def pool_row(admin: Admin) -> dict:
    return next(r for r in admin.table("SHOW POOLS") if r["database"] == "slow")


def timed_query(c: pgwire.WireClient, results: list, lock: threading.Lock) -> None:
    start = time.monotonic()
    try:
        c.query("SELECT 1", timeout=30)
        outcome = None
    except pgwire.ServerError as e:
        outcome = e
    with lock:
        results.append((time.monotonic() - start, outcome))


def timed_queries(clients: list) -> list:
    """Each client's SELECT 1 at once, in threads: (seconds taken, ServerError or None) each."""
    results: list = []
    lock = threading.Lock()
    threads = [threading.Thread(target=timed_query, args=(c, results, lock), daemon=True)
               for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=40)
    assert len(results) == len(clients), results
    return results


def assert_refused_at_max_wait(elapsed: float, error) -> None:
    assert error is not None, (
        f"served after {elapsed:.2f} s: the client waited for a backend past max_wait "
        f"({MAX_WAIT} s)")
    assert error.sqlstate == "53300", error.fields
    assert error.fields["M"].endswith("max_wait"), error.fields
    assert HINT.fullmatch(error.fields.get("H", "")), error.fields
    # The queue figures of every bulkhead refusal, then what the client waited for.
    assert error.fields.get("D", "").startswith("queue depth "), error.fields
    assert "ms for a backend connection: " in error.fields["D"], error.fields
    assert 0.5 * MAX_WAIT < elapsed < MAX_WAIT + MARGIN, f"refused after {elapsed:.2f} s"


@pytest.mark.timeout(90)
def test_a_connect_longer_than_max_wait_is_refused_at_max_wait_and_its_backend_kept(
        start_sluice, pg):
    with PhasedServer(pg.port, phase="healthy", slow_delay=SLOW_DELAY) as fake:
        sluice = start_slow(start_sluice, fake)
        admin = Admin(sluice)
        holder = client(sluice)  # the first login: the pool learns the server's parameters
        holder.query("BEGIN")
        holder.query("SELECT 1")  # holds the pool's only backend
        fake.phase = "slow"
        late = client(sluice)  # logs in without a backend
        refused_before = int(bulkhead_row(admin)["refused_max_wait"])
        connects_before = len(fake.accepted())

        results: list = []
        timed_query(late, results, threading.Lock())
        elapsed, error = results[0]
        assert_refused_at_max_wait(elapsed, error)
        assert int(bulkhead_row(admin)["refused_max_wait"]) == refused_before + 1
        assert len(fake.accepted("slow")) == 1  # the connect started for it goes on

        # The connect completes in the background and its backend goes idle in the pool.
        assert wait_for(lambda: pool_row(admin)["backends_idle"] == "1",
                        timeout=SLOW_DELAY + 10), pool_row(admin)
        row = pool_row(admin)
        assert (row["backends_active"], row["backends_connecting"]) == ("1", "0"), row
        # The next transaction gets it at once: no new connect.
        start = time.monotonic()
        assert late.query("SELECT 2") == [["2"]]
        assert time.monotonic() - start < MAX_WAIT
        assert len(fake.accepted()) == connects_before + 1
        holder.query("COMMIT")
        for c in (holder, late):
            c.close()
        admin.close()


@pytest.mark.timeout(90)
def test_clients_behind_a_connect_that_fills_max_connect_attempts_are_refused_at_max_wait(
        start_sluice, pg):
    with PhasedServer(pg.port, phase="healthy", slow_delay=SLOW_DELAY) as fake:
        # One connect at a time: while one runs, a second client with a slot finds no backend and
        # no room to connect (BackendBook's Busy).
        sluice = start_slow(start_sluice, fake, max_connect_attempts=1)
        admin = Admin(sluice)
        holder = client(sluice)
        holder.query("BEGIN")
        holder.query("SELECT 1")
        fake.phase = "slow"
        clients = [client(sluice) for _ in range(2)]
        refused_before = int(bulkhead_row(admin)["refused_max_wait"])

        results = timed_queries(clients)
        for elapsed, error in results:
            assert_refused_at_max_wait(elapsed, error)
        assert int(bulkhead_row(admin)["refused_max_wait"]) == refused_before + 2
        assert len(fake.accepted("slow")) == 1  # the second client never connected
        assert wait_for(lambda: pool_row(admin)["backends_idle"] == "1",
                        timeout=SLOW_DELAY + 10), pool_row(admin)
        holder.query("COMMIT")
        for c in [holder, *clients]:
            c.close()
        admin.close()


@pytest.mark.timeout(90)
def test_a_client_behind_a_running_connect_is_served_when_it_ends(start_sluice, pg):
    delay = 1.0
    with PhasedServer(pg.port, phase="healthy", slow_delay=delay) as fake:
        # max_wait leaves room for two connects one after the other: the client that found no
        # room to connect is woken when the first connect ends, and connects itself.
        sluice = start_slow(start_sluice, fake, max_wait=15.0, max_connect_attempts=1)
        holder = client(sluice)
        holder.query("BEGIN")
        holder.query("SELECT 1")
        fake.phase = "slow"
        clients = [client(sluice) for _ in range(2)]

        results = timed_queries(clients)
        assert [error for _, error in results] == [None, None], results
        assert max(elapsed for elapsed, _ in results) < 2 * delay + 3, results
        holder.query("COMMIT")
        for c in [holder, *clients]:
            c.close()
