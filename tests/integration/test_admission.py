"""Admission control against a real PostgreSQL: priority bulkheads, bounded queues, early refusal
with a retry hint, queued clients that leave, statement timeouts, rate limits, max_clients and the
circuit breaker (docs/ADMISSION.md)."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import psycopg
import pytest

import pgcluster
import pgwire

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

HINT = re.compile(r"retry after (\d+) ms")


def tx_config(bulkheads, max_connections=8, pool_size=8, **extra):
    return {
        "max_client_conn": 400,
        "statement_timeout_grace": "200ms",
        "servers": {"main": {"max_connections": max_connections}},
        "databases": {"app": {"pool_mode": "transaction", "pool_size": pool_size}},
        "bulkheads": bulkheads,
        **extra,
    }


def hold_slot(sluice, app):
    """A connection of class `app` that keeps a backend (an open transaction)."""
    holder = sluice.connect(autocommit=False, application_name=app)
    holder.execute("SELECT 1")
    return holder


# ---- priority under overload ------------------------------------------------------------------

TWO_CLASSES = [
    {"name": "critical", "priority": 0, "reserved": 4, "max": 8, "queue_depth": 64,
     "max_wait": "5s", "match": {"application_name": ["critical"]}},
    {"name": "batch", "priority": 1, "reserved": 0, "max": 4, "queue_depth": 8,
     "max_wait": "200ms", "match": {"application_name": ["batch*"]}},
]


@pytest.mark.timeout(180)
@pytest.mark.sluice_config(config=tx_config(TWO_CLASSES))
def test_critical_work_always_succeeds_while_batch_is_refused_with_a_retry_hint(sluice):
    """200 batch clients running pg_sleep(0.05) with batch max = 4 beside 10 critical clients."""
    duration = 4.0
    stats = {"critical_ok": 0, "critical_errors": [], "batch_ok": 0, "batch_refused": 0,
             "hints": [], "batch_other": []}

    async def connect(app):
        return await psycopg.AsyncConnection.connect(sluice.conninfo(application_name=app),
                                                     autocommit=True)

    async def critical(conn, end):
        while time.monotonic() < end:
            try:
                cur = await conn.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
                stats["critical_ok"] += 1
            except psycopg.Error as e:  # must never happen
                stats["critical_errors"].append(f"{e.sqlstate}: {e}")
            await asyncio.sleep(0.01)

    async def batch(conn, end):
        while time.monotonic() < end:
            try:
                await conn.execute("SELECT pg_sleep(0.05)")
                stats["batch_ok"] += 1
            except psycopg.errors.TooManyConnections as e:
                stats["batch_refused"] += 1
                match = HINT.fullmatch(e.diag.message_hint or "")
                stats["hints"].append(e.diag.message_hint)
                assert e.diag.message_primary.startswith('sluice: bulkhead "batch" is saturated: ')
                assert "queue depth" in (e.diag.message_detail or "")
                await asyncio.sleep(int(match.group(1)) / 1000 if match else 0.05)
            except psycopg.Error as e:
                stats["batch_other"].append(f"{e.sqlstate}: {e}")
                await asyncio.sleep(0.05)

    async def main():
        # Everyone connects first (a connect under overload would itself be refused).
        crit = [await connect("critical") for _ in range(10)]
        bat = [await connect(f"batch-{i}") for i in range(200)]
        end = time.monotonic() + duration
        await asyncio.wait_for(
            asyncio.gather(*(critical(c, end) for c in crit), *(batch(c, end) for c in bat)),
            timeout=duration + 60)
        # Every batch connection is still usable after its refusals.
        for c in bat + crit:
            cur = await c.execute("SELECT 42")
            assert await cur.fetchone() == (42,)
            await c.close()

    asyncio.run(main())
    assert stats["critical_errors"] == []
    assert stats["critical_ok"] > 0
    assert stats["batch_other"] == []
    assert stats["batch_refused"] > 0, stats
    assert stats["batch_ok"] > 0
    assert all(HINT.fullmatch(h or "") for h in stats["hints"]), stats["hints"][:5]
    # Batch never held more than its max of backends: PostgreSQL saw at most 8 in all.
    assert len(sluice.pg.backend_pids("alice")) <= 8


# ---- queued clients that leave --------------------------------------------------------------

SOLO = [{"name": "solo", "reserved": 0, "max": 1, "queue_depth": 1, "max_wait": "20s",
         "match": {"application_name": ["solo"]}}]


@pytest.mark.sluice_config(config=tx_config(SOLO))
def test_a_queued_client_that_disconnects_frees_its_place_and_its_work_never_runs(sluice):
    sluice.pg.execute("CREATE TABLE IF NOT EXISTS queued_work (v int)", dbname="app")
    sluice.pg.execute("TRUNCATE queued_work", dbname="app")
    # Everyone logs in first: in transaction mode a login also needs a slot for a moment.
    leaver = pgwire.connect("127.0.0.1", sluice.port, "alice", "app",
                            pgcluster.PgCluster.ALICE_PASSWORD, application_name="solo")
    other = sluice.connect(application_name="solo")
    holder = hold_slot(sluice, "solo")
    # A raw client queues an INSERT, then goes away.
    leaver.send(pgwire.message(b"Q", b"INSERT INTO queued_work VALUES (1)\0"))
    time.sleep(0.3)  # it is queued now (the only slot is held)
    # The queue (depth 1) is full: another client is refused at once.
    with pytest.raises(psycopg.errors.TooManyConnections) as full:
        other.execute("SELECT 1")
    assert full.value.diag.message_primary.endswith("queue_full")
    leaver.close()
    time.sleep(0.3)
    # Its place is free: the next client queues instead of being refused, and is served as soon
    # as the slot is released.
    result = {}

    def run():
        try:
            result["row"] = other.execute("SELECT 7").fetchone()
        except psycopg.Error as e:
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    holder.commit()
    t.join(20)
    assert result.get("row") == (7,), result
    holder.close()
    other.close()
    assert sluice.pg.execute("SELECT count(*) FROM queued_work", dbname="app") == [(0,)]


@pytest.mark.sluice_config(config=tx_config(SOLO))
def test_a_cancel_request_while_queued_answers_57014_without_running_the_query(sluice):
    waiter = sluice.connect(application_name="solo")
    holder = hold_slot(sluice, "solo")
    outcome = {}

    def run():
        try:
            waiter.execute("SELECT 1")
            outcome["ok"] = True
        except psycopg.Error as e:
            outcome["error"] = e

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    waiter.cancel()
    t.join(10)
    assert not t.is_alive()
    err = outcome.get("error")
    assert isinstance(err, psycopg.errors.QueryCanceled), outcome
    assert "never reached the database" in (err.diag.message_detail or "")
    holder.commit()
    assert waiter.execute("SELECT 2").fetchone() == (2,)  # still usable
    holder.close()
    waiter.close()


# ---- statement timeouts -----------------------------------------------------------------------

TIMED = [{"name": "timed", "max": 2, "statement_timeout": "500ms",
          "match": {"application_name": ["timed"]}}]


@pytest.mark.sluice_config(config=tx_config(TIMED))
def test_the_bulkhead_statement_timeout_cancels_a_long_query_and_the_backend_is_reused(sluice):
    conn = sluice.connect(application_name="timed")
    start = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - start < 8  # well before the 10 s sleep would end
    pids_before = set(sluice.pg.backend_pids("alice"))
    assert conn.execute("SELECT 1").fetchone() == (1,)
    # The backend came back and was reused: no new connection was needed.
    assert set(sluice.pg.backend_pids("alice")) == pids_before
    conn.close()


@pytest.mark.sluice_config(config=tx_config(TIMED))
def test_sluice_cancels_a_statement_the_database_does_not_time_out(sluice):
    # The client overrides the database-side timeout; Sluice's backstop still cancels.
    conn = sluice.connect(application_name="timed", options="-c statement_timeout=0")
    assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    start = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(10)")
    assert time.monotonic() - start < 8
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert "statement_timeout" in sluice.log()
    conn.close()


# ---- edge limits ------------------------------------------------------------------------------

LIMITED = [
    {"name": "few", "max_clients": 2, "match": {"user": ["bob"]}},
    {"name": "slow", "new_transactions_per_second": 1, "new_transactions_burst": 1,
     "match": {"application_name": ["slow"]}},
]


@pytest.mark.sluice_config(config=tx_config(LIMITED))
def test_max_clients_refuses_the_next_connection_of_that_class_only(sluice):
    bobs = [sluice.connect(user="bob") for _ in range(2)]
    refused = pgwire.login_error("127.0.0.1", sluice.port, "bob", "app",
                                 pgcluster.PgCluster.BOB_PASSWORD)
    assert refused.sqlstate == "53300"
    assert refused.severity == "FATAL"
    assert refused.fields["M"] == 'sluice: bulkhead "few" is saturated: max_clients'
    assert HINT.fullmatch(refused.fields.get("H", ""))
    # Another class is not affected.
    alice = sluice.connect()
    assert alice.execute("SELECT 1").fetchone() == (1,)
    bobs.pop().close()
    time.sleep(0.2)
    again = sluice.connect(user="bob")  # a place is free again
    assert again.execute("SELECT 1").fetchone() == (1,)
    for c in bobs + [again, alice]:
        c.close()


@pytest.mark.sluice_config(config=tx_config(LIMITED))
def test_a_transaction_rate_limit_refuses_with_53300_and_a_hint(sluice):
    conn = sluice.connect(application_name="slow")  # the login takes the one token
    refused = None
    for _ in range(5):
        try:
            conn.execute("SELECT 1")
        except psycopg.errors.TooManyConnections as e:
            refused = e
            break
    assert refused is not None
    assert refused.diag.message_primary.endswith("rate_limit")
    assert HINT.fullmatch(refused.diag.message_hint or "")
    time.sleep(int(HINT.fullmatch(refused.diag.message_hint).group(1)) / 1000 + 0.5)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    conn.close()


# ---- backend trouble --------------------------------------------------------------------------


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: connects are refused


@pytest.mark.timeout(120)
def test_a_server_that_refuses_connections_makes_clients_fail_fast_with_08006(start_sluice):
    sluice = start_sluice(config={
        "servers": {"main": {"max_connections": 10},
                    "down": {"host": "127.0.0.1", "port": dead_port(), "max_connections": 4,
                             "connect_retry_delay": "30s"}},
        "databases": {"gone": {"server": "down", "dbname": "app", "pool_mode": "transaction"}},
        "bulkheads": [{"name": "patient", "server": "down", "max_wait": "60s",
                       "match": {"database": ["gone"]}}],
    })
    hints = []
    for i in range(6):
        start = time.monotonic()
        failed = pgwire.login_error("127.0.0.1", sluice.port, "alice", "gone",
                                    pgcluster.PgCluster.ALICE_PASSWORD)
        # Nobody waits anywhere near max_wait (60 s) behind a server that is down.
        assert time.monotonic() - start < 20
        assert failed.sqlstate == "08006", failed.fields
        if "circuit breaker open" in failed.fields["M"]:
            hints.append(failed.fields.get("H"))
    # After a few failed connects the breaker is open: refusals come with a retry hint.
    assert hints, "the circuit breaker never opened"
    assert all(HINT.fullmatch(h or "") for h in hints)
    # The healthy server is unaffected.
    ok = sluice.connect()
    assert ok.execute("SELECT 1").fetchone() == (1,)
    ok.close()
