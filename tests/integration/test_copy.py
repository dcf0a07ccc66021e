"""COPY through the pooler: several megabytes in (CopyData from the client) and out (CopyData
from the server), verified row by row via checksums, and a COPY that fails half-way leaving the
session usable.
"""

import hashlib

import psycopg
import pytest

ROWS_IN = 100_000      # ~7 MB of text
ROWS_OUT = 200_000     # ~8 MB of text


class ClientAbort(Exception):
    pass


def payload(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def test_copy_in_several_megabytes(sluice):
    lines = [f"{i}\t{payload(i)}\n" for i in range(ROWS_IN)]
    data = "".join(lines).encode()
    assert len(data) > 5_000_000
    with sluice.connect() as conn:
        conn.execute("CREATE TEMP TABLE copy_in (id int, payload text)")
        with conn.cursor() as cur:
            with cur.copy("COPY copy_in (id, payload) FROM STDIN") as copy:
                for start in range(0, len(data), 65536):  # as a client streams it: in chunks
                    copy.write(data[start:start + 65536])
            assert cur.rowcount == ROWS_IN
        count, id_sum, digest = conn.execute(
            "SELECT count(*), sum(id), md5(string_agg(payload, '' ORDER BY id)) FROM copy_in"
        ).fetchone()
    assert count == ROWS_IN
    assert id_sum == sum(range(ROWS_IN))
    assert digest == hashlib.md5("".join(payload(i) for i in range(ROWS_IN)).encode()).hexdigest()


def test_copy_out_several_megabytes(sluice):
    expected = "".join(f"{i}\t{hashlib.md5(str(i).encode()).hexdigest()}\n"
                       for i in range(1, ROWS_OUT + 1)).encode()
    received = bytearray()
    with sluice.connect() as conn, conn.cursor() as cur:
        with cur.copy("COPY (SELECT i, md5(i::text) FROM generate_series(1, %s) i) TO STDOUT"
                      % ROWS_OUT) as copy:
            for block in copy:
                received += block
        assert conn.execute("SELECT 1").fetchone() == (1,)  # protocol state is back to normal
    assert len(received) > 5_000_000
    assert received.count(b"\n") == ROWS_OUT
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(expected).hexdigest()


def test_failed_copy_leaves_the_session_usable(sluice):
    with sluice.connect() as conn:
        conn.execute("CREATE TEMP TABLE copy_bad (id int)")
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with conn.cursor() as cur, cur.copy("COPY copy_bad FROM STDIN") as copy:
                copy.write(b"1\n2\n")
                copy.write(b"three\n")  # the server rejects this row; the whole COPY fails
                copy.write(b"4\n" * 10000)
        assert conn.execute("SELECT count(*) FROM copy_bad").fetchone() == (0,)

        # A COPY the client aborts itself (CopyFail) is just as recoverable: psycopg sends
        # CopyFail on an exception in the block, and the server answers 57014.
        with pytest.raises(psycopg.errors.QueryCanceled, match="ClientAbort"):
            with conn.cursor() as cur, cur.copy("COPY copy_bad FROM STDIN") as copy:
                copy.write(b"1\n")
                raise ClientAbort("changed my mind")
        assert conn.execute("SELECT count(*) FROM copy_bad").fetchone() == (0,)
