"""User enumeration (issue 12, item 13): before the password is checked, the pooler's answers must
not tell an unknown user from a known one, nor show how a known user's secret is stored.

For each auth_type and each kind of user (SCRAM verifier, md5 secret, plain password, unknown)
the test reads the server's first authentication message and, for SCRAM, the salt and iteration
count of server-first-message over two attempts and across a reload. Under scram-sha-256 every
user gets SCRAM with a 16-byte salt that never changes and PostgreSQL's 4096 iterations. Under
md5 a SCRAM verifier must get SCRAM and an md5 secret md5 (as in PostgreSQL); an unknown user
gets what most users of the auth file get.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import struct
import time
from pathlib import Path

import pytest

import pgwire
from pgcluster import md5_secret

pytestmark = [pytest.mark.targets("sluice")]

SASL, SASL_CONTINUE, MD5 = 10, 11, 5


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """A verifier in pg_authid's format, with a random 16-byte salt (as PostgreSQL makes them)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


USERS = {
    "sc_user": scram_verifier("sc-secret"),
    "m5_user": md5_secret("m5_user", "m5-secret"),
    "pl_user": "pl-secret",
}
KNOWN = list(USERS)
UNKNOWN = "nobody_here"


def first_auth(target, user: str) -> tuple:
    """The server's first authentication request for `user`: (MD5,) or (SASL, mechanisms, salt,
    iterations), the last two from the server-first-message answering our client-first."""
    with pgwire.WireClient(target.host, target.port) as client:
        client.send(pgwire.startup_packet(user, "app"))
        _, body = client.expect(b"R")
        (code,) = struct.unpack("!I", body[:4])
        if code != SASL:
            return (code,)
        mechanisms = tuple(m.decode() for m in body[4:].split(b"\0") if m)
        nonce = base64.b64encode(os.urandom(18)).decode()
        first = f"n,,n=,r={nonce}".encode()
        client.send(pgwire.message(
            b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        _, body = client.expect(b"R")
        assert struct.unpack("!I", body[:4])[0] == SASL_CONTINUE
        attrs = dict(part.split("=", 1) for part in body[4:].decode().split(","))
        assert attrs["r"].startswith(nonce)
        return (code, mechanisms, base64.b64decode(attrs["s"]), int(attrs["i"]))


def shape(auth: tuple) -> tuple:
    """What must not differ between users: the method and, for SCRAM, the mechanisms, the
    salt's length and the iteration count."""
    return auth if auth[0] != SASL else (auth[0], auth[1], len(auth[2]), auth[3])


def reload_and_wait(target) -> None:
    log = Path(target.log_file)
    done = log.read_text(errors="replace").count("reload_done")
    target.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while log.read_text(errors="replace").count("reload_done") <= done:
        assert time.monotonic() < deadline, "no reload_done in the log"
        time.sleep(0.05)
    target.signalled = False  # SIGHUP does not end it


def test_scram_shows_every_user_the_same_shape_and_a_stable_salt(start_sluice):
    sluice = start_sluice(config={"auth_type": "scram-sha-256"}, users=USERS)
    first = {user: first_auth(sluice, user) for user in KNOWN + [UNKNOWN]}
    for user, auth in first.items():
        assert shape(auth) == (SASL, ("SCRAM-SHA-256",), 16, 4096), (user, auth)
    # Each user's salt is the same on the next attempt, as a stored verifier's is...
    for user in KNOWN + [UNKNOWN]:
        assert first_auth(sluice, user) == first[user], user
    # ...and differs between users (no shared "mock" salt to spot).
    assert len({auth[2] for auth in first.values()}) == len(first)
    # A reload does not change any of them either (a real verifier's salt never changes).
    reload_and_wait(sluice)
    for user in KNOWN + [UNKNOWN]:
        assert first_auth(sluice, user) == first[user], f"{user}'s salt changed on reload"


def test_md5_gives_unknown_users_the_method_most_users_get(start_sluice):
    # Mostly md5-capable users (an md5 secret and a plain password): unknown users get md5.
    sluice = start_sluice(config={"auth_type": "md5"}, users=USERS)
    assert first_auth(sluice, "sc_user")[0] == SASL  # a verifier can only do SCRAM
    assert first_auth(sluice, "m5_user") == (MD5,)
    assert first_auth(sluice, "pl_user") == (MD5,)
    assert first_auth(sluice, UNKNOWN) == (MD5,)


def test_md5_with_scram_verifiers_gives_unknown_users_scram(pg, start_sluice):
    # What PostgreSQL 14+ stores by default: only verifiers. Under md5 they all get SCRAM, so an
    # unknown user must too, with a salt and iteration count like theirs.
    users = {"alice": pg.rolpassword("alice"), "sc_user": USERS["sc_user"],
             "sc_user2": scram_verifier("other")}
    sluice = start_sluice(config={"auth_type": "md5"}, users=users)
    known = {user: first_auth(sluice, user) for user in users}
    unknown = first_auth(sluice, UNKNOWN)
    assert {shape(a) for a in known.values()} == {(SASL, ("SCRAM-SHA-256",), 16, 4096)}
    assert shape(unknown) == (SASL, ("SCRAM-SHA-256",), 16, 4096)
    assert first_auth(sluice, UNKNOWN) == unknown  # the same salt again


def scram_then_final(target, user: str, final: str) -> pgwire.ServerError:
    """Runs a SCRAM exchange up to client-final-message `final` (with {r} for the combined
    nonce) and returns the server's error."""
    with pgwire.WireClient(target.host, target.port) as client:
        client.send(pgwire.startup_packet(user, "app"))
        client.expect(b"R")
        nonce = base64.b64encode(os.urandom(18)).decode()
        first = f"n,,n=,r={nonce}".encode()
        client.send(pgwire.message(
            b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        _, body = client.expect(b"R")
        attrs = dict(part.split("=", 1) for part in body[4:].decode().split(","))
        client.send(pgwire.message(b"p", final.format(r=attrs["r"]).encode()))
        try:
            client.expect(b"R")
        except pgwire.ServerError as e:
            return e
        raise AssertionError(f"{user}: the exchange did not fail")


def test_a_failed_scram_exchange_ends_the_same_for_known_and_unknown_users(start_sluice):
    sluice = start_sluice(config={"auth_type": "scram-sha-256"}, users=USERS)
    proof = base64.b64encode(os.urandom(32)).decode()
    for user in KNOWN + [UNKNOWN]:
        # A well-formed final message with a wrong proof: a wrong password.
        error = scram_then_final(sluice, user, "c=biws,r={r},p=" + proof)
        assert (error.sqlstate, error.fields["M"]) == (
            "28P01", f'password authentication failed for user "{user}"'), (user, error.fields)
        # A malformed one (another nonce): a protocol violation, whoever the user is.
        error = scram_then_final(sluice, user, "c=biws,r=not-our-nonce,p=" + proof)
        assert error.sqlstate == "08P01", (user, error.fields)
