"""The admin console (virtual database `sluice`): SHOW tables with proper types whose values move
under load, live bulkhead tuning, roles, RELOAD/SIGHUP without dropping clients, a bad reload
that keeps the running config, PAUSE/RESUME, KILL_CLIENT and SHUTDOWN WAIT_FOR_CLIENTS."""

from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest

import pgcluster
import pgwire
from admin_console import ADMIN_PASSWORD, STATS_PASSWORD, USERS, Admin
from concurrency import run_threads

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

BASE = {
    "admin_users": ["sluice_admin"],
    "stats_users": ["sluice_stats"],
    "servers": {"main": {"max_connections": 10}},
    "databases": {"app": {"pool_mode": "transaction", "pool_size": 10}},
    "bulkheads": [
        {"name": "critical", "reserved": 2, "max": 10, "match": {"application_name": ["crit"]}},
        {"name": "batch", "max": 4, "queue_depth": 0, "match": {"application_name": ["batch"]}},
    ],
}

INT8, FLOAT8, TEXT, BOOL = 20, 701, 25, 16


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_show_tables_have_typed_columns_and_values_that_move_under_load(sluice):
    admin = Admin(sluice)
    cols, _, tags = admin.query("SHOW BULKHEADS")
    types = dict(cols)
    assert tags == ["SHOW"]
    for name in ("reserved", "max", "in_use", "waiters", "admitted", "refused_total", "timeouts"):
        assert types[name] == INT8, name
    assert types["oldest_wait_ms"] == FLOAT8 and types["name"] == TEXT and types["lifo"] == BOOL
    before = {r["name"]: int(r["admitted"]) for r in admin.table("SHOW BULKHEADS")}
    assert set(before) == {"critical", "batch", "default"}

    def work(i):
        with psycopg.connect(sluice.conninfo(application_name="crit"), autocommit=True) as c:
            for _ in range(20):
                c.execute("SELECT 1")

    assert run_threads([lambda i=i: work(i) for i in range(4)], timeout=60) == []
    after = {r["name"]: r for r in admin.table("SHOW BULKHEADS")}
    assert int(after["critical"]["admitted"]) >= before["critical"] + 80
    assert after["critical"]["reserved"] == "2" and after["batch"]["max"] == "4"

    pools = admin.table("SHOW POOLS")
    app = next(p for p in pools if p["database"] == "app")
    assert app["pool_mode"] == "transaction"
    assert int(app["backends_idle"]) + int(app["backends_active"]) >= 1
    stats = next(r for r in admin.table("SHOW STATS") if r["database"] == "app")
    assert int(stats["total_xact_count"]) >= 80 and int(stats["total_received"]) > 0
    servers = admin.table("SHOW SERVERS")
    assert servers[0]["name"] == "main" and servers[0]["capacity"] == "10"
    assert servers[0]["breaker"] == "closed"

    held = sluice.connect(application_name="crit")
    clients = admin.table("SHOW CLIENTS")
    mine = [c for c in clients if c["application_name"] == "crit"]
    assert len(mine) == 1 and mine[0]["bulkhead"] == "critical" and mine[0]["state"] == "idle"
    assert any(c["database"] == "sluice" for c in clients)  # the console itself
    config = {r["key"]: r["value"] for r in admin.table("SHOW CONFIG")}
    assert config["databases.app.pool_mode"] == '"transaction"'
    version = admin.table("SHOW VERSION")
    assert version[0]["version"].startswith("Sluice ")
    held.close()
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_psql_reads_the_console(sluice):
    out = pgcluster.psql(f"host=127.0.0.1 port={sluice.port} user=sluice_admin dbname=sluice "
                         f"password={ADMIN_PASSWORD}", "SHOW SERVERS")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("main|127.0.0.1|")


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_set_bulkhead_takes_effect_on_the_next_admission(sluice):
    admin = Admin(sluice)
    holders = [sluice.connect(application_name="batch", autocommit=False) for _ in range(2)]
    holders[0].execute("SELECT 1")  # holds one of batch's 4 slots
    _, _, tags = admin.query("SET BULKHEAD batch max = 1")
    assert tags == ["SET"]
    row = next(r for r in admin.table("SHOW BULKHEADS") if r["name"] == "batch")
    assert row["max"] == "1"
    # Batch's only slot is taken and it may not queue (queue_depth 0): refused at once.
    with pytest.raises(psycopg.errors.TooManyConnections):
        holders[1].execute("SELECT 1")
    holders[1].rollback()
    admin.query("SET BULKHEAD batch max = 4")
    holders[1].execute("SELECT 1")  # room again
    for h in holders:
        h.rollback()
        h.close()
    # Durations and validation.
    admin.query("SET BULKHEAD critical max_wait = '750ms'")
    row = next(r for r in admin.table("SHOW BULKHEADS") if r["name"] == "critical")
    assert float(row["max_wait_ms"]) == 750
    with pytest.raises(pgwire.ServerError) as bad:
        admin.query("SET BULKHEAD critical max_wait = soon")
    assert bad.value.sqlstate == "22023"
    with pytest.raises(pgwire.ServerError) as too_big:
        admin.query("SET BULKHEAD critical reserved = 11")  # more than the server has
    assert too_big.value.sqlstate == "22023"
    with pytest.raises(pgwire.ServerError) as unknown:
        admin.query("SET BULKHEAD nosuch max = 1")
    assert unknown.value.sqlstate == "42704"
    assert admin.table("SHOW VERSION")  # the connection is still usable
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_roles_stats_users_only_show_and_others_are_refused(sluice):
    stats = Admin(sluice, "sluice_stats", STATS_PASSWORD)
    assert stats.table("SHOW POOLS") is not None
    for command in ("SET BULKHEAD batch max = 2", "RELOAD", "PAUSE", "KILL_CLIENT 1", "SHUTDOWN"):
        with pytest.raises(pgwire.ServerError) as denied:
            stats.query(command)
        assert denied.value.sqlstate == "42501", command
    with pytest.raises(pgwire.ServerError) as unknown:
        stats.query("FROBNICATE")
    assert unknown.value.sqlstate == "42601"
    assert stats.table("SHOW VERSION")
    stats.close()
    refused = pgwire.login_error("127.0.0.1", sluice.port, "alice", "sluice",
                                 pgcluster.PgCluster.ALICE_PASSWORD)
    assert refused.sqlstate == "42501"


