"""Dynamic users (auth_query): roles that are not in Sluice's auth file are looked up on the
server by `auth_user` through a SECURITY DEFINER function, and log in (client side and backend
side) exactly as auth-file users do: carol's password is stored as SCRAM (SCRAM towards the client,
SCRAM passthrough to the backend), dave's as md5 (md5 both ways). Wrong passwords and unknown users
get 28P01; a failing lookup is logged and answered 28P01; results are cached for
auth_query_cache.

Each test that breaks the lookup (drops a function) uses its own function, so the module's
PostgreSQL stays usable for the others.
"""

import threading
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


# ---- what one client can make auth_user do (issue 12, item 6) ----------------------------------
#
# Each test gets its own lookup function that records every call (the backend's pid and the name
# asked) in its own table, so calls and the connections they ran on can be counted afterwards.


def create_counting_lookup(pg, name, delay="0"):
    """public.NAME(text) as create_lookup's, which first records (pg_backend_pid(), p_user) in
    public.NAME_calls and sleeps `delay` seconds."""
    fn, table = psycopg.sql.Identifier(name), psycopg.sql.Identifier(name + "_calls")
    pg.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS public.{}").format(table), dbname="app")
    pg.execute(psycopg.sql.SQL("CREATE TABLE public.{} (pid int, usename text)").format(table),
               dbname="app")
    pg.execute(psycopg.sql.SQL(
        "CREATE OR REPLACE FUNCTION public.{}(p_user text, OUT usename name, OUT passwd text) "
        "RETURNS SETOF record LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS "
        "$$ BEGIN INSERT INTO public.{} VALUES (pg_backend_pid(), p_user); "
        "PERFORM pg_sleep({}); "
        "RETURN QUERY SELECT s.usename, s.passwd FROM pg_shadow s WHERE s.usename = p_user; "
        "END $$").format(fn, table, psycopg.sql.Literal(float(delay))), dbname="app")
    pg.execute(psycopg.sql.SQL("REVOKE ALL ON FUNCTION public.{}(text) FROM PUBLIC").format(fn),
               dbname="app")
    pg.execute(psycopg.sql.SQL("GRANT EXECUTE ON FUNCTION public.{}(text) TO {}").format(
        fn, psycopg.sql.Identifier(AUTH_USER)), dbname="app")


def calls(pg, name):
    """[(pid, usename)] of every call of the counting lookup `name`."""
    return pg.execute(psycopg.sql.SQL("SELECT pid, usename FROM public.{}").format(
        psycopg.sql.Identifier(name + "_calls")), dbname="app")


def in_threads(count, work, workers=20):
    """Runs work(i) for i in range(count) on `workers` threads; returns the exceptions raised."""
    failures = []
    lock = threading.Lock()
    indexes = iter(range(count))

    def worker():
        while True:
            with lock:
                i = next(indexes, None)
            if i is None:
                return
            try:
                work(i)
            except Exception as e:  # noqa: BLE001 (collected and reported by the caller)
                with lock:
                    failures.append(e)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "login threads did not finish"
    return failures


class AuthUserSampler:
    """Samples how many connections auth_user has open on the server, until stopped."""

    def __init__(self, pg):
        self.pg = pg
        self.peak = 0
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with self.pg.superuser() as conn:
            while not self.stop.is_set() and self.samples < 100000:
                (n,) = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                    (AUTH_USER,)).fetchone()
                self.peak = max(self.peak, n)
                self.samples += 1
                time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.mark.timeout(120)
