"""Transaction pooling: statements a backend lost where Sluice could not see it (issue 12, item 3).

A function that runs DEALLOCATE ALL drops the backend's prepared statements, and no SQL text the
client sent shows it. When the backend then answers a client's Bind with 26000 for a statement
Sluice prepared, Sluice prepares it again and sends the client's messages again, once, where the
client cannot tell (the group began on an idle backend, nothing of its answer has reached the
client, and no later message went out first); otherwise the error reaches the client, as it
would from PostgreSQL, and the statement is prepared again at its next use.
"""
import asyncio

import psycopg
import pytest

from pgwire import message
from test_transaction_drivers import (SYNC, asyncpg_args, bind_msg, execute_msg, kinds,
                                      parse_msg, query_msg, raw_connect, read_until_ready)

# One backend: every client's transaction runs on the backend whose statements were dropped.
ONE_BACKEND = {"databases": {"app": {"pool_mode": "transaction", "pool_size": 1}}}

pytestmark = pytest.mark.sluice_config(config=ONE_BACKEND)


@pytest.fixture(scope="module", autouse=True)
def drop_statements_function(pg):
    pg.execute("CREATE OR REPLACE FUNCTION drop_statements() RETURNS void LANGUAGE plpgsql AS "
               "$$ BEGIN EXECUTE 'DEALLOCATE ALL'; END $$", dbname="app")
    pg.execute("GRANT EXECUTE ON FUNCTION drop_statements() TO alice", dbname="app")


def drop_backend_statements(target):
    with psycopg.connect(target.conninfo(), autocommit=True, prepare_threshold=None) as conn:
        conn.execute("SELECT drop_statements()")


@pytest.mark.targets("sluice")
@pytest.mark.timeout(120)
def test_asyncpg_clients_never_see_a_statement_the_backend_lost(sluice):
    asyncpg = pytest.importorskip("asyncpg", reason="python3-asyncpg (Debian) is not installed")

    async def asyncpg_once():
        conn = await asyncpg.connect(**asyncpg_args(sluice))
        try:
            return await conn.fetchval("SELECT $1::int", 7)
        except asyncpg.exceptions.InvalidSQLStatementNameError:
            return "26000"
        finally:
            await conn.close()

    async def main():
        results = []
        for _ in range(10):
            results.append(await asyncpg_once())  # its statement is prepared on the backend
            drop_backend_statements(sluice)        # and dropped behind Sluice's back
            results.append(await asyncpg_once())
        return results

    assert asyncio.run(main()) == [7] * 20
    assert "action=retry" in sluice.log()


@pytest.mark.targets("sluice")
def test_a_lost_statement_is_prepared_again_within_the_clients_own_group(sluice):
    with raw_connect(sluice) as client:
        client.send(parse_msg("s1", "SELECT $1::int + 1") + bind_msg("s1", [1]) + execute_msg()
                    + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "2", "D", "C", "Z"]
        drop_backend_statements(sluice)
        client.send(bind_msg("s1", [41]) + execute_msg() + SYNC)
        assert read_until_ready(client) == [("2", None), ("D", ["42"]), ("C", "SELECT 1"),
                                            ("Z", "I")]


