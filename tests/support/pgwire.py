"""A minimal PostgreSQL protocol 3.0 client over a raw socket, for exact assertions.

libpq (and so psycopg 3.1 and psql) does not expose the SQLSTATE of an error that ends a
connection attempt: psycopg's OperationalError has sqlstate None there. The tests need the exact
code (28P01, 3D000, 53300 before authentication, 57P01 on shutdown), so this client speaks the
protocol itself: startup, trust/cleartext/md5/SCRAM-SHA-256 authentication, simple queries, and
reading whatever the server sends. It also sends malformed bytes for the robustness tests.
Standard library only; every socket operation has a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3_0 = 196608


class ServerError(Exception):
    """An ErrorResponse from the server; `fields` maps field codes ('C', 'M', ...) to text."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__(f"{fields.get('S', '?')} {fields.get('C', '?')}: {fields.get('M', '')}")

    @property
    def sqlstate(self) -> str | None:
        return self.fields.get("C")

    @property
    def severity(self) -> str | None:
        return self.fields.get("V") or self.fields.get("S")


class ConnectionClosed(Exception):
    """The server closed the connection (EOF or reset) before sending what we waited for."""


def parse_error_fields(body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        end = body.index(b"\0", pos + 1)
        fields[code] = body[pos + 1:end].decode(errors="replace")
        pos = end + 1
    return fields


def startup_packet(user: str, database: str, **params: str) -> bytes:
    body = struct.pack("!I", PROTOCOL_3_0)
    for key, value in {"user": user, "database": database, **params}.items():
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


class WireClient:
    """One connection. Use connect() for the common "start up and authenticate" path."""

    def __init__(self, host: str, port: int, timeout: float = 10,
                 source_address: tuple[str, int] | None = None) -> None:
        """source_address binds the client's end first, e.g. ("127.0.0.2", 0): on Linux all of
        127/8 is loopback, so a test can play several peers."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=source_address)
        self.timeout = timeout
        self.buffer = b""
        self.parameters: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None
        self.notices: list[dict[str, str]] = []
        self.auth_requests: list[int] = []  # authentication codes the server asked for, in order

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "WireClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    # ---- reading ---------------------------------------------------------------------------

    def _fill(self, need: int, deadline: float) -> None:
        while len(self.buffer) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("timed out waiting for the server")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as e:
                raise ConnectionClosed(str(e)) from e
            except socket.timeout as e:
                raise TimeoutError("timed out waiting for the server") from e
            if not chunk:
                raise ConnectionClosed("server closed the connection")
            self.buffer += chunk

    def read_message(self, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Next (type byte, body). Raises ConnectionClosed on EOF, TimeoutError on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(5, deadline)
        kind = self.buffer[:1]
        (length,) = struct.unpack("!I", self.buffer[1:5])
        if length < 4 or length > 256 * 1024 * 1024:
            raise ValueError(f"implausible message length {length} for type {kind!r}")
        self._fill(1 + length, deadline)
        body = self.buffer[5:1 + length]
        self.buffer = self.buffer[1 + length:]
        return kind, body

    def expect(self, *kinds: bytes, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Reads past ParameterStatus/Notice/Notification to the next message; raises
        ServerError on ErrorResponse and AssertionError on a type not in `kinds`."""
        while True:
            kind, body = self.read_message(timeout)
            if kind == b"E":
                raise ServerError(parse_error_fields(body))
            if kind == b"S":
                key, value, _ = body.split(b"\0", 2)
                self.parameters[key.decode()] = value.decode()
            elif kind == b"K":
                self.backend_key = struct.unpack("!II", body)
                if b"K" in kinds:
                    return kind, body
            elif kind == b"N":
                self.notices.append(parse_error_fields(body))
            elif kind == b"A":
                pass
            elif kind in kinds:
                return kind, body
            else:
                raise AssertionError(f"unexpected message {kind!r} (wanted {kinds})")

    def read_until_closed(self, timeout: float = 10, limit: int = 1 << 20) -> list[tuple]:
        """Reads messages until the server closes; returns them. Bounded in time and bytes."""
        deadline = time.monotonic() + timeout
        messages: list[tuple] = []
        received = 0
        while True:
            try:
                kind, body = self.read_message(max(0.0, deadline - time.monotonic()))
            except ConnectionClosed:
                return messages
            received += 5 + len(body)
            messages.append((kind, body))
            if received > limit:
                raise AssertionError(f"server sent over {limit} bytes without closing")

    # ---- startup and authentication --------------------------------------------------------

    def startup(self, user: str, database: str, password: str | None = None,
                **params: str) -> None:
        """Sends the startup packet, authenticates, and reads up to the first ReadyForQuery.
        Raises ServerError with the server's fields on any ErrorResponse."""
        self.send(startup_packet(user, database, **params))
        while True:
            kind, body = self.expect(b"R")
            (code,) = struct.unpack("!I", body[:4])
            self.auth_requests.append(code)
            if code == 0:  # AuthenticationOk
                break
            if password is None:
                raise AssertionError(f"server asked for authentication {code} without password")
            if code == 3:  # cleartext
                self.send(message(b"p", password.encode() + b"\0"))
            elif code == 5:  # md5
                salt = body[4:8]
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + salt).hexdigest()
                self.send(message(b"p", b"md5" + outer.encode() + b"\0"))
            elif code == 10:  # SASL
                mechanisms = body[4:].split(b"\0")
                if b"SCRAM-SHA-256" not in mechanisms:
                    raise AssertionError(f"no SCRAM-SHA-256 among {mechanisms}")
                self._scram(password)
            else:
                raise AssertionError(f"unsupported authentication request {code}")
        self.expect(b"Z")

    def _scram(self, password: str) -> None:
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        kind, body = self.expect(b"R")
        if struct.unpack("!I", body[:4])[0] != 11:
            raise AssertionError("expected AuthenticationSASLContinue")
        server_first = body[4:].decode()
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        if not attrs["r"].startswith(nonce):
            raise AssertionError("server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = f"{final_bare},p={base64.b64encode(proof).decode()}"
        self.send(message(b"p", final.encode()))
        kind, body = self.expect(b"R")
        if struct.unpack("!I", body[:4])[0] != 12:
            raise AssertionError("expected AuthenticationSASLFinal")
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
        if body[4:].decode() != f"v={expected}":
            raise AssertionError("server signature does not verify")

    # ---- queries ---------------------------------------------------------------------------

    def query(self, sql: str, timeout: float | None = None) -> list[list[str | None]]:
        """Simple query; returns the rows of the last result as text. Raises ServerError
        (after reading up to ReadyForQuery, so the connection stays usable)."""
        self.send(message(b"Q", sql.encode() + b"\0"))
        rows: list[list[str | None]] = []
        error: ServerError | None = None
        while True:
            try:
                kind, body = self.expect(b"T", b"D", b"C", b"I", b"Z", timeout=timeout)
            except ServerError as e:
                error = e
                continue
            if kind == b"T":
                rows = []
            elif kind == b"D":
                rows.append(_data_row(body))
            elif kind == b"Z":
                if error:
                    raise error
                return rows


def _data_row(body: bytes) -> list[str | None]:
    (count,) = struct.unpack("!H", body[:2])
    pos, values = 2, []
    for _ in range(count):
        (length,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(body[pos:pos + length].decode())
            pos += length
    return values


def connect(host: str, port: int, user: str, database: str, password: str | None,
            timeout: float = 10, **params: str) -> WireClient:
    """Opens and authenticates a connection; on failure closes it and re-raises."""
    client = WireClient(host, port, timeout)
    try:
        client.startup(user, database, password, **params)
    except BaseException:
        client.close()
        raise
    return client


def login_error(host: str, port: int, user: str, database: str, password: str | None,
                timeout: float = 10) -> ServerError:
    """Attempts a login that must fail; returns the ServerError (AssertionError if it worked)."""
    try:
        client = connect(host, port, user, database, password, timeout)
    except ServerError as e:
        return e
    client.close()
    raise AssertionError(f"login as {user} to {database} unexpectedly succeeded")