def write_config(sluice, **changes):
    sluice.config = pgcluster.merge(sluice.config, changes)
    sluice.config_path.write_text(pgcluster.to_toml(sluice.config))


@pytest.mark.timeout(120)
@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_reload_changes_pool_sizes_while_20_clients_keep_running(sluice):
    admin = Admin(sluice)
    stop = threading.Event()
    errors = []
    done = [0]

    def client(i):
        with psycopg.connect(sluice.conninfo(application_name="crit"), autocommit=True) as c:
            while not stop.is_set():
                try:
                    c.execute("SELECT pg_sleep(0.005)")
                    done[0] += 1
                except psycopg.Error as e:
                    errors.append(f"{e.sqlstate}: {e}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(1)
    write_config(sluice, databases={"app": {"pool_size": 3}},
                 bulkheads=[dict(BASE["bulkheads"][0], max=6), BASE["bulkheads"][1]])
    _, _, tags = admin.query("RELOAD")
    assert tags == ["RELOAD"]
    time.sleep(1)
    row = next(r for r in admin.table("SHOW BULKHEADS") if r["name"] == "critical")
    assert row["max"] == "6"
    pool = next(p for p in admin.table("SHOW POOLS") if p["database"] == "app")
    assert pool["pool_size"] == "3"
    write_config(sluice, databases={"app": {"pool_size": 8}})
    sluice.proc.send_signal(signal.SIGHUP)  # the same through the signal
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pool = next(p for p in admin.table("SHOW POOLS") if p["database"] == "app")
        if pool["pool_size"] == "8":
            break
        time.sleep(0.1)
    assert pool["pool_size"] == "8"
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []
    assert done[0] > 100
    assert len(sluice.pg.backend_pids("alice")) <= 10
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_a_bad_reload_keeps_the_running_config(sluice):
    admin = Admin(sluice)
    good = sluice.config_path.read_text()
    sluice.config_path.write_text(good + "\n[databases.app]\npool_size = 'many'\n")
    with pytest.raises(pgwire.ServerError) as rejected:
        admin.query("RELOAD")
    assert "running config is kept" in rejected.value.fields["M"]
    sluice.config_path.write_text(good.replace("max_connections = 10", "max_connections = -1"))
    with pytest.raises(pgwire.ServerError):
        admin.query("RELOAD")
    assert "reload_rejected" in sluice.log()
    with sluice.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    server = admin.table("SHOW SERVERS")[0]
    assert server["capacity"] == "10"
    # A change that needs a restart is reported, and the running value kept.
    sluice.config_path.write_text(good.replace(f"port = {sluice.pg.port}", "port = 1"))
    admin.query("RELOAD")
    assert "reload_needs_restart key=servers.main.port" in sluice.log()
    with sluice.connect() as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_pause_holds_new_transactions_until_resume(sluice):
    admin = Admin(sluice)
    conn = sluice.connect(application_name="crit")
    admin.query("PAUSE app")
    assert next(p for p in admin.table("SHOW POOLS") if p["database"] == "app")["paused"] == "t"
    result = {}
    t = threading.Thread(target=lambda: result.update(row=conn.execute("SELECT 5").fetchone()))
    t.start()
    time.sleep(0.5)
    assert "row" not in result  # held while paused
    admin.query("RESUME app")
    t.join(10)
    assert result.get("row") == (5,)
    with pytest.raises(pgwire.ServerError) as unknown:
        admin.query("PAUSE nosuchdb")
    assert unknown.value.sqlstate == "3D000"
    conn.close()
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_pause_answers_once_running_transactions_are_over(sluice):
    # PgBouncer's PAUSE: the command returns when the database is quiet, so a maintenance script
    # can go on at once. A RESUME from elsewhere also ends the wait.
    admin = Admin(sluice)
    busy = sluice.connect(application_name="crit", autocommit=False)
    busy.execute("SELECT 1")  # an open transaction holds a backend
    done = {}

    def pause():
        done["tags"] = admin.query("PAUSE app")[2]
        done["at"] = time.monotonic()

    t = threading.Thread(target=pause)
    t.start()
    time.sleep(0.5)
    assert "tags" not in done, "PAUSE returned while a transaction was running"
    committed = time.monotonic()
    busy.commit()
    t.join(10)
    assert done.get("tags") == ["PAUSE"] and done["at"] >= committed
    admin.query("RESUME app")

    busy.execute("SELECT 2")  # again in a transaction
    t = threading.Thread(target=lambda: done.update(again=admin.query("PAUSE")[2]))
    t.start()
    time.sleep(0.5)
    assert "again" not in done
    other = Admin(sluice)
    other.query("RESUME")
    t.join(10)
    assert done.get("again") == ["PAUSE"]
    busy.rollback()
    assert busy.execute("SELECT 3").fetchone() == (3,)
    busy.close()
    other.close()
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_kill_client_disconnects_exactly_that_client(sluice):
    admin = Admin(sluice)
    victim = sluice.connect(application_name="crit")
    bystander = sluice.connect(application_name="crit")
    victim_id = victim.info.backend_pid  # the key Sluice issued
    _, _, tags = admin.query(f"KILL_CLIENT {victim_id}")
    assert tags == ["KILL_CLIENT"]
    with pytest.raises(psycopg.OperationalError):
        for _ in range(50):
            victim.execute("SELECT 1")
            time.sleep(0.05)
    assert bystander.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(pgwire.ServerError) as unknown:
        admin.query("KILL_CLIENT 4294967295")
    assert unknown.value.sqlstate == "42704"
    bystander.close()
    admin.close()


@pytest.mark.sluice_config(config=BASE, users=USERS)
def test_shutdown_wait_for_clients_exits_when_the_last_client_leaves(sluice):
    admin = Admin(sluice)
    conn = sluice.connect(application_name="crit")
    admin.query("SHUTDOWN WAIT_FOR_CLIENTS")
    sluice.signalled = True  # the exit is expected
    time.sleep(0.5)
    assert sluice.running()
    assert not pgcluster.port_accepts(sluice.port)  # no new clients
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the existing one carries on
    conn.close()
    admin.close()
    assert sluice.wait(timeout=10) == 0
