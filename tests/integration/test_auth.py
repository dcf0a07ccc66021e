"""Client authentication through the pooler, and the backend logins it makes on the client's
behalf: SCRAM and md5 with right and wrong passwords (psql, libpq via psycopg, and a raw client
for the exact SQLSTATE), unknown database, SCRAM passthrough from a verifier alone, md5-stored
secrets, trust.

Roles (see PgCluster): alice's password is stored as SCRAM in PostgreSQL, bob's as md5.
"""

import psycopg
import pytest

import pgwire
from conftest import expected_sqlstate
from pgcluster import md5_secret, psql

SASL, MD5 = 10, 5  # AuthenticationSASL / AuthenticationMD5Password request codes


def login(target, user, password, dbname="app"):
    return pgwire.connect(target.host, target.port, user, dbname, password)


def assert_login_works(target, user, password, expected_method=None):
    """psql, psycopg and the raw client all log in as `user` and reach the backend."""
    result = psql(target.conninfo(user, password), "SELECT current_user")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == user

    with target.connect(user, password) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, "app")

    with login(target, user, password) as client:
        assert client.query("SELECT current_user") == [[user]]
        if expected_method is not None:
            assert client.auth_requests[0] == expected_method


def assert_wrong_password(target, user, password):
    """Refused with 28P01 (raw client), OperationalError (psycopg), exit code 2 (psql)."""
    error = pgwire.login_error(target.host, target.port, user, "app", password)
    assert error.sqlstate == expected_sqlstate("28P01"), error.fields
    assert error.severity == "FATAL"

    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        target.connect(user, password)

    result = psql(target.conninfo(user, password), "SELECT 1")
    assert result.returncode == 2
    assert "authentication failed" in result.stderr


# ---- SCRAM towards the client (the default auth_type) ---------------------------------------


@pytest.mark.targets("sluice", "pgbouncer")
def test_scram_client_login_with_plain_secrets(sluice):
    # alice: the backend asks for SCRAM; bob: the backend asks for md5. Both from plain secrets.
    assert_login_works(sluice, "alice", "alice-secret", expected_method=SASL)
    assert_login_works(sluice, "bob", "bob-secret", expected_method=SASL)


def test_scram_wrong_password_is_28P01(sluice):
    assert_wrong_password(sluice, "alice", "not-alice-secret")
    assert_wrong_password(sluice, "bob", "not-bob-secret")


@pytest.mark.targets("sluice", "direct")
def test_unknown_user_looks_like_a_wrong_password(sluice):
    # Same code as a wrong password: the pooler must not reveal which part was wrong.
    error = pgwire.login_error(sluice.host, sluice.port, "mallory", "app", "whatever")
    assert error.sqlstate == "28P01", error.fields


# ---- md5 towards the client -----------------------------------------------------------------


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config={"auth_type": "md5"})
def test_md5_client_login_with_plain_secrets(sluice):
    assert_login_works(sluice, "alice", "alice-secret", expected_method=MD5)
    assert_login_works(sluice, "bob", "bob-secret", expected_method=MD5)


@pytest.mark.sluice_config(config={"auth_type": "md5"})
def test_md5_wrong_password_is_28P01(sluice):
    assert_wrong_password(sluice, "alice", "wrong")
    assert_wrong_password(sluice, "bob", "wrong")


@pytest.mark.targets("sluice", "pgbouncer")
def test_md5_stored_secret_logs_in_to_an_md5_backend(start_sluice):
    # The auth file holds only md5(password || user), as pg_authid does for bob: the client
    # proves it with md5, and the pooler answers the backend's md5 challenge from the same hash.
    sluice = start_sluice(config={"auth_type": "md5"},
                          users={"bob": md5_secret("bob", "bob-secret")})
    assert_login_works(sluice, "bob", "bob-secret", expected_method=MD5)
    assert_wrong_password(sluice, "bob", "alice-secret")


# ---- SCRAM passthrough: only the verifier from pg_authid in the auth file ---------------------


@pytest.mark.targets("sluice", "pgbouncer")
def test_scram_passthrough_with_only_the_verifier(pg, start_sluice):
    verifier = pg.rolpassword("alice")
    assert verifier.startswith("SCRAM-SHA-256$")
    sluice = start_sluice(users={"alice": verifier})
    assert_login_works(sluice, "alice", "alice-secret", expected_method=SASL)

    # Hold one session so that the next login needs a new backend connection, which can only
    # authenticate with the keys recovered from that client's own SCRAM exchange.
    with sluice.connect("alice", "alice-secret") as held:
        pid = held.execute("SELECT pg_backend_pid()").fetchone()[0]
        with sluice.connect("alice", "alice-secret") as second:
            assert second.execute("SELECT pg_backend_pid()").fetchone()[0] != pid

    assert_wrong_password(sluice, "alice", "alice-secret-not")


@pytest.mark.targets("sluice", "pgbouncer")
def test_md5_auth_type_gives_scram_to_verifier_users(pg, start_sluice):
    # As in PostgreSQL: with auth_type md5, a user whose secret is a SCRAM verifier gets SCRAM.
    sluice = start_sluice(config={"auth_type": "md5"}, users={"alice": pg.rolpassword("alice")})
    assert_login_works(sluice, "alice", "alice-secret", expected_method=SASL)
    assert_wrong_password(sluice, "alice", "wrong")


# ---- trust and unknown database -------------------------------------------------------------


@pytest.mark.targets("sluice", "pgbouncer")
@pytest.mark.sluice_config(config={"auth_type": "trust"})
def test_trust_still_logs_in_to_the_backend_with_the_auth_file_secret(sluice):
    with login(sluice, "alice", None) as client:
        assert client.auth_requests == [0]
        assert client.query("SELECT current_user") == [["alice"]]


@pytest.mark.targets("sluice", "direct")
def test_unknown_database_is_3D000(sluice):
    error = pgwire.login_error(sluice.host, sluice.port, "alice", "no_such_db", "alice-secret")
    assert error.sqlstate == "3D000", error.fields

    with pytest.raises(psycopg.OperationalError):
        sluice.connect("alice", "alice-secret", dbname="no_such_db")
    result = psql(sluice.conninfo("alice", "alice-secret", "no_such_db"), "SELECT 1")
    assert result.returncode == 2
    assert "no_such_db" in result.stderr
