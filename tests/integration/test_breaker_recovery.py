"""A server that misbehaves, then recovers, gets connections again within the breaker's delay
(issue 13, item 2).

A fake server (tests/support/phased_server.py) first answers logins with garbage (the circuit
breaker opens and its delay backs off), then hangs during logins (a probe's connect never gets an
answer), then relays to the real PostgreSQL. However the last probe ended (here: it hangs, and
its client gives up), Sluice must connect to the healthy server within the breaker's longest
delay, with clients still arriving and with none arriving at all.
"""

from __future__ import annotations

import threading
import time

import pytest

import pgcluster
import pgwire
from concurrency import wait_for
from phased_server import PhasedServer

pytestmark = pytest.mark.targets("sluice")

LONGEST_DELAY = 30  # s: the breaker's longest delay (README, "Backend failures")
SLACK = 5  # s: scheduling on a busy 2-core machine
ARRIVAL_PERIOD = 0.25  # s between client arrivals
CLIENT_TIMEOUT = 3  # s a client waits for its login before it leaves
MAX_CLIENTS = 600  # arrivals over a whole test at most


class Arrivals:
    """Clients that keep arriving (one every ARRIVAL_PERIOD, each in its own thread), each trying
    to log in to `database` and run SELECT 1; at most MAX_CLIENTS, all of them bounded in time."""

    def __init__(self, port: int, database: str) -> None:
        self.port = port
        self.database = database
        self.ok = 0
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop = threading.Thread(target=self._run, daemon=True)
        self._loop.start()

    def _run(self) -> None:
        while not self._stop.is_set() and len(self._threads) < MAX_CLIENTS:
            t = threading.Thread(target=self._client, daemon=True)
            self._threads.append(t)
            t.start()
            self._stop.wait(ARRIVAL_PERIOD)

    def _client(self) -> None:
        try:
            with pgwire.connect("127.0.0.1", self.port, "alice", self.database,
                                pgcluster.PgCluster.ALICE_PASSWORD, timeout=CLIENT_TIMEOUT) as c:
                c.query("SELECT 1", timeout=CLIENT_TIMEOUT)
            with self._lock:
                self.ok += 1
        except pgwire.ServerError as e:
            with self._lock:
                self.refused.append(e.sqlstate or "")
        except (OSError, pgwire.ConnectionClosed, AssertionError):
            pass  # timed out: the client left

    def stop(self) -> None:
        self._stop.set()
        self._loop.join(timeout=5)
        deadline = time.monotonic() + 2 * CLIENT_TIMEOUT + 5
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))


def start_flaky(start_sluice, fake: PhasedServer):
    # connect_timeout is longer than the breaker's longest delay (as it may be for a distant
    # server): a probe whose login hangs must not hold up the next probe until it times out.
    return start_sluice(config={
        "servers": {"flaky": {"host": "127.0.0.1", "port": fake.port, "max_connections": 4,
                              "connect_retry_delay": "1s", "connect_timeout": "60s"}},
        "databases": {"flaky": {"server": "flaky", "dbname": "app", "pool_mode": "transaction"}},
    })


def misbehave_then_recover(fake: PhasedServer) -> float:
    """Garbage until the breaker has backed off past its first delay, then hang until a probe
    is caught hanging, then healthy. Returns the time of the recovery."""
    # Three failed connects open the breaker, the failed probes after it double its delay.
    assert wait_for(lambda: len(fake.accepted("garbage")) >= 5, timeout=30), \
        f"only {len(fake.accepted('garbage'))} connects while the server answered garbage"
    fake.phase = "hang"
    assert wait_for(lambda: fake.accepted("hang"), timeout=LONGEST_DELAY + SLACK), \
        "no probe while the server hung"
    fake.phase = "healthy"
    return time.monotonic()


def first_connect_after(fake: PhasedServer, since: float) -> float | None:
    wait_for(lambda: fake.accepted("healthy", since), timeout=LONGEST_DELAY + SLACK, step=0.1)
    healthy = fake.accepted("healthy", since)
    return healthy[0] - since if healthy else None


@pytest.mark.timeout(150)
def test_sluice_connects_again_within_the_breaker_delay_while_clients_keep_arriving(
        start_sluice, pg):
    with PhasedServer(pg.port, phase="garbage") as fake:
        sluice = start_flaky(start_sluice, fake)
        arrivals = Arrivals(sluice.port, "flaky")
        try:
            recovered = misbehave_then_recover(fake)
            gap = first_connect_after(fake, recovered)
            assert gap is not None and gap <= LONGEST_DELAY + SLACK, (
                f"no connect attempt within {LONGEST_DELAY + SLACK} s of the recovery "
                f"(probe times: {[round(t - recovered, 1) for t in fake.accepted()]})")
            ok_before = arrivals.ok
            assert wait_for(lambda: arrivals.ok > ok_before, timeout=SLACK + CLIENT_TIMEOUT), \
                "clients are still refused after Sluice connected again"
        finally:
            arrivals.stop()
        # Refusals in between were fast and named the server (08006), as before.
        assert set(arrivals.refused) <= {"08006", "08P01"}, arrivals.refused


@pytest.mark.timeout(150)
def test_sluice_probes_a_recovered_server_without_any_client_arriving(start_sluice, pg):
    with PhasedServer(pg.port, phase="garbage") as fake:
        sluice = start_flaky(start_sluice, fake)
        arrivals = Arrivals(sluice.port, "flaky")
        try:
            assert wait_for(lambda: len(fake.accepted("garbage")) >= 5, timeout=30)
            fake.phase = "hang"
            assert wait_for(lambda: fake.accepted("hang"), timeout=LONGEST_DELAY + SLACK)
        finally:
            arrivals.stop()  # nobody arrives from here on
        fake.phase = "healthy"
        recovered = time.monotonic()
        gap = first_connect_after(fake, recovered)
        assert gap is not None and gap <= LONGEST_DELAY + SLACK, (
            f"no connect attempt within {LONGEST_DELAY + SLACK} s of the recovery without "
            f"traffic (connects: {[round(t - recovered, 1) for t in fake.accepted()]})")
        # Once its login is through, the breaker is closed and clients are served again.
        assert wait_for(lambda: logs_in(sluice.port), timeout=SLACK + CLIENT_TIMEOUT, step=0.2), \
            "clients are still refused after Sluice connected again"


def logs_in(port: int) -> bool:
    try:
        with pgwire.connect("127.0.0.1", port, "alice", "flaky", pgcluster.PgCluster.ALICE_PASSWORD,
                            timeout=CLIENT_TIMEOUT) as c:
            return c.query("SELECT 1") == [["1"]]
    except pgwire.ServerError as e:
        assert e.sqlstate == "08006", e.fields  # the probe's login is not through yet
        return False
