"""Malformed input on the listening port: random bytes, impossible startup lengths (3 bytes,
2 GB), unknown protocol versions, bad messages after login. Each connection must be closed
(possibly after an ErrorResponse), promptly and without waiting for more bytes, and the pooler
must go on serving normal clients. A pooler that crashes fails the test in the fixture teardown.
"""

import random
import socket
import struct

import pytest

import pgwire
from conftest import TARGET

# A login timeout far beyond the waits below: a server that merely waits for the rest of an
# impossible packet, instead of rejecting it, fails these tests.
PATIENT = {"client_login_timeout": "60s"}
PROMPT = 5  # seconds within which a malformed connection must be closed

SSL_REQUEST = struct.pack("!II", 8, 80877103)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Raw bytes until the server closes; TimeoutError if it does not within `timeout`.
    Raw, not parsed: a server may answer an old protocol version in that version's format
    (PostgreSQL answers 2.0 with a v2 ErrorResponse, which has no length word)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            assert len(data) < 1 << 20, "server keeps sending"
    except ConnectionResetError:
        pass
    except socket.timeout as e:
        raise TimeoutError(f"connection still open after {timeout}s (got {data[:100]!r})") from e
    return data


def send_and_collect(target, data: bytes, half_close: bool) -> bytes:
    """Sends `data` on a fresh connection; returns what came back before the server closed.
    With half_close we also signal EOF, for inputs that a correct server may legally wait on
    (random bytes whose length word happens to be plausible)."""
    with socket.create_connection((target.host, target.port), timeout=PROMPT) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed (EPIPE, ECONNRESET, ENOTCONN) before we finished sending: fine
        return read_until_closed(sock, PROMPT if not half_close else 10)


def assert_only_an_error(reply: bytes):
    """Nothing, or an ErrorResponse: no authentication request, no ReadyForQuery."""
    assert reply == b"" or reply[:1] == b"E", reply[:200]


def assert_still_serving(target):
    with pgwire.connect(target.host, target.port, "alice", "app", "alice-secret") as client:
        assert client.query("SELECT 1") == [["1"]]


def startup_body(params: bytes, version: int = pgwire.PROTOCOL_3_0) -> bytes:
    body = struct.pack("!I", version) + params
    return struct.pack("!I", len(body) + 4) + body


BEFORE_LOGIN = {
    "length 3": struct.pack("!I", 3),
    "length 0": struct.pack("!I", 0),
    "length 2 GB": struct.pack("!II", 0x80000000, pgwire.PROTOCOL_3_0),
    "length 4 GB - 1": struct.pack("!II", 0xFFFFFFFF, pgwire.PROTOCOL_3_0),
    "length 20000": struct.pack("!II", 20000, pgwire.PROTOCOL_3_0) + b"u" * 100,
    "protocol 9.0": startup_body(b"user\0alice\0database\0app\0\0", version=9 << 16),
    "protocol 2.0": startup_body(b"user\0alice\0database\0app\0\0", version=2 << 16),
    "no user": startup_body(b"database\0app\0\0"),
    "no terminator": startup_body(b"user\0alice\0database\0app"),
    "ssl request then junk": SSL_REQUEST + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "http request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
}


# PgBouncer 1.18 waits for more bytes (until client_login_timeout) on these; Sluice must not.
PGBOUNCER_WAITS = {"length 0", "length 3", "no terminator"}


@pytest.mark.sluice_config(config=PATIENT)
@pytest.mark.parametrize("case", sorted(BEFORE_LOGIN))
def test_malformed_startup_is_closed_promptly(sluice, case):
    if TARGET == "pgbouncer" and case in PGBOUNCER_WAITS:
        pytest.skip("PgBouncer 1.18 waits for the rest of this packet")
    data = BEFORE_LOGIN[case]
    if data.startswith(SSL_REQUEST):
        # The SSLRequest itself is valid and answered with one byte 'N'; what follows is junk.
        with socket.create_connection((sluice.host, sluice.port), timeout=PROMPT) as sock:
            sock.sendall(SSL_REQUEST)
            assert sock.recv(1) == b"N"
            try:
                sock.sendall(data[len(SSL_REQUEST):])
            except OSError:
                pass
            reply = read_until_closed(sock, PROMPT)
    else:
        reply = send_and_collect(sluice, data, half_close=False)
    assert_only_an_error(reply)
    assert_still_serving(sluice)


@pytest.mark.sluice_config(config=PATIENT)
def test_random_bytes_are_closed(sluice):
    rng = random.Random(20240611)  # fixed seed: the same bytes on every run
    for _ in range(30):
        data = rng.randbytes(rng.randint(1, 4096))
        assert_only_an_error(send_and_collect(sluice, data, half_close=True))
    assert_still_serving(sluice)


AFTER_LOGIN = {
    "query length 2 GB": b"Q" + struct.pack("!I", 0x7FFFFFFF) + b"SELECT 1",
    "query length 3": b"Q" + struct.pack("!I", 3),
    "unknown message type": b"z" + struct.pack("!I", 4),
    "startup packet again": pgwire.startup_packet("alice", "app"),
}


@pytest.mark.parametrize("case", sorted(AFTER_LOGIN))
def test_malformed_message_after_login_is_closed(sluice, case):
    with pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret",
                        timeout=PROMPT) as client:
        assert client.query("SELECT 1") == [["1"]]
        try:
            client.send(AFTER_LOGIN[case])
        except OSError:
            pass
        reply = read_until_closed(client.sock, PROMPT)
    assert_only_an_error(reply)
    assert_still_serving(sluice)
