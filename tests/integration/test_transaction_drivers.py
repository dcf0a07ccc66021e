"""Real drivers through the pooler in transaction mode, with fewer backends than connections.

psycopg 3 with prepare_threshold=0 (every query a named prepared statement), psycopg's pipeline
mode, asyncpg (named prepared statements on every query), node-postgres named queries and
postgres.js, all concurrently over pool_size 2, so statements keep landing on backends that never
saw them. Then the protocol paths drivers rely on, exactly: Describe and Close of a statement on a
backend that lacks it, DEALLOCATE (psycopg sends it when prepared_max is exceeded), several Syncs
in flight with an error in the middle, and the client's own statement names in what it sees.

Only Debian's packages (python3-psycopg, python3-asyncpg) and the Node.js packages pinned in
node/package-lock.json; run with /usr/bin/python3.
"""

import asyncio
import json
import re
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest

import pgwire
from concurrency import run_threads
from conftest import TARGET
from pgwire import message

POOL_SIZE = 2
TRANSACTION_MODE = {"databases": {"app": {"pool_mode": "transaction", "pool_size": POOL_SIZE}}}

pytestmark = [pytest.mark.sluice_config(config=TRANSACTION_MODE), pytest.mark.sluice_threads(2)]

NODE_DIR = Path(__file__).resolve().parent / "node"
# Backend counts are only bounded by pool_size behind a pooler (not with SLUICE_TEST_TARGET=direct).
MAX_BACKENDS = POOL_SIZE if TARGET != "direct" else 1000


def psycopg_connect(target, **kwargs):
    kwargs.setdefault("autocommit", True)
    return psycopg.connect(target.conninfo(), **kwargs)


class BackendHolder:
    """Makes a given backend unavailable: two clients open transactions, which with pool_size 2
    takes both backends; the one not holding `pid` commits. Until release(), the next
    transaction of any other client can only run on the other backend."""

    def __init__(self, target, pid):
        self.conns = [psycopg_connect(target, autocommit=False) for _ in range(POOL_SIZE)]
        pids = [c.execute("SELECT pg_backend_pid()").fetchone()[0] for c in self.conns]
        assert pid in pids, f"backend {pid} is not among the pool's {pids}"
        self.free_pid = next(p for p in pids if p != pid)
        for conn, held in zip(self.conns, pids):
            if held != pid:
                conn.commit()

    def release(self):
        for conn in self.conns:
            conn.rollback()
            conn.close()


# ---- psycopg ---------------------------------------------------------------------------------


@pytest.mark.targets("sluice")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("max_prepared", [256, 3])
def test_psycopg_prepared_statements_on_shared_backends(pg, start_sluice, max_prepared):
    # max_prepared_statements 3 < 12 distinct statements: backends keep evicting and preparing
    # again, and must still answer every query right.
    sluice = start_sluice(config={**TRANSACTION_MODE, "max_prepared_statements": max_prepared})
    threads, rounds, distinct = 6, 3, 12
    seen = {}  # (thread, statement) -> backend pids it ran on
    lock = threading.Lock()
    # Every client logged in before any starts, so that they run side by side (one that ran
    # alone would keep one backend and test nothing).
    start = threading.Barrier(threads)

    def client(t):
        with psycopg_connect(sluice, prepare_threshold=0) as conn:
            start.wait(timeout=60)
            for r in range(rounds):
                for k in range(distinct):
                    # Every statement twice in a row: the second is a Bind of a known name.
                    for repeat in range(2):
                        v, tag, pid = conn.execute(
                            f"SELECT %s::int + {k}, %s::text, pg_backend_pid()",
                            (t * 1000 + r, f"t{t}r{repeat}")).fetchone()
                        assert (v, tag) == (t * 1000 + r + k, f"t{t}r{repeat}")
                        with lock:
                            seen.setdefault((t, k), set()).add(pid)
            # psycopg really prepared them (names _pg3_N) rather than sending them unnamed.
            assert len(conn._prepared._names) == distinct

    errors = run_threads([lambda t=t: client(t) for t in range(threads)], timeout=120)
    assert not errors, errors
    all_pids = set().union(*seen.values())
    assert len(all_pids) <= POOL_SIZE
    moved = [key for key, pids in seen.items() if len(pids) > 1]
    assert moved, "no statement ran on more than one backend: the test did not test anything"

    # What the backends hold: only the pooler's per-definition names, at most the configured
    # number per backend, and they were executed (as prepared statements, not re-parsed).
    with psycopg_connect(sluice) as conn:
        for _ in range(4):
            rows = conn.execute("SELECT name, generic_plans + custom_plans"
                                " FROM pg_prepared_statements").fetchall()
            names = [name for name, _ in rows]
            assert all(re.fullmatch(r"sluice_[0-9a-f]+", n) for n in names), names
            assert len(names) <= max_prepared
    if max_prepared == 256:
        assert sum(uses for _, uses in rows) > 0
    assert "client_pinned" not in sluice.log()