@pytest.mark.targets("sluice")
def test_a_lost_statement_inside_a_transaction_fails_as_in_postgresql(sluice):
    """The error aborts the client's transaction: sending the Bind again could not undo that, so
    the client gets the error; after its ROLLBACK the statement works again."""
    with raw_connect(sluice) as client:
        client.send(parse_msg("s1", "SELECT $1::int + 1") + bind_msg("s1", [1]) + execute_msg()
                    + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "2", "D", "C", "Z"]
        client.send(query_msg("BEGIN; SELECT drop_statements()"))
        assert kinds(read_until_ready(client)) == ["C", "T", "D", "C", "Z"]
        client.send(bind_msg("s1", [41]) + execute_msg() + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["C"] == "26000"
        assert got[0][1]["M"] == 'prepared statement "s1" does not exist'
        assert got[1][1] == "E"
        client.send(query_msg("ROLLBACK"))
        assert read_until_ready(client) == [("C", "ROLLBACK"), ("Z", "I")]
        client.send(bind_msg("s1", [41]) + execute_msg() + SYNC)
        assert read_until_ready(client) == [("2", None), ("D", ["42"]), ("C", "SELECT 1"),
                                            ("Z", "I")]


@pytest.mark.targets("sluice")
def test_a_group_already_partly_answered_is_not_sent_again(sluice):
    """A statement ran before the Bind that failed, and its result reached the client: running
    the group again would run that statement twice."""
    with raw_connect(sluice) as client:
        client.send(parse_msg("s1", "SELECT $1::int + 1") + bind_msg("s1", [1]) + execute_msg()
                    + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "2", "D", "C", "Z"]
        drop_backend_statements(sluice)
        client.send(parse_msg("", "SELECT 'first'") + bind_msg("") + execute_msg()
                    + bind_msg("s1", [41]) + execute_msg() + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["1", "2", "D", "C", "E", "Z"], got
        assert got[4][1]["C"] == "26000"
        assert got[4][1]["M"] == 'prepared statement "s1" does not exist'
        # Prepared again at its next use.
        client.send(bind_msg("s1", [41]) + execute_msg() + SYNC)
        assert read_until_ready(client) == [("2", None), ("D", ["42"]), ("C", "SELECT 1"),
                                            ("Z", "I")]


@pytest.mark.targets("sluice")
def test_pipelined_groups_are_not_reordered(sluice):
    """The second group was already sent when the first failed: sending the first again would run
    it after the second, so both errors reach the client in order, and the next use works."""
    with raw_connect(sluice) as client:
        client.send(parse_msg("s1", "SELECT $1::int + 1") + bind_msg("s1", [1]) + execute_msg()
                    + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "2", "D", "C", "Z"]
        drop_backend_statements(sluice)
        client.send(bind_msg("s1", [1]) + execute_msg() + SYNC
                    + query_msg("SELECT 'second'"))
        got = read_until_ready(client, count=2)
        assert kinds(got) == ["E", "Z", "T", "D", "C", "Z"], got
        assert got[0][1]["C"] == "26000"
        client.send(bind_msg("s1", [41]) + execute_msg() + SYNC)
        assert read_until_ready(client) == [("2", None), ("D", ["42"]), ("C", "SELECT 1"),
                                            ("Z", "I")]


def assert_backend_handed_back(sluice, client):
    """With `client` still connected, its one backend serves another client, then `client`."""
    with psycopg.connect(sluice.conninfo(), autocommit=True) as other:
        assert other.execute("SELECT 'other'").fetchone() == ("other",)
    client.send(query_msg("SELECT 'still here'"))
    assert kinds(read_until_ready(client)) == ["T", "D", "C", "Z"]


@pytest.mark.targets("sluice")
@pytest.mark.timeout(60)
@pytest.mark.sluice_config(config={**ONE_BACKEND, "query_wait_timeout": "3s"})
def test_a_query_skipped_after_an_extended_protocol_error_leaves_nothing_outstanding(sluice):
    """After an error in extended-protocol messages, PostgreSQL skips everything up to the Sync,
    a simple Query among them, which then gets no ReadyForQuery. Sluice must not wait for one:
    the client's backend goes back to the pool, and the next client gets it."""
    with raw_connect(sluice) as client:
        client.send(parse_msg("", "SELEC broken") + query_msg("SELECT 'skipped'")
                    + query_msg("SELECT 'skipped too'") + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["C"] == "42601"
        # Without an error the Query runs and is answered, and so is the Sync.
        client.send(parse_msg("", "SELECT 1") + query_msg("SELECT 'ran'") + SYNC)
        got = read_until_ready(client, count=2)
        assert kinds(got) == ["1", "T", "D", "C", "Z", "Z"], got
        assert_backend_handed_back(sluice, client)


@pytest.mark.targets("sluice")
@pytest.mark.timeout(60)
@pytest.mark.sluice_config(config={**ONE_BACKEND, "query_wait_timeout": "3s"})
def test_a_query_sent_after_the_series_error_arrived_leaves_nothing_outstanding(sluice):
    """As above, but the client reads the error (it sent a Flush) before it sends the Query:
    the backend still skips the Query to the Sync, and Sluice must not wait for its
    ReadyForQuery either."""
    with raw_connect(sluice) as client:
        client.send(parse_msg("", "SELEC broken") + message(b"H"))
        kind, _ = client.read_message(timeout=10)
        assert kind == b"E"
        client.send(query_msg("SELECT 'skipped'") + SYNC)
        got = read_until_ready(client)
        assert kinds(got) == ["Z"], got
        assert_backend_handed_back(sluice, client)


@pytest.mark.targets("sluice")
@pytest.mark.timeout(60)
@pytest.mark.sluice_config(config={**ONE_BACKEND, "max_prepared_statements": 1})
def test_deallocate_in_an_aborted_transaction_is_answered(sluice):
    """DEALLOCATE by SQL of a protocol-level statement that this backend no longer holds: Sluice
    prepares it there first. In an aborted transaction that Parse fails too, and PostgreSQL skips
    to the next Sync; the client's simple Query must still get PostgreSQL's answer (25P02), not
    be swallowed while the client waits."""
    with raw_connect(sluice) as client:
        client.send(parse_msg("x", "SELECT 1") + SYNC)
        assert kinds(read_until_ready(client)) == ["1", "Z"]
        # A second statement evicts the first from the backend (one statement per backend).
        client.send(parse_msg("y", "SELECT 2") + bind_msg("y") + execute_msg() + SYNC)
        assert kinds(read_until_ready(client))[-1] == "Z"
        client.send(query_msg("BEGIN"))
        read_until_ready(client)
        client.send(query_msg("SELECT 1/0"))
        assert read_until_ready(client)[0][1]["C"] == "22012"
        client.send(query_msg("DEALLOCATE x"))
        got = read_until_ready(client, timeout=10)
        assert kinds(got) == ["E", "Z"], got
        assert got[0][1]["C"] == "25P02"
        client.send(query_msg("ROLLBACK"))
        assert kinds(read_until_ready(client)) == ["C", "Z"]
        client.send(query_msg("SELECT 'still here'"))
        assert kinds(read_until_ready(client)) == ["T", "D", "C", "Z"]
