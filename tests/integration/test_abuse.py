"""One misbehaving client against everyone else (issue 12): what it can make Sluice hold, and what
it can reach of other clients' prepared statements, in transaction pooling.

Each test names the finding it guards. The process's resident memory is read from
/proc/PID/status (VmRSS) before and after the abuse; bounds are generous multiples of what the
abuse would cost if Sluice bounded nothing, so they fail on a leak, not on noise.
"""

import os
import socket
import struct
import time
from pathlib import Path

import psycopg
import pytest

import pgwire
from conftest import TARGET
from pgwire import message

POOL_SIZE = 2
TX = {"databases": {"app": {"pool_mode": "transaction", "pool_size": POOL_SIZE}},
      "query_wait_timeout": "10s"}

pytestmark = [pytest.mark.sluice_config(config=TX), pytest.mark.targets("sluice"),
              pytest.mark.sluice_threads(2)]


def rss_kib(pooler) -> int:
    for line in Path(f"/proc/{pooler.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def assert_grew_less(pooler, grown_kib: int, bound_kib: int) -> None:
    """Memory bounds apply to the plain build only: ASan's quarantine and redzones and TSan's
    shadow memory grow with every allocation. Under a sanitizer the rest of each test still runs
    (tests/run.sh checks the bounds in the plain build)."""
    if pooler.sanitizer() is None:
        assert grown_kib < bound_kib, f"grew {grown_kib} KiB, bound {bound_kib} KiB"


def raw(target):
    return pgwire.connect(target.host, target.port, "alice", "app", "alice-secret")


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def parse(name: str, sql: str) -> bytes:
    return message(b"P", cstr(name) + cstr(sql) + struct.pack("!H", 0))


def bind(statement: str) -> bytes:
    return message(b"B", cstr("") + cstr(statement) + struct.pack("!HHH", 0, 0, 0))


SYNC = message(b"S")


def read_until_ready(client):
    """The messages up to ReadyForQuery: [(type, body)], errors as their fields."""
    out = []
    while True:
        kind, body = client.read_message()
        if kind == b"E":
            out.append((kind, pgwire.parse_error_fields(body)))
        else:
            out.append((kind, body))
        if kind == b"Z":
            return out


def errors(messages):
    return [fields for kind, fields in messages if kind == b"E"]


# ---- item 2: bounded per-client statement state -----------------------------------------------


@pytest.mark.timeout(120)
def test_one_client_cannot_grow_the_process_with_prepared_statements(sluice):
    """A client preparing thousands of distinct statements outside a transaction (each answered
    without a backend) is refused past max_client_statements with 53400 naming the setting, and
    the process does not grow with what it sends; other clients are served throughout."""
    body = "x" * 4000
    with raw(sluice) as abuser, raw(sluice) as other:
        before = rss_kib(sluice)
        refused = []
        for i in range(3000):
            abuser.send(parse(f"s{i}", f"SELECT '{body}', {i}") + SYNC)
            refused += errors(read_until_ready(abuser))
            if i % 500 == 0:
                assert other.query("SELECT 1") == [["1"]]
        grown = rss_kib(sluice) - before
        assert refused, "nothing was refused"
        assert {e["C"] for e in refused} == {"53400"}, refused[:3]
        assert "max_client_statements" in refused[0]["M"]
        assert len(refused) == 3000 - 2000  # the default max_client_statements
        # 3000 x 4 kB unbounded would be about 12 MB; 2000 kept, about 8 MB.
        assert_grew_less(sluice, grown, 11 * 1024)
        # The connection stays usable, and closing statements makes room.
        abuser.send(message(b"C", b"S" + cstr("s0")) + SYNC)
        assert errors(read_until_ready(abuser)) == []
        abuser.send(parse("again", "SELECT 2") + bind("again") + message(b"E", cstr("") + b"\0\0\0\0")
                    + SYNC)
        assert errors(read_until_ready(abuser)) == []


@pytest.mark.timeout(120)
def test_identical_statements_of_many_clients_are_held_once(sluice):
    """Clients preparing the same large statement share one copy of it."""
    sql = "SELECT '" + "y" * (256 * 1024) + "'"
    clients = [raw(sluice) for _ in range(60)]
    try:
        before = rss_kib(sluice)
        for c in clients:
            c.send(parse("big", sql) + SYNC)
            assert errors(read_until_ready(c)) == []
        grown = rss_kib(sluice) - before
        # 60 private copies would be 15 MB.
        assert_grew_less(sluice, grown, 7 * 1024)
        # And they work.
        clients[0].send(bind("big") + message(b"E", cstr("") + b"\0\0\0\0") + SYNC)
        assert errors(read_until_ready(clients[0])) == []
    finally:
        for c in clients:
            c.close()


# ---- item 4: another client's statements cannot be reached ------------------------------------


def backend_statement_names(target):
    """The backend names of the statements on the backend a transaction gets."""
    with psycopg.connect(target.conninfo(), autocommit=True, prepare_threshold=None) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM pg_prepared_statements")]


@pytest.mark.timeout(60)
def test_a_client_cannot_bind_execute_or_drop_another_clients_statement(sluice):
    with raw(sluice) as victim:
        victim.send(parse("v", "SELECT 42") + bind("v") + message(b"E", cstr("") + b"\0\0\0\0")
                    + SYNC)
        assert errors(read_until_ready(victim)) == []
        names = [n for n in backend_statement_names(sluice) if n.startswith("sluice_")]
        assert names, "the victim's statement is not on the backend"
        theirs = names[0]
        with raw(sluice) as attacker:
            attacker.send(bind(theirs) + message(b"E", cstr("") + b"\0\0\0\0") + SYNC)
            got = errors(read_until_ready(attacker))
            assert [e["C"] for e in got] == ["26000"], got
            for sql in (f"EXECUTE {theirs}", f"DEALLOCATE {theirs}", f"SELECT 1; DEALLOCATE {theirs}"):
                with pytest.raises(pgwire.ServerError) as e:
                    attacker.query(sql)
                assert e.value.sqlstate == "26000", sql
            assert attacker.query("SELECT 1") == [["1"]]  # still usable
        # The victim's statement still works.
        victim.send(bind("v") + message(b"E", cstr("") + b"\0\0\0\0") + SYNC)
        assert errors(read_until_ready(victim)) == []


@pytest.mark.timeout(60)
def test_backend_statement_names_differ_from_process_to_process(pg, start_sluice):
    """Names are keyed per process: knowing a statement's text does not give its name."""
    seen = []
    for _ in range(2):
        sluice = start_sluice(config=TX)
        with raw(sluice) as c:
            c.send(parse("s", "SELECT 4242") + bind("s") + message(b"E", cstr("") + b"\0\0\0\0")
                   + SYNC)
            assert errors(read_until_ready(c)) == []
        seen.append(sorted(n for n in backend_statement_names(sluice) if n.startswith("sluice_")))
    assert seen[0] and seen[1] and set(seen[0]).isdisjoint(seen[1]), seen


@pytest.mark.timeout(60)
def test_sql_too_long_to_inspect_pins_instead_of_passing_unchecked(sluice):
    """Past the first 1 MiB of a Query nothing is inspected: a LISTEN there must not land on a
    shared backend."""
    with raw(sluice) as c:
        c.query("SELECT 1 /*" + "z" * (1100 * 1024) + "*/; LISTEN big_channel")
    assert "client_pinned" in sluice.log()


# ---- item 7: buffering amplification ----------------------------------------------------------


def proc_kib(pooler, field: str) -> int:
    for line in Path(f"/proc/{pooler.proc.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


@pytest.mark.timeout(60)
def test_declared_lengths_alone_allocate_nothing_large(sluice):
    """Clients that send the header of a large Query and then nothing make Sluice reserve room
    for what they sent, not for what they declared."""
    clients = [raw(sluice) for _ in range(90)]  # max_client_conn is 100
    try:
        before = proc_kib(sluice, "VmData")
        for c in clients:
            c.send(b"Q" + struct.pack("!I", 1024 * 1024) + b"SELECT ")
        assert raw(sluice).query("SELECT 1") == [["1"]]  # everyone has been read by now
        grown = proc_kib(sluice, "VmData") - before
        # 90 declared MiB would be 90 MiB; a chunk each is about 3 MiB.
        assert_grew_less(sluice, grown, 30 * 1024)
    finally:
        for c in clients:
            c.close()


class HostileServer:
    """Speaks just enough of the server side of the protocol: trust login, then CommandComplete
    for every Query, except `SELECT huge_error`, answered with an ErrorResponse of `size` bytes."""

    def __init__(self, size: int):
        import socket
        import threading
        self.size = size
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        import threading
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        def read_exact(n):
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise EOFError
                data += chunk
            return data
        try:
            (length,) = struct.unpack("!I", read_exact(4))
            read_exact(length - 4)  # the startup packet
            out = message(b"R", struct.pack("!I", 0))
            for k, v in (("server_version", "15.0"), ("server_encoding", "UTF8"),
                         ("client_encoding", "UTF8"), ("DateStyle", "ISO, MDY"),
                         ("TimeZone", "UTC"), ("integer_datetimes", "on"),
                         ("standard_conforming_strings", "on"), ("IntervalStyle", "postgres"),
                         ("application_name", ""), ("is_superuser", "off"),
                         ("session_authorization", "alice"),
                         ("default_transaction_read_only", "off"), ("in_hot_standby", "off")):
                out += message(b"S", cstr(k) + cstr(v))
            out += message(b"K", struct.pack("!II", 4242, 1)) + message(b"Z", b"I")
            conn.sendall(out)
            while True:
                kind = read_exact(1)
                (length,) = struct.unpack("!I", read_exact(4))
                body = read_exact(length - 4)
                if kind == b"X":
                    return
                if kind == b"Q" and b"huge_error" in body:
                    text = b"M" + b"e" * self.size + b"\0"
                    conn.sendall(message(b"E", b"SERROR\0CXX000\0" + text + b"\0")
                                 + message(b"Z", b"I"))
                elif kind == b"Q":
                    conn.sendall(message(b"C", cstr("SELECT 0")) + message(b"Z", b"I"))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def close(self):
        self.listener.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_a_huge_error_from_the_server_is_streamed_not_held(start_sluice, mode):
    server = HostileServer(8 * 1024 * 1024)
    try:
        sluice = start_sluice(config={
            "servers": {"hostile": {"host": "127.0.0.1", "port": server.port}},
            "databases": {"hostile": {"server": "hostile", "dbname": "x", "pool_mode": mode,
                                      "pool_size": 1}}})
        with pgwire.connect(sluice.host, sluice.port, "alice", "hostile", "alice-secret") as c:
            before = proc_kib(sluice, "VmHWM")
            with pytest.raises(pgwire.ServerError) as e:
                c.query("SELECT huge_error", timeout=30)
            assert e.value.sqlstate == "XX000"
            assert c.query("SELECT 1") == []  # the connection goes on
            peak = proc_kib(sluice, "VmHWM") - before
        # Held whole, the 8 MiB message would raise the peak by at least that much.
        assert_grew_less(sluice, peak, 4 * 1024)
    finally:
        server.close()


# ---- item 8: a hostile server cannot stall an event loop ---------------------------------------


class SlowScramServer:
    """Asks for SCRAM-SHA-256 with `iterations` PBKDF2 rounds, then waits for the client's final
    message (recording that it came) and ends the login with an error."""

    def __init__(self, iterations: int):
        import base64
        import socket
        import threading
        self.iterations = iterations
        self.salt = base64.b64encode(b"0123456789abcdef").decode()
        self.continue_sent = threading.Event()
        self.final_received = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            f = conn.makefile("rb")
            try:
                (length,) = struct.unpack("!I", f.read(4))
                f.read(length - 4)  # startup packet
                conn.sendall(message(b"R", struct.pack("!I", 10) + cstr("SCRAM-SHA-256") + b"\0"))
                assert f.read(1) == b"p"
                (length,) = struct.unpack("!I", f.read(4))
                body = f.read(length - 4)
                first = body.split(b"\0", 1)[1][4:].decode()  # after the mechanism and length
                nonce = first.split("r=", 1)[1]
                server_first = f"r={nonce}server,s={self.salt},i={self.iterations}"
                conn.sendall(message(b"R", struct.pack("!I", 11) + server_first.encode()))
                self.continue_sent.set()
                if f.read(1) == b"p":
                    self.final_received.set()
                conn.sendall(message(b"E", b"SFATAL\0C28P01\0Mno\0\0"))
            except (OSError, AssertionError, struct.error, IndexError):
                pass

    def close(self):
        self.listener.close()


@pytest.mark.timeout(120)
def test_a_servers_costly_scram_does_not_stall_other_clients(start_sluice):
    """PBKDF2 with 10 million iterations (the most Sluice accepts from a server) takes seconds.
    With one event loop, another client's query must be answered while it runs, not after."""
    import threading
    server = SlowScramServer(10_000_000)
    try:
        sluice = start_sluice(config={
            "threads": 1, "client_login_timeout": "60s",
            "servers": {"hostile": {"host": "127.0.0.1", "port": server.port,
                                    "connect_timeout": "60s"}},
            "databases": {"hostile": {"server": "hostile", "dbname": "x", "pool_mode": "session",
                                      "pool_size": 1}}})

        def victim_login():
            try:
                pgwire.connect(sluice.host, sluice.port, "alice", "hostile", "alice-secret",
                               timeout=60).close()
            except Exception:  # noqa: BLE001 - the login is meant to fail
                pass

        hostile = threading.Thread(target=victim_login, daemon=True)
        hostile.start()
        assert server.continue_sent.wait(30)
        with raw(sluice) as other:
            assert other.query("SELECT 1") == [["1"]]
            answered_first = not server.final_received.is_set()
        hostile.join(60)
        assert server.final_received.is_set(), "the costly exchange never finished"
        assert answered_first, "the other client waited for the server's PBKDF2"
    finally:
        server.close()


# ---- item 5: work done before authentication --------------------------------------------------


def fd_count(pooler) -> int:
    return len(os.listdir(f"/proc/{pooler.proc.pid}/fd"))


def client_from(source: str, target, timeout=10) -> pgwire.WireClient:
    """A connection from `source` (any 127/8 address is this machine's loopback)."""
    return pgwire.WireClient(target.host, target.port, timeout, source_address=(source, 0))


def logs_in_from(source: str, target, **params) -> bool:
    try:
        with client_from(source, target) as c:
            c.startup("alice", "app", "alice-secret", **params)
            return c.query("SELECT 1") == [["1"]]
    except (pgwire.ServerError, pgwire.ConnectionClosed, OSError):
        return False


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not (ok := predicate()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return ok


def refusal_from(source: str, target) -> dict[str, str]:
    """The ErrorResponse fields a startup packet from `source` gets (AssertionError if none)."""
    with client_from(source, target) as c:
        c.send(pgwire.startup_packet("alice", "app"))
        kind, body = c.read_message()
        assert kind == b"E", (kind, body)
        return pgwire.parse_error_fields(body)


@pytest.mark.timeout(120)
def test_silent_sockets_beyond_max_client_conn_hold_only_a_bounded_number_of_descriptors(
        start_sluice):
    """200 connections that never send a byte, with max_client_conn = 20: Sluice accepts at most
    20 + 16 of them (the rest wait in the kernel's backlog) instead of a descriptor each, and once
    they go, a real client logs in."""
    sluice = start_sluice(config={"max_client_conn": 20, "client_login_timeout": "5s"})
    before = fd_count(sluice)
    silent = []
    try:
        for _ in range(200):
            silent.append(socket.create_connection((sluice.host, sluice.port), timeout=10))
        peak = 0
        for _ in range(15):  # what Sluice holds while they stay silent
            peak = max(peak, fd_count(sluice) - before)
            time.sleep(0.1)
        assert peak <= 20 + 16 + 4, f"{peak} more descriptors for 200 silent sockets"
        assert "accept_paused" in sluice.log()
    finally:
        for s in silent:
            s.close()
    assert wait_until(lambda: logs_in_from("127.0.0.1", sluice), timeout=30)


@pytest.mark.timeout(60)
def test_connections_count_from_accept_and_an_operator_gets_in_at_the_limit(start_sluice):
    """Five silent sockets fill max_client_conn = 5: the next client is refused with 53300 before
    it authenticates, while the admin console still answers (the allowance beyond the limit)."""
    from admin_console import USERS, Admin
    sluice = start_sluice(config={"max_client_conn": 5, "client_login_timeout": "30s"},
                          users=USERS)
    silent = [socket.create_connection((sluice.host, sluice.port), timeout=10) for _ in range(5)]
    try:
        refused = refusal_from("127.0.0.1", sluice)
        assert refused["C"] == "53300", refused
        assert "max_client_conn" in refused["M"], refused
        admin = Admin(sluice)
        try:
            assert admin.query("SHOW VERSION")[1], "the console answered nothing"
        finally:
            admin.close()
    finally:
        for s in silent:
            s.close()
    assert wait_until(lambda: logs_in_from("127.0.0.1", sluice), timeout=30)


@pytest.mark.timeout(60)
def test_logins_in_progress_are_limited_per_peer(start_sluice):
    """With max_peer_logins = 5, a sixth connection from a peer with five logins in progress is
    refused at once (53300 naming the setting, also as libpq reports it), holding no descriptor;
    another peer, and the same peer once its logins end, log in as usual."""
    sluice = start_sluice(config={"max_peer_logins": 5, "client_login_timeout": "30s"})
    silent = [client_from("127.0.0.1", sluice) for _ in range(5)]
    try:
        refused = refusal_from("127.0.0.1", sluice)
        assert refused["C"] == "53300", refused
        assert "max_peer_logins" in refused["M"], refused
        with pytest.raises(psycopg.OperationalError, match="max_peer_logins"):
            psycopg.connect(sluice.conninfo(), connect_timeout=10).close()
        before = fd_count(sluice)
        more = [client_from("127.0.0.1", sluice) for _ in range(100)]
        try:
            for c in more:  # each is answered and closed at once
                assert c.read_message()[0] == b"E"
            assert fd_count(sluice) - before <= 4
        finally:
            for c in more:
                c.close()
        assert logs_in_from("127.0.0.2", sluice)  # another peer is not affected
        # Authenticated clients do not count: five of them leave room for logins.
        with client_from("127.0.0.2", sluice):
            pass
    finally:
        for c in silent:
            c.close()
    assert wait_until(lambda: logs_in_from("127.0.0.1", sluice), timeout=30)
    held = []
    try:
        for _ in range(6):
            c = client_from("127.0.0.1", sluice)
            held.append(c)
            c.startup("alice", "app", "alice-secret")
        assert held[-1].query("SELECT 1") == [["1"]]
    finally:
        for c in held:
            c.close()


@pytest.mark.timeout(60)
def test_new_connections_are_rate_limited_per_peer(start_sluice):
    """With login_peer_rate = 2 (bursts of 2), a peer opening connections back to back gets at
    most 2 + 2 a second through; the rest are refused naming the setting; another peer is not
    affected."""
    sluice = start_sluice(config={"login_peer_rate": 2})
    started = time.monotonic()
    refused = []
    for _ in range(12):
        with client_from("127.0.0.3", sluice) as c:
            c.send(pgwire.startup_packet("alice", "app"))
            kind, body = c.read_message()
            if kind == b"E":
                fields = pgwire.parse_error_fields(body)
                assert fields["C"] == "53300" and "login_peer_rate" in fields["M"], fields
                refused.append(fields)
    elapsed = time.monotonic() - started
    admitted = 12 - len(refused)
    assert admitted <= 2 + 2 * elapsed + 1, (admitted, elapsed)
    assert logs_in_from("127.0.0.4", sluice)


CRITICAL = [{"name": "critical", "priority": 0, "max_clients": 2,
             "new_connections_per_second": 1, "new_connections_burst": 2,
             "match": {"application_name": ["critical"]}}]


@pytest.mark.timeout(60)
def test_clients_that_only_claim_a_bulkhead_do_not_spend_its_budget(start_sluice):
    """Connections that claim application_name=critical but never authenticate (silent after the
    password request, or with a wrong password) take none of critical's max_clients nor of its
    connection rate: a real critical client still gets in, and is then counted."""
    sluice = start_sluice(config={"bulkheads": CRITICAL})
    claimers = []
    try:
        for _ in range(6):
            c = client_from("127.0.0.5", sluice)
            claimers.append(c)
            c.send(pgwire.startup_packet("alice", "app", application_name="critical"))
            assert c.read_message()[0] == b"R"  # asked to authenticate, and left there
        for _ in range(3):
            with client_from("127.0.0.5", sluice) as c:
                with pytest.raises(pgwire.ServerError) as e:
                    c.startup("alice", "app", "wrong", application_name="critical")
                assert e.value.sqlstate == "28P01"
        assert logs_in_from("127.0.0.6", sluice, application_name="critical")
    finally:
        for c in claimers:
            c.close()
    # Authenticated critical clients are counted: max_clients = 2.
    with client_from("127.0.0.6", sluice) as a, client_from("127.0.0.6", sluice) as b:
        a.startup("alice", "app", "alice-secret", application_name="critical")
        with pytest.raises(pgwire.ServerError) as e:
            b.startup("alice", "app", "alice-secret", application_name="critical")
        assert e.value.sqlstate == "53300"


@pytest.mark.timeout(150)
def test_a_silent_socket_is_closed_even_with_client_login_timeout_0(start_sluice):
    """client_login_timeout = "0" means 60 s: a connection that never sends its startup packet
    does not hold a descriptor for ever."""
    sluice = start_sluice(config={"client_login_timeout": "0"})
    with socket.create_connection((sluice.host, sluice.port), timeout=90) as s:
        started = time.monotonic()
        try:
            assert s.recv(1) == b""
        except ConnectionResetError:
            pass
        assert time.monotonic() - started >= 50


# ---- item 12: pools made for claimed user names are reaped -------------------------------------


def pool_names(admin) -> set:
    return {(r["database"], r["user"]) for r in admin.table("SHOW POOLS")}


def wait_for_pool_names(admin, expected: set, timeout: float = 15.0) -> set:
    """SHOW POOLS until its (database, user) set is `expected`, for at most `timeout` seconds;
    returns the last set seen."""
    deadline = time.monotonic() + timeout
    while True:
        names = pool_names(admin)
        if names == expected or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def claim_names(target, names) -> None:
    """Logs in as each name under trust; PostgreSQL has no such role and refuses every one."""
    for name in names:
        with pytest.raises(pgwire.ServerError) as refused:
            pgwire.connect(target.host, target.port, name, "app", None).close()
        assert refused.value.sqlstate == "28000", refused.value


def bytes_received_total(port: int) -> float:
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "sluice_client_bytes_received_total":
                return s.value
    raise AssertionError("no sluice_client_bytes_received_total")


@pytest.mark.timeout(120)
def test_pools_of_claimed_user_names_are_reaped_once_idle(pg, start_sluice):
    """Under auth_type = "trust" every user name a client claims makes a (database, user) pool.
    Two rounds of 150 names leave nothing behind once pool_idle_timeout has passed, and the
    process does not grow with them; a pool still held, and the one pool of a database with a
    fixed user, stay. A reaped pool is made again on its next use, SHOW STATS and SHOW POOLS
    agree after a reap, and the process's traffic totals in /metrics never go backwards."""
    import pgcluster
    from admin_console import Admin
    names = 150
    metrics_port = pgcluster.free_port()
    pg.execute("DROP ROLE IF EXISTS carol")
    pg.execute("CREATE ROLE carol LOGIN")
    pg.execute("GRANT CONNECT ON DATABASE app TO carol")
    sluice = start_sluice(config={
        "auth_type": "trust", "pool_idle_timeout": "1s",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        # Over the Unix socket PostgreSQL trusts every role: the backends of carol log in.
        "servers": {"main": {"host": str(pg.socket_dir), "port": pg.port}},
        "databases": {
            "app": {"pool_mode": "transaction", "server_idle_timeout": "1s"},
            "fixed": {"server": "main", "dbname": "app", "user": "alice",
                      "pool_mode": "transaction", "server_idle_timeout": "1s"}}})
    admin = Admin(sluice)
    kept = {("app", "alice"), ("fixed", "alice")}
    with pgwire.connect(sluice.host, sluice.port, "alice", "app", None) as holder, \
            pgwire.connect(sluice.host, sluice.port, "someone", "fixed", None) as fixed:
        assert holder.query("SELECT 1") == [["1"]]
        assert fixed.query("SELECT current_user") == [["alice"]]
    holder = pgwire.connect(sluice.host, sluice.port, "alice", "app", None)  # held throughout
    with pgwire.connect(sluice.host, sluice.port, "carol", "app", None) as carol:
        assert carol.query("SELECT current_user") == [["carol"]]
    stats = {(r["database"], r["user"]): r for r in admin.table("SHOW STATS")}
    assert int(stats[("app", "carol")]["total_query_count"]) >= 1

    claim_names(sluice, [f"ghost_a{i}" for i in range(names)])
    # Each name made a pool (the latest are still there: a pool lives pool_idle_timeout at least).
    assert ("app", f"ghost_a{names - 1}") in pool_names(admin)
    traffic = bytes_received_total(metrics_port)
    assert wait_for_pool_names(admin, kept) == kept  # carol's went once its backend closed
    assert {(r["database"], r["user"]) for r in admin.table("SHOW STATS")} == kept
    assert bytes_received_total(metrics_port) >= traffic
    rss_after_first = rss_kib(sluice)

    claim_names(sluice, [f"ghost_b{i}" for i in range(names)])
    assert wait_for_pool_names(admin, kept) == kept
    # Every pool of the second round reused the ids the first round's left: nothing grew.
    assert_grew_less(sluice, rss_kib(sluice) - rss_after_first, 8 * 1024)

    # Made again, transparently, on next use.
    with pgwire.connect(sluice.host, sluice.port, "carol", "app", None) as carol:
        assert carol.query("SELECT current_user") == [["carol"]]
    assert ("app", "carol") in pool_names(admin)
    assert holder.query("SELECT 2") == [["2"]]
    holder.close()
    admin.close()