@pytest.mark.targets("sluice")
def test_prepared_statement_reused_after_its_backend_changed(sluice):
    with psycopg_connect(sluice, prepare_threshold=0) as conn:
        query = "SELECT %s::int * 2, pg_backend_pid()"
        value, first_pid = conn.execute(query, (21,)).fetchone()
        assert value == 42
        holder = BackendHolder(sluice, first_pid)
        try:
            # Bind of a name the client prepared on a backend it cannot have now.
            for n in range(3):
                value, pid = conn.execute(query, (n,)).fetchone()
                assert (value, pid) == (2 * n, holder.free_pid)
        finally:
            holder.release()
        # And back on the first backend (or any): still fine.
        for n in range(5):
            assert conn.execute(query, (n,)).fetchone()[0] == 2 * n


def test_psycopg_deallocate_when_prepared_max_is_exceeded(sluice):
    # psycopg 3.1 closes the statement it evicts from its own cache with "DEALLOCATE _pg3_N"
    # (through the extended protocol, unnamed statement), interleaved with the queries.
    with psycopg_connect(sluice, prepare_threshold=0) as conn:
        conn.prepared_max = 2
        for r in range(4):
            for k in range(5):
                assert conn.execute(f"SELECT %s::int + {k}", (r,)).fetchone() == (r + k,)
        assert len(conn._prepared._names) == 2
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg_deallocate_all_after_drop(sluice):
    # psycopg 3.1 forgets its prepared statements after a DROP or ROLLBACK and sends
    # "DEALLOCATE ALL" (extended protocol, unnamed statement) before its next query; it then
    # numbers statements from _pg3_0 again, for other texts: Parse of names used before.
    with psycopg_connect(sluice, prepare_threshold=0) as conn:
        for k in range(3):
            assert conn.execute(f"SELECT {k} + %s::int", (1,)).fetchone() == (k + 1,)
        conn.execute("DROP TABLE IF EXISTS never_existed")
        assert len(conn._prepared._names) == 0
        for k in range(3):
            assert conn.execute(f"SELECT {k} * %s::int", (5,)).fetchone() == (k * 5,)
        with conn.transaction():
            assert conn.execute("SELECT %s::text", ("in tx",)).fetchone() == ("in tx",)
        conn.execute("ROLLBACK")  # a warning only, but psycopg forgets again
        for k in range(3):
            assert conn.execute(f"SELECT {k} + %s::int", (1,)).fetchone() == (k + 1,)
            assert conn.execute(f"SELECT {k} * %s::int", (5,)).fetchone() == (k * 5,)