def test_a_flood_of_unknown_names_holds_at_most_the_pool_of_auth_user_connections(roles,
                                                                                start_sluice):
    """200 logins with distinct unknown names from one address (the defaults: a pool of 2
    connections, 20 lookups a second per address in bursts of 40): every one is refused like an
    unknown user, auth_user never has more than 2 connections open on the server, and past the
    burst the address's lookups are refused without a query."""
    create_counting_lookup(roles, "sluice_lookup_flood")
    sluice = start(start_sluice, function="sluice_lookup_flood")
    started = time.monotonic()
    with AuthUserSampler(roles) as sampler:
        failures = in_threads(200, lambda i: assert_28P01(sluice, f"flood_{i}", "whatever"))
    elapsed = time.monotonic() - started
    assert not failures, failures[:3]
    rows = calls(roles, "sluice_lookup_flood")
    assert sampler.samples > 0
    assert sampler.peak <= 2, f"auth_user had {sampler.peak} connections open at once"
    assert len({pid for pid, _ in rows}) <= 2, "lookups ran on more than 2 connections"
    # The address's budget: a burst of 40, then 20 a second (+1 for a token refilled meanwhile).
    assert 1 <= len(rows) <= 40 + 20 * elapsed + 1, (len(rows), elapsed)
    refused = 200 - len(rows)
    if refused > 0:  # logged, sampled (the whole log: tail() may have lost the first lines)
        log = sluice.log_file.read_text()
        assert "auth_query_refused reason=peer_rate peer=127.0.0.1" in log
        assert log.count("auth_query_refused") <= 5 + elapsed + 1
    assert sluice.running()
    assert_login_works(sluice, "alice", default_users()["alice"])


@pytest.mark.timeout(120)
def test_concurrent_logins_of_one_new_user_cause_one_query(roles, start_sluice):
    """50 clients logging in at once as carol, whom Sluice has not looked up yet, while the
    lookup takes 0.5 s: one query answers all of them, and all log in."""
    create_counting_lookup(roles, "sluice_lookup_slow", delay="0.5")
    sluice = start(start_sluice, function="sluice_lookup_slow")
    barrier = threading.Barrier(50, timeout=30)

    def login(_):
        barrier.wait()
        with pgwire.connect(sluice.host, sluice.port, "carol", "app", CAROL_PASSWORD, timeout=60):
            pass

    failures = in_threads(50, login, workers=50)
    assert not failures, failures[:3]
    assert [user for _, user in calls(roles, "sluice_lookup_slow")] == ["carol"]


def test_an_address_past_its_lookup_rate_gets_the_unknown_user_answer(roles, start_sluice):
    """auth_query_peer_rate = 1 (bursts of 2): past it, a name that needs a lookup, even a real
    user's, fails exactly as an unknown user does (28P01) without a query; a cached user and
    auth-file users still log in."""
    create_counting_lookup(roles, "sluice_lookup_rate")
    sluice = start(start_sluice, function="sluice_lookup_rate", auth_query_peer_rate=1,
                   auth_query_cache="1m")
    assert_login_works(sluice, "carol", CAROL_PASSWORD)  # one lookup, then cached
    started = time.monotonic()
    for i in range(20):
        assert_28P01(sluice, f"nobody_{i}", "whatever")
    assert_28P01(sluice, "dave", DAVE_PASSWORD)  # a real user, but no lookup left
    elapsed = time.monotonic() - started
    rows = calls(roles, "sluice_lookup_rate")
    assert 2 <= len(rows) <= 2 + elapsed + 1, (len(rows), elapsed)
    wait_for_log(sluice, "auth_query_refused reason=peer_rate peer=127.0.0.1")
    assert_login_works(sluice, "carol", CAROL_PASSWORD)  # from the cache: free
    assert_login_works(sluice, "alice", default_users()["alice"])
    assert len(calls(roles, "sluice_lookup_rate")) == len(rows)


def test_auth_user_connections_count_against_max_connections(roles, start_sluice):
    """max_connections = 3 with auth_user set: 2 slots are auth_user's (auth_query_pool_size's
    default), 1 is left for backends. carol holds it; dave, looked up on the kept auth_user
    connection, waits for a backend and is refused with 53300. Sluice never has more than 3
    connections to the server."""
    sluice = start(start_sluice, auth_type="md5", servers={"main": {"max_connections": 3}},
                   query_wait_timeout="1s")
    with pgwire.connect(sluice.host, sluice.port, "carol", "app", CAROL_PASSWORD) as carol:
        assert carol.query("SELECT current_user") == [["carol"]]
        error = pgwire.login_error(sluice.host, sluice.port, "dave", "app", DAVE_PASSWORD)
        assert error.sqlstate == "53300", error.fields
        ours = roles.execute("SELECT count(*) FROM pg_stat_activity WHERE usename IN "
                             "(%s, 'carol', 'dave')", (AUTH_USER,))[0][0]
        assert ours <= 3
    assert_login_works(sluice, "dave", DAVE_PASSWORD)
