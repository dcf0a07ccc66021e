"""Dynamic users (auth_query): roles that are not in Sluice's auth file are looked up on the
server by `auth_user` through a SECURITY DEFINER function, and log in (client side and backend
side) exactly as auth-file users do: carol's password is stored as SCRAM (SCRAM towards the client,
SCRAM passthrough to the backend), dave's as md5 (md5 both ways). Wrong passwords and unknown users
get 28P01; a failing lookup is logged and answered 28P01; results are cached for
auth_query_cache.

Each test that breaks the lookup (drops a function) uses its own function, so the module's
PostgreSQL stays usable for the others.
"""

import time

import psycopg
import psycopg.sql
import pytest

import pgwire
from pgcluster import default_users

pytestmark = pytest.mark.targets("sluice")

AUTH_USER, AUTH_PASSWORD = "sluice_auth", "auth-secret"
CAROL_PASSWORD = "carol-secret"  # stored as SCRAM; not in the auth file
DAVE_PASSWORD = "dave-secret"    # stored as md5; not in the auth file
LOOKUP = "SELECT usename, passwd FROM public.{}($1)"


def create_lookup(pg, name, dbname="app"):
    """public.NAME(text) -> (usename, passwd) from pg_shadow, SECURITY DEFINER (owned by the
    superuser), executable by auth_user only."""
    fn = psycopg.sql.Identifier(name)
    pg.execute(psycopg.sql.SQL(
        "CREATE OR REPLACE FUNCTION public.{}(p_user text, OUT usename name, OUT passwd text) "
        "RETURNS SETOF record LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS "
        "$$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_user $$").format(fn),
        dbname=dbname)
    pg.execute(psycopg.sql.SQL("REVOKE ALL ON FUNCTION public.{}(text) FROM PUBLIC").format(fn),
               dbname=dbname)
    pg.execute(psycopg.sql.SQL("GRANT EXECUTE ON FUNCTION public.{}(text) TO {}").format(
        fn, psycopg.sql.Identifier(AUTH_USER)), dbname=dbname)


def drop_lookup(pg, name, dbname="app"):
    pg.execute(psycopg.sql.SQL("DROP FUNCTION public.{}(text)").format(
        psycopg.sql.Identifier(name)), dbname=dbname)


@pytest.fixture(scope="module")
def roles(pg):
    pg.create_role("carol", CAROL_PASSWORD, "scram-sha-256")
    pg.create_role("dave", DAVE_PASSWORD, "md5")
    pg.create_role(AUTH_USER, AUTH_PASSWORD, "scram-sha-256")
    create_lookup(pg, "sluice_lookup")
    return pg


def auth_query_config(function="sluice_lookup", **extra):
    return {"auth_user": AUTH_USER, "auth_query": LOOKUP.format(function), **extra}


def auth_query_users(auth_password=AUTH_PASSWORD):
    return {**default_users(), AUTH_USER: auth_password}


def start(start_sluice, users=None, **config):
    return start_sluice(config=auth_query_config(**config),
                        users=auth_query_users() if users is None else users)


def assert_login_works(target, user, password, dbname="app"):
    """psycopg and the raw client log in as `user` and run a query on a backend."""
    with target.connect(user, password, dbname=dbname) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (user, dbname)
    with pgwire.connect(target.host, target.port, user, dbname, password) as client:
        assert client.query("SELECT current_user") == [[user]]


def assert_28P01(target, user, password, dbname="app"):
    error = pgwire.login_error(target.host, target.port, user, dbname, password)
    assert error.sqlstate == "28P01", error.fields
    assert error.severity == "FATAL"