@pytest.mark.targets("sluice")
def test_psycopg_prepare_true_and_describe_on_another_backend(sluice):
    with psycopg_connect(sluice) as conn:  # default threshold: prepared on request only
        cur = conn.cursor()
        cur.execute("SELECT %s::int + 1, pg_backend_pid()", (1,), prepare=True)
        value, pid = cur.fetchone()
        assert value == 2
        # libpq directly: Parse of a named statement, then Describe of it on another backend.
        res = conn.pgconn.prepare(b"described", b"SELECT $1::int AS a, $2::text AS b, 3 AS c")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
        holder = BackendHolder(sluice, pid)
        try:
            desc = conn.pgconn.describe_prepared(b"described")
            assert desc.status == psycopg.pq.ExecStatus.COMMAND_OK, desc.error_message
            assert desc.nparams == 2
            assert [desc.param_type(i) for i in range(2)] == [23, 25]
            assert [desc.fname(i) for i in range(3)] == [b"a", b"b", b"c"]
            res = conn.pgconn.exec_prepared(b"described", [b"7", b"x"])
            assert res.status == psycopg.pq.ExecStatus.TUPLES_OK, res.error_message
            assert [res.get_value(0, i) for i in range(3)] == [b"7", b"x", b"3"]
            # psycopg's own prepared statement, on the other backend.
            cur.execute("SELECT %s::int + 1, pg_backend_pid()", (41,), prepare=True)
            assert cur.fetchone() == (42, holder.free_pid)
        finally:
            holder.release()
        desc = conn.pgconn.describe_prepared(b"no_such_statement")
        assert desc.status == psycopg.pq.ExecStatus.FATAL_ERROR
        assert desc.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"
        assert b'"no_such_statement"' in desc.error_message
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("prepare_threshold", [None, 0])
def test_psycopg_pipeline_with_an_error_in_the_middle(sluice, prepare_threshold):
    with psycopg_connect(sluice, prepare_threshold=prepare_threshold) as conn:
        conn.execute("DROP TABLE IF EXISTS pipe_t")
        conn.execute("CREATE TABLE pipe_t (v int)")
        # As psycopg documents: queries up to a sync point form one implicit transaction; an
        # error rolls that back, and the rest up to the next sync is skipped.
        c4 = None
        with pytest.raises(psycopg.errors.UndefinedTable):
            with conn.pipeline() as p:
                c1 = conn.execute("INSERT INTO pipe_t VALUES (%s)", (1,))
                p.sync()
                c2 = conn.execute("INSERT INTO pipe_t VALUES (%s)", (2,))
                conn.execute("SELECT * FROM no_such_table")
                c4 = conn.execute("INSERT INTO pipe_t VALUES (%s)", (3,))
        assert c1.statusmessage == "INSERT 0 1"
        assert c2.statusmessage == "INSERT 0 1"  # executed, then rolled back with the error
        if c4 is not None:  # psycopg may raise the error while queueing it (documented)
            with pytest.raises(psycopg.ProgrammingError):
                c4.fetchall()  # skipped: no result
        assert conn.execute("SELECT array_agg(v ORDER BY v) FROM pipe_t").fetchone() == ([1],)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

        # The connection goes on, pipelined or not, and later sync points are independent.
        with conn.pipeline() as p:
            doubles = [conn.execute("SELECT %s::int * 2", (i,)) for i in range(10)]
            p.sync()
            texts = [conn.execute("SELECT %s::text || 'x'", (str(i),)) for i in range(5)]
            p.sync()
            with conn.transaction():
                conn.execute("INSERT INTO pipe_t VALUES (%s)", (4,))
                total = conn.execute("SELECT sum(v) FROM pipe_t")
        assert [c.fetchone()[0] for c in doubles] == [2 * i for i in range(10)]
        assert [c.fetchone()[0] for c in texts] == [f"{i}x" for i in range(5)]
        assert total.fetchone() == (5,)
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.timeout(180)
def test_psycopg_pipelines_concurrently(sluice):
    with psycopg_connect(sluice) as conn:
        conn.execute("DROP TABLE IF EXISTS pipe_c")
        conn.execute("CREATE TABLE pipe_c (t int, i int)")

    def client(t):
        with psycopg_connect(sluice, prepare_threshold=0) as conn:
            for round_ in range(5):
                with conn.pipeline() as p:
                    curs = [conn.execute("SELECT %s::int + %s::int", (t, i)) for i in range(8)]
                    p.sync()
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO pipe_c VALUES (%s, %s)",
                                        [(t, round_ * 10 + i) for i in range(4)])
                assert [c.fetchone()[0] for c in curs] == [t + i for i in range(8)]
                if round_ == 2:
                    with pytest.raises(psycopg.errors.DivisionByZero):
                        with conn.pipeline():
                            conn.execute("SELECT 1 / %s::int", (0,))
                            conn.execute("SELECT 2")
            (count,) = conn.execute("SELECT count(*) FROM pipe_c WHERE t = %s", (t,)).fetchone()
            assert count == 20

    errors = run_threads([lambda t=t: client(t) for t in range(6)], timeout=120)
    assert not errors, errors


