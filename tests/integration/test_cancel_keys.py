"""Cancel keys and CancelRequests (issue 12, item 10).

The BackendKeyData Sluice issues must not be predictable (random pids, positive as int32);
CancelRequests are limited per peer address (20 a second, bursts of 40) and counted in
sluice_cancel_requests_total{outcome}; and a CancelRequest is answered the same way, by closing
the connection at once, whether its key is right or wrong, even when forwarding it to the
backend takes long.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import struct
import time
import urllib.request

import pytest

import pgcluster
import pgwire

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

CANCEL_REQUEST_CODE = 80877102
BURST, RATE = 40, 20  # CancelRateLimiter's defaults


def metrics_config() -> tuple[int, dict]:
    port = pgcluster.free_port()
    return port, {"metrics_listen": f"127.0.0.1:{port}"}


def cancel_outcomes(port: int) -> dict[str, float]:
    """sluice_cancel_requests_total by outcome (missing: the metric does not exist)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("sluice_cancel_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            outcome = labels.split('outcome="', 1)[1].split('"', 1)[0]
            out[outcome] = float(value)
    return out


def send_cancel(host: str, port: int, pid: int, secret: int, source: str | None = None,
                timeout: float = 10) -> tuple[bytes, float]:
    """Sends one CancelRequest; returns (what the server sent before closing, seconds until it
    closed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.connect((host, port))
        started = time.monotonic()
        sock.sendall(struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid, secret))
        received = b""
        while True:
            try:
                chunk = sock.recv(100)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started
    finally:
        sock.close()


def read_until_ready(client: pgwire.WireClient, timeout: float) -> None:
    """Reads a query's answer up to ReadyForQuery; raises ServerError on its error."""
    while client.expect(b"T", b"D", b"C", b"I", b"Z", timeout=timeout)[0] != b"Z":
        pass


def test_backend_key_pids_are_random_positive_int32(sluice):
    clients = [pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret")
               for _ in range(8)]
    try:
        keys = [c.backend_key for c in clients]
    finally:
        for c in clients:
            c.close()
    pids = [pid for pid, _ in keys]
    assert len(set(pids)) == len(pids)
    assert all(0 < pid <= 0x7FFFFFFF for pid in pids), pids
    # Issued one after another: sequential pids would be neighbours; random ones never are
    # (8 draws from 2^31).
    gaps = [abs(b - a) for a, b in zip(pids, pids[1:])]
    assert min(gaps) > 1000, f"predictable pids {pids}"
    assert len({secret for _, secret in keys}) == len(keys)


def test_cancel_requests_are_rate_limited_per_peer_and_counted(start_sluice):
    metrics_port, config = metrics_config()
    sluice = start_sluice(config=config)
    before = cancel_outcomes(metrics_port)
    assert set(before) == {"forwarded", "dequeued", "nothing_running", "unknown_key",
                           "rate_limited"}, before
    assert all(v == 0 for v in before.values()), before

    flood = 200
    started = time.monotonic()
    for i in range(flood):
        answer, _ = send_cancel(sluice.host, sluice.port, 4242 + i, 0xDEADBEEF)
        assert answer == b""  # always just closed
    deadline = time.monotonic() + 10
    while True:
        counts = cancel_outcomes(metrics_port)
        if counts["unknown_key"] + counts["rate_limited"] >= flood or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert counts["unknown_key"] + counts["rate_limited"] == flood, counts
    # Every request was handled between `started` and now, so at most the burst plus what the
    # bucket refilled meanwhile got through.
    allowed = BURST + math.ceil(RATE * elapsed) + 1
    assert counts["unknown_key"] <= allowed, (counts, elapsed)
    assert counts["rate_limited"] >= flood - allowed, (counts, elapsed)
    assert counts["rate_limited"] > 0, counts
    assert counts["forwarded"] == 0


def test_a_flooding_peer_does_not_stop_cancels_from_another(pg, start_sluice):
    metrics_port, config = metrics_config()
    sluice = start_sluice(config=config)
    # 127.0.0.3 spends its budget on wrong keys (Linux routes all of 127/8 to loopback).
    for i in range(BURST * 3):
        send_cancel(sluice.host, sluice.port, 777 + i, 1, source="127.0.0.3")
    with pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret") as client:
        pid, secret = client.backend_key
        client.send(pgwire.message(b"Q", b"SELECT pg_sleep(10)\0"))
        pg.wait_for_query("SELECT pg_sleep(10)%", timeout=10)
        started = time.monotonic()
        answer, _ = send_cancel(sluice.host, sluice.port, pid, secret, source="127.0.0.1")
        assert answer == b""
        with pytest.raises(pgwire.ServerError) as caught:
            read_until_ready(client, timeout=10)
        assert caught.value.sqlstate == "57014"
        assert time.monotonic() - started < 5
    counts = cancel_outcomes(metrics_port)
    assert counts["forwarded"] == 1, counts
    assert counts["rate_limited"] >= BURST, counts


def postmaster_pid(pg) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])


@pytest.mark.timeout(60)
def test_right_and_wrong_keys_get_the_same_answer_at_once(pg, sluice):
    """With the postmaster stopped, forwarding a cancel cannot complete (PostgreSQL's kernel
    accepts the connection, nobody reads it); the client must still see the connection closed at
    once, exactly as for a wrong key, and the cancel must still arrive once it can."""
    with pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret") as client:
        pid, secret = client.backend_key
        client.send(pgwire.message(b"Q", b"SELECT pg_sleep(20)\0"))
        pg.wait_for_query("SELECT pg_sleep(20)%", timeout=10)
        postmaster = postmaster_pid(pg)
        os.kill(postmaster, signal.SIGSTOP)
        try:
            right_answer, right_time = send_cancel(sluice.host, sluice.port, pid, secret)
            wrong_answer, wrong_time = send_cancel(sluice.host, sluice.port, pid, secret ^ 1)
            unknown_answer, unknown_time = send_cancel(sluice.host, sluice.port, pid ^ 1, secret)
        finally:
            os.kill(postmaster, signal.SIGCONT)
        assert right_answer == wrong_answer == unknown_answer == b""
        assert right_time < 1.0, f"a right key was answered after {right_time:.2f}s"
        assert wrong_time < 1.0 and unknown_time < 1.0
        # The forwarded cancel reaches PostgreSQL once the postmaster runs again.
        started = time.monotonic()
        with pytest.raises(pgwire.ServerError) as caught:
            read_until_ready(client, timeout=15)
        assert caught.value.sqlstate == "57014"
        assert time.monotonic() - started < 10