def wait_for_log(target, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in target.log():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{target.log()}")


# ---- logins ------------------------------------------------------------------------------------


def test_scram_stored_user_logs_in_without_an_auth_file_entry(roles, start_sluice):
    sluice = start(start_sluice)
    assert "carol" not in sluice.users
    assert_login_works(sluice, "carol", CAROL_PASSWORD)
    # The backend login was SCRAM passthrough: the server's own sessions are carol's.
    assert roles.backend_pids("carol")


def test_md5_stored_user_logs_in_with_md5(roles, start_sluice):
    sluice = start(start_sluice, auth_type="md5")
    assert_login_works(sluice, "dave", DAVE_PASSWORD)
    # A SCRAM-stored user asked for md5 gets SCRAM instead, as in PostgreSQL.
    assert_login_works(sluice, "carol", CAROL_PASSWORD)


def test_transaction_pooling_with_a_looked_up_user(roles, start_sluice):
    sluice = start(start_sluice, auth_type="md5",
                   databases={"app": {"pool_mode": "transaction"}})
    for _ in range(2):  # the second login is welcomed from the pool's known parameters
        with sluice.connect("dave", DAVE_PASSWORD) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("dave",)


def test_auth_dbname_chooses_where_the_query_runs(roles, start_sluice):
    # The client's database (postgres) has no lookup function; auth_dbname points at app.
    sluice = start(start_sluice, auth_dbname="app")
    assert_login_works(sluice, "carol", CAROL_PASSWORD, dbname="postgres")


def test_wrong_password_and_unknown_user_get_28P01(roles, start_sluice):
    sluice = start(start_sluice)
    assert_28P01(sluice, "carol", "not-carol-secret")
    assert_28P01(sluice, "mallory", "whatever")
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        sluice.connect("carol", "not-carol-secret")
    md5 = start(start_sluice, auth_type="md5")
    assert_28P01(md5, "dave", "not-dave-secret")
    assert_28P01(md5, "mallory", "whatever")
    # auth-file users are unaffected.
    assert_login_works(sluice, "alice", default_users()["alice"])


def test_without_auth_user_nobody_is_looked_up(roles, start_sluice):
    sluice = start_sluice(users=auth_query_users())
    assert_28P01(sluice, "carol", CAROL_PASSWORD)
    assert "auth_query" not in sluice.log()


# ---- failures ----------------------------------------------------------------------------------


def test_wrong_auth_user_password_is_logged_and_refused(roles, start_sluice):
    sluice = start(start_sluice, users=auth_query_users("not-the-auth-secret"))
    assert_28P01(sluice, "carol", CAROL_PASSWORD)
    wait_for_log(sluice, "auth_query_failed reason=connect")
    assert "not-the-auth-secret" not in sluice.log()
    assert sluice.running()
    assert_login_works(sluice, "alice", default_users()["alice"])


def test_missing_function_is_logged_and_refused(roles, start_sluice):
    sluice = start(start_sluice, function="sluice_lookup_missing")
    assert_28P01(sluice, "carol", CAROL_PASSWORD)
    wait_for_log(sluice, "auth_query_failed reason=query")
    assert sluice.running()
    # Failures are not cached: once the function exists, the same user logs in.
    create_lookup(roles, "sluice_lookup_missing")
    try:
        assert_login_works(sluice, "carol", CAROL_PASSWORD)
    finally:
        drop_lookup(roles, "sluice_lookup_missing")


def test_unreachable_server_is_logged_and_refused(roles, start_sluice):
    # The client's database points at a server where nothing listens.
    sluice = start(start_sluice, servers={"gone": {"host": "127.0.0.1", "port": 1,
                                                   "connect_timeout": "1s"}},
                   databases={"gone": {"server": "gone", "dbname": "app"}})
    assert_28P01(sluice, "carol", CAROL_PASSWORD, dbname="gone")
    wait_for_log(sluice, "auth_query_failed reason=connect")
    assert sluice.running()


# ---- the cache ---------------------------------------------------------------------------------


def test_cached_secret_survives_the_function_being_dropped(roles, start_sluice):
    create_lookup(roles, "sluice_lookup_cached")
    sluice = start(start_sluice, function="sluice_lookup_cached", auth_query_cache="1m")
    assert_login_works(sluice, "carol", CAROL_PASSWORD)
    drop_lookup(roles, "sluice_lookup_cached")
    # Within auth_query_cache the secret comes from the cache; the wrong password still fails.
    assert_login_works(sluice, "carol", CAROL_PASSWORD)
    assert_28P01(sluice, "carol", "not-carol-secret")
    assert "auth_query_failed" not in sluice.log()
    # A user never looked up is not in the cache: the failure shows.
    assert_28P01(sluice, "dave", DAVE_PASSWORD)
    wait_for_log(sluice, "auth_query_failed reason=query")


def test_cache_disabled_asks_every_time(roles, start_sluice):
    create_lookup(roles, "sluice_lookup_uncached")
    sluice = start(start_sluice, function="sluice_lookup_uncached", auth_query_cache="0")
    assert_login_works(sluice, "carol", CAROL_PASSWORD)
    drop_lookup(roles, "sluice_lookup_uncached")
    assert_28P01(sluice, "carol", CAROL_PASSWORD)
    wait_for_log(sluice, "auth_query_failed reason=query")