# ---- asyncpg ---------------------------------------------------------------------------------


def asyncpg_args(target):
    return {"host": target.host, "port": target.port, "user": "alice",
            "password": "alice-secret", "database": "app", "timeout": 10}


@pytest.mark.timeout(180)
def test_asyncpg_concurrent_connections(sluice):
    asyncpg = pytest.importorskip("asyncpg", reason="python3-asyncpg (Debian) is not installed")
    connections, queries = 8, 30

    async def worker(i):
        conn = await asyncpg.connect(**asyncpg_args(sluice))
        pids = set()
        try:
            stmt = await conn.prepare("SELECT $1::int * 2, pg_backend_pid()")
            for j in range(queries):
                assert await conn.fetchval("SELECT $1::int * $2::int", i, j) == i * j
                rows = await conn.fetch(
                    "SELECT g, $1::text || g FROM generate_series(1, $2::int) g", f"w{i}-",
                    j % 5 + 1)
                assert [tuple(r) for r in rows] == [(g, f"w{i}-{g}") for g in range(1, j % 5 + 2)]
                value, pid = await stmt.fetchrow(j)
                assert value == 2 * j
                pids.add(pid)
                if j % 10 == 5:
                    with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
                        await conn.fetchval("SELECT 1 / $1::int", 0)
            await conn.executemany("INSERT INTO apg (w, n) VALUES ($1, $2)",
                                   [(i, n) for n in range(20)])
            async with conn.transaction():
                await conn.execute("INSERT INTO apg (w, n) VALUES ($1, $2)", i, 100)
                in_tx = await conn.fetchval("SELECT count(*) FROM apg WHERE w = $1", i)
                same = await conn.fetchval("SELECT pg_backend_pid()")
                assert same == await conn.fetchval("SELECT pg_backend_pid()")
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO apg (w, n) VALUES ($1, $2)", i, 200)
                    await conn.execute("SELECT no_such_column FROM apg")
            except asyncpg.exceptions.UndefinedColumnError:
                pass
            else:
                raise AssertionError("the failing transaction did not fail")
            return in_tx, pids
        finally:
            await conn.close()

    async def pooled(pool, k):
        async with pool.acquire() as conn:
            return await conn.fetchval("SELECT $1::text || $2::int", "p", k)

    async def main():
        setup = await asyncpg.connect(**asyncpg_args(sluice))
        await setup.execute("DROP TABLE IF EXISTS apg; CREATE TABLE apg (w int, n int)")
        await setup.close()
        results = await asyncio.wait_for(
            asyncio.gather(*[worker(i) for i in range(connections)]), timeout=120)
        # asyncpg's own pool (its reset query on release: UNLISTEN *, RESET ALL, ...).
        async with asyncpg.create_pool(**asyncpg_args(sluice), min_size=3, max_size=3) as pool:
            pooled_results = await asyncio.wait_for(
                asyncio.gather(*[pooled(pool, k) for k in range(60)]), timeout=60)
        check = await asyncpg.connect(**asyncpg_args(sluice))
        rows = await check.fetch("SELECT w, count(*) FROM apg GROUP BY w ORDER BY w")
        await check.close()
        return results, pooled_results, rows

    results, pooled_results, rows = asyncio.run(main())
    assert [in_tx for in_tx, _ in results] == [21] * connections
    assert len(set().union(*(pids for _, pids in results))) <= MAX_BACKENDS
    assert pooled_results == [f"p{k}" for k in range(60)]
    assert [tuple(r) for r in rows] == [(i, 21) for i in range(connections)]
    assert "client_pinned" not in sluice.log()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["pinned client's reset", "DISCARD ALL behind a comment",
                                 "DEALLOCATE ALL in a multi-statement query"])
