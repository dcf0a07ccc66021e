"""A minimal asyncio PostgreSQL v3 client for the benchmark: startup, SCRAM-SHA-256 (and md5 or
cleartext if asked), simple queries, and errors with their SQLSTATE and HINT.

It exists so the harness can open thousands of idle connections, or flood a server with
connection attempts, cheaply: the SCRAM salted password (PBKDF2) is computed once per
(password, salt, iterations) and cached, so each further login costs a few HMACs on the client.

Standard library only.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

PROTOCOL_3_0 = 196608


class PgError(Exception):
    """An ErrorResponse from the server (or a connection-level failure: sqlstate 'conn')."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        self.sqlstate = fields.get("C", "?????")
        self.severity = fields.get("V", fields.get("S", "ERROR"))
        self.message = fields.get("M", "")
        self.hint = fields.get("H")
        super().__init__(f"{self.severity} {self.sqlstate}: {self.message}")

    @classmethod
    def connection(cls, what: str) -> "PgError":
        return cls({"C": "conn", "V": "FATAL", "M": what})


def parse_error_fields(body: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        end = body.index(b"\0", pos + 1)
        fields[code] = body[pos + 1:end].decode("utf-8", "replace")
        pos = end + 1
    return fields


_SALTED_CACHE: dict[tuple[str, bytes, int], bytes] = {}


def _salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    key = (password, salt, iterations)
    cached = _SALTED_CACHE.get(key)
    if cached is None:
        cached = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        _SALTED_CACHE[key] = cached
    return cached


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


@dataclass
class Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    params: dict[str, str] = field(default_factory=dict)

    async def read_message(self) -> tuple[bytes, bytes]:
        header = await self.reader.readexactly(5)
        kind = header[:1]
        (length,) = struct.unpack("!I", header[1:])
        body = await self.reader.readexactly(length - 4) if length > 4 else b""
        return kind, body

    def send(self, kind: bytes, body: bytes) -> None:
        self.writer.write(kind + struct.pack("!I", len(body) + 4) + body)

    async def query(self, sql: str) -> list[tuple[bytes | None, ...]]:
        """Simple-query protocol; returns the rows of the last result (raw bytes per column).
        Raises PgError for an ErrorResponse (after the ReadyForQuery that follows it)."""
        self.send(b"Q", sql.encode() + b"\0")
        await self.writer.drain()
        rows: list[tuple[bytes | None, ...]] = []
        error: PgError | None = None
        while True:
            try:
                kind, body = await self.read_message()
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                raise PgError.connection(f"connection lost: {exc!r}") from None
            if kind == b"D":
                (ncols,) = struct.unpack("!H", body[:2])
                pos, row = 2, []
                for _ in range(ncols):
                    (n,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    if n < 0:
                        row.append(None)
                    else:
                        row.append(body[pos:pos + n])
                        pos += n
                rows.append(tuple(row))
            elif kind == b"T":
                rows = []
            elif kind == b"E":
                error = PgError(parse_error_fields(body))
                if error.severity == "FATAL":
                    raise error
            elif kind == b"Z":
                if error:
                    raise error
                return rows
            # C (CommandComplete), N (notice), S (ParameterStatus), I (empty): ignored

    def close(self) -> None:
        """Sends Terminate and closes the socket without waiting."""
        try:
            self.send(b"X", b"")
        except Exception:
            pass
        try:
            self.writer.close()
        except Exception:
            pass


async def connect(host: str, port: int, user: str, password: str, database: str,
                  application_name: str | None = None, timeout: float = 30.0) -> Conn:
    """Opens and authenticates a connection; raises PgError (sqlstate from the server, or 'conn'
    for a socket-level failure) or asyncio.TimeoutError."""
    return await asyncio.wait_for(
        _connect(host, port, user, password, database, application_name), timeout)


async def _connect(host: str, port: int, user: str, password: str, database: str,
                   application_name: str | None) -> Conn:
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    except OSError as exc:
        raise PgError.connection(f"connect failed: {exc}") from None
    conn = Conn(reader, writer)
    try:
        params = [("user", user), ("database", database)]
        if application_name:
            params.append(("application_name", application_name))
        payload = struct.pack("!I", PROTOCOL_3_0)
        payload += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params) + b"\0"
        writer.write(struct.pack("!I", len(payload) + 4) + payload)
        await writer.drain()
        client_nonce = base64.b64encode(os.urandom(18)).decode()
        client_first_bare = f"n=,r={client_nonce}"
        expected_server_sig = b""
        while True:
            kind, body = await conn.read_message()
            if kind == b"E":
                raise PgError(parse_error_fields(body))
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code == 0:
                    continue
                if code == 3:  # cleartext
                    conn.send(b"p", password.encode() + b"\0")
                elif code == 5:  # md5
                    salt = body[4:8]
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    conn.send(b"p", b"md5" + outer.encode() + b"\0")
                elif code == 10:  # SASL: choose SCRAM-SHA-256
                    mechs = body[4:].split(b"\0")
                    if b"SCRAM-SHA-256" not in mechs:
                        raise PgError.connection(f"no SCRAM-SHA-256 in {mechs!r}")
                    first = ("n,," + client_first_bare).encode()
                    conn.send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
                elif code == 11:  # SASLContinue: server-first-message
                    server_first = body[4:].decode()
                    attrs = dict(item.split("=", 1) for item in server_first.split(","))
                    nonce, salt, iters = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
                    if not nonce.startswith(client_nonce):
                        raise PgError.connection("SCRAM nonce mismatch")
                    salted = _salted_password(password, salt, iters)
                    client_key = _hmac(salted, b"Client Key")
                    stored_key = hashlib.sha256(client_key).digest()
                    final_wo_proof = f"c=biws,r={nonce}"
                    auth_message = f"{client_first_bare},{server_first},{final_wo_proof}".encode()
                    signature = _hmac(stored_key, auth_message)
                    proof = bytes(a ^ b for a, b in zip(client_key, signature))
                    server_key = _hmac(salted, b"Server Key")
                    expected_server_sig = _hmac(server_key, auth_message)
                    final = f"{final_wo_proof},p={base64.b64encode(proof).decode()}"
                    conn.send(b"p", final.encode())
                elif code == 12:  # SASLFinal
                    attrs = dict(item.split("=", 1) for item in body[4:].decode().split(","))
                    if base64.b64decode(attrs.get("v", "")) != expected_server_sig:
                        raise PgError.connection("SCRAM server signature mismatch")
                    continue
                else:
                    raise PgError.connection(f"unsupported authentication request {code}")
                await writer.drain()
            elif kind == b"S":
                k, v, _ = body.split(b"\0", 2)
                conn.params[k.decode()] = v.decode()
            elif kind == b"Z":
                return conn
            # K (BackendKeyData), N (notice), v (NegotiateProtocolVersion): ignored
    except asyncio.IncompleteReadError:
        conn.close()
        raise PgError.connection("connection closed during startup") from None
    except ConnectionError as exc:
        conn.close()
        raise PgError.connection(f"connection error during startup: {exc!r}") from None
    except BaseException:
        conn.close()
        raise
