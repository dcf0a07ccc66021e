"""Transaction pooling: when no backend becomes free in time, the transaction is refused with an
ERROR (53300) and the client's connection stays open and usable, in the simple and in the
extended protocol (input skipped to the next Sync, as PostgreSQL does after an error)."""

from __future__ import annotations

import re

import psycopg
import pytest

pytestmark = [
    pytest.mark.targets("sluice"),
    pytest.mark.sluice_config(config={
        "query_wait_timeout": "300ms",
        "databases": {"app": {"pool_mode": "transaction", "pool_size": 1}},
    }),
]


def hold_the_only_backend(sluice) -> psycopg.Connection:
    holder = sluice.connect(autocommit=False)
    holder.execute("SELECT 1")  # a transaction is now open: the backend stays with `holder`
    return holder


def test_a_refused_simple_query_leaves_the_connection_usable(sluice):
    client = sluice.connect()
    holder = hold_the_only_backend(sluice)
    with pytest.raises(psycopg.errors.TooManyConnections) as refused:
        client.execute("SELECT 1", prepare=False)
    assert refused.value.sqlstate == "53300"
    # The default bulkhead waits query_wait_timeout at most (its max_wait).
    assert refused.value.diag.message_primary == 'sluice: bulkhead "default" is saturated: max_wait'
    assert "queue depth" in (refused.value.diag.message_detail or "")
    assert re.fullmatch(r"retry after \d+ ms", refused.value.diag.message_hint or "")
    holder.rollback()  # the backend is free again
    assert client.execute("SELECT 41 + 1").fetchone() == (42,)
    holder.close()
    client.close()


def test_a_refused_extended_batch_is_skipped_to_its_sync(sluice):
    client = sluice.connect()
    holder = hold_the_only_backend(sluice)
    # Parameters make psycopg use Parse/Bind/Describe/Execute/Sync.
    with pytest.raises(psycopg.errors.TooManyConnections):
        client.execute("SELECT %s::int", (1,))
    holder.rollback()
    assert client.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
    # The refusal left no half-processed extended-protocol state behind.
    assert client.execute("SELECT %s::text", ("still fine",)).fetchone() == ("still fine",)
    holder.close()
    client.close()


def test_a_refused_named_statement_can_be_prepared_later(sluice):
    client = sluice.connect()
    holder = hold_the_only_backend(sluice)
    with pytest.raises(psycopg.errors.TooManyConnections):
        client.execute("SELECT %s::int * 2", (21,), prepare=True)
    holder.rollback()
    for _ in range(3):
        assert client.execute("SELECT %s::int * 2", (21,), prepare=True).fetchone() == (42,)
    holder.close()
    client.close()