def test_prepared_statements_survive_another_clients_reset(sluice, how):
    """A backend's statements are dropped by a pinned client's server_reset_query (DISCARD ALL)
    or by the client's own DISCARD ALL / DEALLOCATE ALL wherever it stands in its SQL. Sluice must
    forget them too: the next clients that get the backend prepare their statements again instead
    of binding ones that no longer exist (26000)."""
    asyncpg = pytest.importorskip("asyncpg", reason="python3-asyncpg (Debian) is not installed")

    async def asyncpg_once():
        conn = await asyncpg.connect(**asyncpg_args(sluice))
        try:
            return await conn.fetchval("SELECT $1::int", 7)
        finally:
            await conn.close()

    async def main():
        assert await asyncpg_once() == 7  # its statement is now prepared on a backend
        # The most recently used backend, the one holding that statement, goes to this client.
        with psycopg_connect(sluice, prepare_threshold=None) as conn:
            if how == "pinned client's reset":
                conn.execute("LISTEN x")  # pinned: its backend gets DISCARD ALL when it leaves
            elif how == "DISCARD ALL behind a comment":
                conn.execute("/* c */ DISCARD ALL")
            else:
                conn.execute("SELECT 1; DEALLOCATE ALL")
        return [await asyncpg_once() for _ in range(30)]

    assert asyncio.run(main()) == [7] * 30


# ---- the extended protocol, message by message -------------------------------------------------


def cstring(s):
    return s.encode() + b"\0"


def parse_msg(name, sql, oids=()):
    return message(b"P", cstring(name) + cstring(sql) + struct.pack("!H", len(oids))
                   + b"".join(struct.pack("!I", o) for o in oids))


def bind_msg(statement, params=(), portal=""):
    body = cstring(portal) + cstring(statement) + struct.pack("!HH", 0, len(params))
    for p in params:
        data = str(p).encode()
        body += struct.pack("!i", len(data)) + data
    return message(b"B", body + struct.pack("!H", 0))


def describe_msg(kind, name):
    return message(b"D", kind + cstring(name))


def close_msg(kind, name):
    return message(b"C", kind + cstring(name))


def execute_msg(portal=""):
    return message(b"E", cstring(portal) + struct.pack("!I", 0))


def query_msg(sql):
    return message(b"Q", cstring(sql))


SYNC = message(b"S")


def read_until_ready(client, count=1, timeout=10):
    """Messages up to the count-th ReadyForQuery, as (type, detail): DataRow values, the
    ErrorResponse fields, the CommandComplete tag, the ReadyForQuery status, else None."""
    out = []
    while count:
        kind, body = client.read_message(timeout=timeout)
        if kind in (b"S", b"N"):
            continue
        detail = None
        if kind == b"D":
            detail = pgwire._data_row(body)
        elif kind == b"E":
            detail = pgwire.parse_error_fields(body)
        elif kind == b"C":
            detail = body.rstrip(b"\0").decode()
        elif kind == b"Z":
            detail = body.decode()
            count -= 1
        elif kind == b"t":  # ParameterDescription: the parameter type OIDs
            (n,) = struct.unpack("!H", body[:2])
            detail = struct.unpack(f"!{n}I", body[2:2 + 4 * n])
        out.append((kind.decode(), detail))
    return out


def kinds(messages):
    return [k for k, _ in messages]


def raw_connect(target):
    return pgwire.connect(target.host, target.port, "alice", "app", "alice-secret")


