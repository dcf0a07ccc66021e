"""TLS towards clients (client_tls_mode) with real clients: libpq's sslmode through psycopg and
pgbench, asyncpg with an SSL context, and raw sockets for what a hostile client may send.

The module makes a self-signed certificate for localhost / 127.0.0.1 (and a second one, for the
reload test) with Debian's openssl command. Sluice terminates TLS and relays plaintext to
PostgreSQL, which itself has no TLS here.
"""

import asyncio
import csv
import io
import hashlib
import socket
import ssl
import struct
import subprocess
import threading
import time

import psycopg
import pytest

import pgwire
from admin_console import USERS
from concurrency import run_threads
from pgcluster import clean_env

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

SSL_REQUEST = struct.pack("!II", 8, 80877103)


def make_certificate(directory, name):
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return cert, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    return {name: make_certificate(directory, name) for name in ("first", "second")}


def tls_config(certs, mode, name="first", **extra):
    cert, key = certs[name]
    return {"client_tls_mode": mode, "client_tls_cert_file": str(cert),
            "client_tls_key_file": str(key),
            "databases": {"app": {"pool_mode": "transaction", "pool_size": 2}}, **extra}


def verified(sluice, cert, **extra):
    """conninfo that checks Sluice's certificate against `cert` and the host name localhost."""
    return sluice.conninfo(sslmode="verify-full", sslrootcert=str(cert), host="localhost",
                           hostaddr="127.0.0.1", **extra)


def test_prefer_serves_tls_and_plaintext_clients(start_sluice, certs):
    sluice = start_sluice(config=tls_config(certs, "prefer"))
    with psycopg.connect(verified(sluice, certs["first"][0]), autocommit=True) as conn:
        assert conn.pgconn.ssl_in_use
        # Larger than one TLS record and than the bridge's buffers, both ways.
        payload = "".join(chr(0x41 + i % 26) for i in range(3_000_000))
        digest, length = conn.execute("SELECT md5(%s), length(%s)", (payload, payload)).fetchone()
        assert (digest, length) == (hashlib.md5(payload.encode()).hexdigest(), len(payload))
        (big,) = conn.execute("SELECT repeat('xyz', 1000000)").fetchone()
        assert big == "xyz" * 1000000
    with psycopg.connect(sluice.conninfo(sslmode="disable"), autocommit=True) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # A certificate the client does not trust fails the handshake on the client's side.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(verified(sluice, certs["second"][0]))
    assert sluice.running()