@pytest.mark.targets("sluice")
def test_describe_and_close_on_a_backend_that_lacks_the_statement(sluice):
    with raw_connect(sluice) as client:
        client.send(parse_msg("s1", "SELECT $1::int + 1 AS v, pg_backend_pid() AS pid", [23])
                    + bind_msg("s1", [1]) + execute_msg() + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["1", "2", "D", "C", "Z"], got
        first_pid = int(got[2][1][1])
        holder = BackendHolder(sluice, first_pid)
        try:
            client.send(describe_msg(b"S", "s1") + SYNC)
            got = read_until_ready(client)
            # Exactly what PostgreSQL answers: no trace of the pooler preparing it first.
            assert kinds(got) == ["t", "T", "Z"], got
            assert got[0][1] == (23,)
            client.send(bind_msg("s1", [41]) + execute_msg() + SYNC)
            got = read_until_ready(client)
            assert got == [("2", None), ("D", ["42", str(holder.free_pid)]),
                           ("C", "SELECT 1"), ("Z", "I")]
            client.send(close_msg(b"S", "s1") + SYNC)
            assert read_until_ready(client) == [("3", None), ("Z", "I")]
        finally:
            holder.release()
        # Closed for this client wherever it runs next.
        client.send(bind_msg("s1", [1]) + execute_msg() + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["C"] == "26000"
        assert got[0][1]["M"] == 'prepared statement "s1" does not exist'
        client.send(describe_msg(b"S", "s1") + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "26000", got
        # Closing a statement that does not exist is not an error (as in PostgreSQL).
        client.send(close_msg(b"S", "s1") + close_msg(b"S", "never_was") + SYNC)
        assert read_until_ready(client) == [("3", None), ("3", None), ("Z", "I")]
        # The name can be used again, for another text.
        client.send(parse_msg("s1", "SELECT 'again'") + bind_msg("s1") + execute_msg() + SYNC)
        assert read_until_ready(client) == [("1", None), ("2", None), ("D", ["again"]),
                                            ("C", "SELECT 1"), ("Z", "I")]


def test_several_syncs_in_flight_with_an_error_in_the_middle(sluice):
    with raw_connect(sluice) as client:
        client.send(
            parse_msg("s2", "SELECT $1::int * 10") + bind_msg("s2", [1]) + execute_msg() + SYNC
            + bind_msg("missing") + execute_msg() + SYNC
            + bind_msg("s2", [2]) + execute_msg() + SYNC
            + query_msg("BEGIN") + bind_msg("s2", [3]) + execute_msg() + SYNC
            # random() keeps the division from being folded at planning (Bind) time.
            + parse_msg("", "SELECT 1 / (random() * 0)::int") + bind_msg("") + execute_msg()
            + bind_msg("s2", [4]) + execute_msg() + SYNC  # skipped: the error goes to Sync
            + query_msg("ROLLBACK")
            + bind_msg("s2", [5]) + execute_msg() + SYNC)
        got = read_until_ready(client, count=8)
        errors = [detail for kind, detail in got if kind == "E"]
        assert [e["C"] for e in errors] == ["26000", "22012"], got
        assert errors[0]["M"] == 'prepared statement "missing" does not exist'
        assert [d for k, d in got if k == "D"] == [["10"], ["20"], ["30"], ["50"]], got
        assert [d for k, d in got if k == "Z"] == ["I", "I", "I", "T", "T", "E", "I", "I"], got
        assert kinds(got) == ["1", "2", "D", "C", "Z",
                              "E", "Z",
                              "2", "D", "C", "Z",
                              "C", "Z",
                              "2", "D", "C", "Z",
                              "1", "2", "E", "Z",
                              "C", "Z",
                              "2", "D", "C", "Z"], got


@pytest.mark.targets("sluice")
def test_deallocate_by_sql_of_a_protocol_level_statement(sluice):
    with raw_connect(sluice) as client:
        client.send(parse_msg("Mixed Case", "SELECT pg_backend_pid()")
                    + parse_msg("plain", "SELECT 2") + bind_msg("Mixed Case") + execute_msg()
                    + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["1", "1", "2", "D", "C", "Z"], got
        client.send(query_msg('DEALLOCATE "Mixed Case"'))
        assert read_until_ready(client) == [("C", "DEALLOCATE"), ("Z", "I")]
        # On a backend where the statement was never prepared: the same answer.
        holder = BackendHolder(sluice, int(got[3][1][0]))
        try:
            client.send(query_msg("DEALLOCATE PREPARE plain"))
            assert read_until_ready(client) == [("C", "DEALLOCATE"), ("Z", "I")]
        finally:
            holder.release()
        for name in ("Mixed Case", "plain"):
            client.send(bind_msg(name) + execute_msg() + SYNC)
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "26000", got
        # DEALLOCATE of something that does not exist: PostgreSQL's error, with that name.
        client.send(query_msg("DEALLOCATE nothing_here"))
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["M"] == 'prepared statement "nothing_here" does not exist'
        client.send(parse_msg("a", "SELECT 'a'") + parse_msg("b", "SELECT 'b'") + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "1", "Z"]
        client.send(query_msg("DEALLOCATE ALL"))
        assert read_until_ready(client) == [("C", "DEALLOCATE ALL"), ("Z", "I")]
        client.send(bind_msg("a") + execute_msg() + SYNC)
        assert kinds(read_until_ready(client)) == ["E", "Z"]
        client.send(parse_msg("c", "SELECT 'c'") + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "Z"]
        client.send(query_msg("DISCARD ALL"))
        assert read_until_ready(client) == [("C", "DISCARD ALL"), ("Z", "I")]
        client.send(bind_msg("c") + execute_msg() + SYNC)
        assert kinds(read_until_ready(client)) == ["E", "Z"]
        # Names can be defined again afterwards.
        client.send(parse_msg("a", "SELECT 'a2'") + bind_msg("a") + execute_msg() + SYNC)
        assert [d for k, d in read_until_ready(client) if k == "D"] == [["a2"]]


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "separate-writes"])
def test_a_failed_parse_leaves_nothing_behind(sluice, split):
    # What libpq's pipeline mode does (psycopg's pipeline): Parse, then Bind/Execute, then Sync
    # in separate writes, so the error reaches the pooler before the rest of the batch does.
    def send_failing_batch(client, table):
        batch = [parse_msg("bad", f"SELECT * FROM {table}"), bind_msg("bad") + execute_msg(),
                 SYNC]
        if not split:
            batch = [b"".join(batch)]
        for part in batch:
            client.send(part)
            if split:
                time.sleep(0.05)

    for attempt in range(3):  # later attempts: new clients, most likely the same backend
        with raw_connect(sluice) as client:
            send_failing_batch(client, "missing_table_for_parse")
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"], (attempt, got)
            assert got[0][1]["C"] == "42P01", (attempt, got)
            client.send(parse_msg("ok", "SELECT 42") + bind_msg("ok") + execute_msg() + SYNC)
            assert read_until_ready(client) == [("1", None), ("2", None), ("D", ["42"]),
                                                ("C", "SELECT 1"), ("Z", "I")], attempt
            # The failed name was never defined.
            client.send(bind_msg("bad") + execute_msg() + SYNC)
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "26000", got
            assert got[0][1]["M"] == 'prepared statement "bad" does not exist'


def test_parse_of_an_existing_name_fails_as_in_postgresql(sluice):
    with raw_connect(sluice) as client:
        client.send(parse_msg("dup", "SELECT $1::int", [23]) + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "Z"]
        client.send(parse_msg("dup", "SELECT 2") + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["C"] == "42P05"
        assert got[0][1]["M"] == 'prepared statement "dup" already exists'
        # The first definition is still the one in force.
        client.send(bind_msg("dup", [5]) + execute_msg() + SYNC)
        assert read_until_ready(client) == [("2", None), ("D", ["5"]), ("C", "SELECT 1"),
                                            ("Z", "I")]


def test_errors_name_the_clients_statement(sluice):
    with raw_connect(sluice) as client:
        client.send(parse_msg("needs_one", "SELECT $1::int") + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "Z"]
        client.send(bind_msg("needs_one", []) + execute_msg() + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["C"] == "08P01"
        assert got[0][1]["M"] == ('bind message supplies 0 parameters, but prepared statement'
                                  ' "needs_one" requires 1')


def test_a_prepare_of_an_invalid_statement_fails_at_prepare(sluice):
    # libpq's PQprepare (Parse then Sync) outside a transaction: PostgreSQL reports an invalid
    # statement there, and applications validate statements by preparing them.
    with psycopg_connect(sluice) as conn:
        res = conn.pgconn.prepare(b"bad", b"SELECT * FROM no_such_table_for_prepare")
        assert res.status == psycopg.pq.ExecStatus.FATAL_ERROR
        assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42P01"
        res = conn.pgconn.prepare(b"bad_syntax", b"SELEC 1")
        assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"42601"
        # A valid one prepares, and runs; the failed names were never defined.
        res = conn.pgconn.prepare(b"good", b"SELECT $1::int + 1")
        assert res.status == psycopg.pq.ExecStatus.COMMAND_OK
        res = conn.pgconn.exec_prepared(b"good", [b"41"])
        assert res.status == psycopg.pq.ExecStatus.TUPLES_OK and res.get_value(0, 0) == b"42"
        res = conn.pgconn.exec_prepared(b"bad", [])
        assert res.error_field(psycopg.pq.DiagnosticField.SQLSTATE) == b"26000"


@pytest.mark.targets("sluice")
def test_prepare_of_a_known_statement_needs_no_backend(sluice):
    # Outside a transaction, a PQprepare of a definition that a backend of the pool has already
    # parsed is answered by Sluice itself, so a client that prepares while every backend is held
    # (by clients of its own thread, in pgbench -M prepared) is not queued; its first Bind
    # prepares the statement on a backend.
    with raw_connect(sluice) as first:
        first.send(parse_msg("first", "SELECT $1::int * 2", [23]) + SYNC)
        assert read_until_ready(first) == [("1", None), ("Z", "I")]
    holders = [psycopg_connect(sluice, autocommit=False) for _ in range(POOL_SIZE)]
    try:
        for conn in holders:
            conn.execute("SELECT 1")  # each now holds a backend in an open transaction
        with raw_connect(sluice) as client:
            client.send(parse_msg("later", "SELECT $1::int * 2", [23]) + SYNC)
            assert read_until_ready(client, timeout=5) == [("1", None), ("Z", "I")]
            # A definition no backend has parsed goes to one, which PostgreSQL must judge: it
            # waits for a backend, and its error comes at the Parse.
            client.send(parse_msg("broken", "SELECT * FROM no_such_table_for_prepare") + SYNC)
            time.sleep(0.3)
            released = holders.pop()
            released.rollback()
            released.close()
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "42P01", got
            # Redefining a name goes to a backend (for PostgreSQL's 42P05).
            client.send(parse_msg("later", "SELECT 3") + SYNC)
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "42P05", got
            client.send(bind_msg("later", [21]) + execute_msg() + SYNC)
            assert read_until_ready(client) == [("2", None), ("D", ["42"]), ("C", "SELECT 1"),
                                                ("Z", "I")]
            client.send(bind_msg("broken") + execute_msg() + SYNC)
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "26000", got
            # Inside a transaction a Parse goes to the backend and fails as in PostgreSQL.
            client.send(query_msg("BEGIN"))
            assert read_until_ready(client) == [("C", "BEGIN"), ("Z", "T")]
            client.send(parse_msg("in_tx", "SELECT * FROM no_such_table_for_prepare") + SYNC)
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "42P01", got
            assert got[-1] == ("Z", "E")
            client.send(query_msg("ROLLBACK"))
            assert read_until_ready(client) == [("C", "ROLLBACK"), ("Z", "I")]
            client.send(bind_msg("in_tx") + execute_msg() + SYNC)
            got = read_until_ready(client)
            assert kinds(got) == ["E", "Z"] and got[0][1]["C"] == "26000", got
    finally:
        for conn in holders:
            conn.rollback()
            conn.close()


# ---- Node.js: node-postgres and postgres.js ------------------------------------------------------


def ensure_node_modules():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are not installed: the node-postgres/postgres.js test needs them")
    modules = NODE_DIR / "node_modules"
    if not ((modules / "pg").is_dir() and (modules / "postgres").is_dir()):
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                                cwd=NODE_DIR, capture_output=True, text=True, timeout=300,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return node


@pytest.mark.timeout(180)
def test_node_postgres_named_queries_and_postgres_js(sluice):
    node = ensure_node_modules()
    result = subprocess.run(
        [node, "drivers.mjs", sluice.host, str(sluice.port), "alice", "alice-secret", "app"],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    report = json.loads(result.stdout.strip().splitlines()[-1])

    pg_report = report["pg"]
    assert pg_report["messages"] == [], pg_report
    assert (pg_report["errors"], pg_report["mismatches"]) == (0, 0)
    per_client = pg_report["rounds"] * (pg_report["statements"] + 1) + 2
    assert pg_report["queries"] == pg_report["clients"] * per_client
    assert pg_report["rows"] == pg_report["clients"] * pg_report["rounds"]
    assert 1 <= pg_report["backends"] <= MAX_BACKENDS
    # pg sends Parse only on a name's first use per connection; later Binds still worked on
    # backends that had not seen it.
    if TARGET != "direct":
        assert pg_report["moved"] > 0

    pjs = report["postgres"]
    assert pjs["messages"] == [], pjs
    assert (pjs["errors"], pjs["mismatches"]) == (0, 0)
    assert pjs["queries"] == pjs["planned"] + 2
    assert 1 <= pjs["backends"] <= MAX_BACKENDS
    assert "client_pinned" not in sluice.log()