def test_tls_clients_share_backends_in_transaction_mode(start_sluice, certs):
    sluice = start_sluice(config=tls_config(certs, "require"))
    pids = set()
    lock = threading.Lock()

    def client(i):
        with psycopg.connect(sluice.conninfo(sslmode="require"), autocommit=True) as conn:
            assert conn.pgconn.ssl_in_use
            for k in range(30):
                with conn.transaction():
                    (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()
                    assert conn.execute("SELECT %s::int * 2", (i,)).fetchone() == (i * 2,)
                with lock:
                    pids.add(pid)

    assert run_threads([lambda i=i: client(i) for i in range(8)], timeout=90) == []
    assert 1 <= len(pids) <= 2  # 8 TLS clients over pool_size 2


def test_tls_clients_log_in_to_a_busy_session_pool(start_sluice, certs):
    # Session mode logs in without a backend (issue 13): the second TLS client is welcomed while
    # the only backend is held, and gets it at its first query once the holder leaves.
    sluice = start_sluice(config=tls_config(
        certs, "require", databases={"app": {"pool_mode": "session", "pool_size": 1}}))
    holder = psycopg.connect(sluice.conninfo(sslmode="require"), autocommit=True)
    (pid,) = holder.execute("SELECT pg_backend_pid()").fetchone()
    with psycopg.connect(sluice.conninfo(sslmode="require", connect_timeout=5,
                                         application_name="second"), autocommit=True) as second:
        assert second.pgconn.ssl_in_use
        assert second.info.parameter_status("application_name") == "second"
        threading.Timer(0.3, holder.close).start()
        assert second.execute("SELECT pg_backend_pid(), current_setting('application_name')"
                              ).fetchone() == (pid, "second")


def test_pgbench_over_tls(start_sluice, certs, tmp_path):
    sluice = start_sluice(config=tls_config(certs, "require"))
    script = tmp_path / "tx.sql"
    script.write_text("\\set v random(1, 1000)\nBEGIN;\nSELECT :v;\nSELECT :v + 1;\nEND;\n")
    result = subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", str(sluice.port), "-U", "alice", "-n", "-f",
         str(script), "-M", "extended", "-c", "8", "-j", "2", "-t", "100", "app"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        env=clean_env(PGPASSWORD="alice-secret", PGSSLMODE="require"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "number of transactions actually processed: 800/800" in result.stdout, result.stdout
    assert "number of failed transactions: 0" in result.stdout, result.stdout


def test_copy_and_cancel_over_tls(start_sluice, certs):
    sluice = start_sluice(config=tls_config(certs, "require",
                                            databases={"app": {"pool_mode": "session"}}))
    with psycopg.connect(sluice.conninfo(sslmode="require"), autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE t (n int, s text)")
        with conn.cursor().copy("COPY t FROM STDIN") as copy:
            for n in range(50_000):
                copy.write_row((n, "row %d" % n))
        assert conn.execute("SELECT count(*), sum(n) FROM t").fetchone() == (50_000,
                                                                            sum(range(50_000)))
        # libpq sends the cancel request on a new plaintext connection: allowed under require.
        canceller = threading.Timer(0.5, conn.cancel)
        canceller.start()
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
        finally:
            canceller.join(timeout=10)
        assert time.monotonic() - started < 20
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)


def test_asyncpg_with_an_ssl_context(start_sluice, certs):
    asyncpg = pytest.importorskip("asyncpg")
    sluice = start_sluice(config=tls_config(certs, "require"))
    context = ssl.create_default_context(cafile=str(certs["first"][0]))

    async def main():
        # The certificate names 127.0.0.1 too, which Python checks against the address.
        conn = await asyncpg.connect(host="127.0.0.1", port=sluice.port, user="alice",
                                     password="alice-secret", database="app", ssl=context)
        try:
            rows = [await conn.fetchval("SELECT $1::int + 1", i) for i in range(20)]
            async with conn.transaction():
                assert await conn.fetchval("SELECT count(*) FROM generate_series(1, $1)", 5) == 5
            return rows
        finally:
            await conn.close()

    assert asyncio.run(main()) == list(range(1, 21))


def test_require_refuses_plaintext_and_disable_answers_no(start_sluice, certs):
    sluice = start_sluice(config=tls_config(certs, "require"))
    err = pgwire.login_error(sluice.host, sluice.port, "alice", "app", "alice-secret")
    assert err.sqlstate == "28000" and err.fields["M"] == "SSL required", err.fields
    assert "sslmode=require" in err.fields.get("H", "")
    assert "reason=tls_required" in sluice.log()

    plain = start_sluice(config={"databases": {"app": {"pool_mode": "transaction"}}})
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(plain.conninfo(sslmode="require"))
    with psycopg.connect(plain.conninfo(sslmode="prefer"), autocommit=True) as conn:
        assert not conn.pgconn.ssl_in_use


def test_hostile_bytes_around_the_handshake(start_sluice, certs):
    sluice = start_sluice(config=tls_config(certs, "prefer", client_login_timeout="1s"))

    def exchange(data, wait_for_close=5.0):
        """Sends `data`, returns everything Sluice sends until it closes (or the wait ends)."""
        with socket.create_connection((sluice.host, sluice.port), timeout=5) as s:
            s.sendall(data)
            got = b""
            deadline = time.monotonic() + wait_for_close
            while time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    chunk = s.recv(4096)
                except (TimeoutError, socket.timeout):
                    return got, False
                except ConnectionResetError:
                    return got, True
                if not chunk:
                    return got, True
                got += chunk
            return got, False

    # Plaintext piggybacked on the SSLRequest could have been injected (CVE-2021-23222).
    got, closed = exchange(SSL_REQUEST + pgwire.startup_packet("alice", "app"))
    assert closed and got[:1] == b"E" and b"invalid startup packet sequence" in got
    # Silent after 'S': closed by client_login_timeout (1s).
    got, closed = exchange(SSL_REQUEST)
    assert got == b"S" and closed
    # Accepted, then plaintext instead of a ClientHello: the handshake fails and the connection
    # closes without a word of the PostgreSQL protocol (at most a TLS alert record, type 21).
    with socket.create_connection((sluice.host, sluice.port), timeout=5) as s:
        s.sendall(SSL_REQUEST)
        assert s.recv(1) == b"S"
        s.sendall(pgwire.startup_packet("alice", "app"))
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        assert got == b"" or got[0] == 21, got
    assert "tls_handshake_failed" in sluice.log()
    # A second SSLRequest inside TLS is a protocol violation, as in PostgreSQL.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((sluice.host, sluice.port), timeout=5) as raw:
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"S"
        with context.wrap_socket(raw) as tls:
            tls.sendall(SSL_REQUEST)
            reply = tls.recv(4096)
            assert reply[:1] == b"E" and b"invalid startup packet sequence" in reply
    with psycopg.connect(sluice.conninfo(sslmode="require"), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_bulkhead_by_address_and_admin_console_over_tls(start_sluice, certs):
    config = tls_config(
        certs, "require", admin_users=["sluice_admin"], stats_users=["sluice_stats"],
        bulkheads=[{"name": "local", "max": 2, "match": {"client_cidr": ["127.0.0.0/8"]}}])
    sluice = start_sluice(config=config, users=USERS)
    with psycopg.connect(sluice.conninfo(sslmode="require", application_name="tls-app"),
                         autocommit=True) as conn:
        conn.execute("SELECT 1")
        # psql speaks the simple protocol the console answers.
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(sluice.port), "-U", "sluice_admin", "-d",
             "sluice", "--csv", "-c", "SHOW CLIENTS"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
            env=clean_env(PGPASSWORD=USERS["sluice_admin"], PGSSLMODE="require"))
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        mine = [r for r in rows if r["application_name"] == "tls-app"]
        # The bulkhead was chosen by the client's address, which the TLS bridge hides from the
        # session's socket.
        assert len(mine) == 1 and mine[0]["bulkhead"] == "local", rows
        assert mine[0]["peer"].startswith("127.0.0.1:"), mine


def test_config_errors_and_reload_of_the_certificate(start_sluice, certs, tmp_path):
    sluice = start_sluice(config=tls_config(certs, "require"))
    binary = str(sluice.binary)

    def check(text):
        path = tmp_path / "check.toml"
        path.write_text(text)
        result = subprocess.run([binary, "--check-config", str(path)], capture_output=True,
                                text=True, timeout=30, stdin=subprocess.DEVNULL)
        return result.returncode, result.stderr

    base = '[servers.main]\nport = 5432\n[databases.app]\n'
    code, err = check('auth_type = "trust"\nclient_tls_mode = "require"\n' + base)
    assert code == 1
    assert 'check.toml:2: client_tls_cert_file: required unless client_tls_mode is "disable"' \
        in err, err
    assert "client_tls_key_file: required" in err, err
    code, err = check('auth_type = "trust"\nclient_tls_mode = "sometimes"\n' + base)
    assert code == 1 and "check.toml:2: client_tls_mode:" in err, err
    missing = tmp_path / "nowhere.crt"
    code, err = check(f'auth_type = "trust"\nclient_tls_mode = "prefer"\n'
                      f'client_tls_cert_file = "{missing}"\n'
                      f'client_tls_key_file = "{certs["first"][1]}"\n' + base)
    assert code == 1 and f"{missing}: client_tls_cert_file: cannot use it" in err, err
    code, err = check(f'auth_type = "trust"\nclient_tls_mode = "prefer"\n'
                      f'client_tls_cert_file = "{certs["first"][0]}"\n'
                      f'client_tls_key_file = "{certs["second"][1]}"\n' + base)
    assert code == 1 and "client_tls_key_file: does not match the certificate" in err, err

    # Reload: a broken certificate is rejected and the running one kept; a new one is used by
    # the connections that follow.
    first_cert, _ = certs["first"]
    second_cert, second_key = certs["second"]
    config_text = sluice.config_path.read_text()
    sluice.config_path.write_text(config_text.replace(str(first_cert), str(missing)))
    sluice.send_signal(1)  # SIGHUP
    deadline = time.monotonic() + 10
    while "reload_rejected" not in sluice.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "reload_rejected" in sluice.log()
    with psycopg.connect(verified(sluice, first_cert), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    sluice.config_path.write_text(config_text.replace(str(first_cert), str(second_cert))
                                  .replace(str(certs["first"][1]), str(second_key)))
    sluice.send_signal(1)
    deadline = time.monotonic() + 10
    while sluice.log().count("reload_done") < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    with psycopg.connect(verified(sluice, second_cert), autocommit=True) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    assert sluice.running()
