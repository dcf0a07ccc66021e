"""Secrets stay secret (issue 12, item 1): a database's `password` is used to log in to
PostgreSQL, but SHOW CONFIG (to a stats user), every other SHOW, /status, the reload diff, a
rejected reload's errors and the whole log file print `********` instead of it."""

from __future__ import annotations

import urllib.request

import psycopg
import pytest

import pgcluster
import pgwire
from admin_console import STATS_PASSWORD, USERS, Admin

pytestmark = [pytest.mark.targets("sluice")]

ROLE = "svc_secret"
FIRST_PASSWORD = "Db-Pa55-first-7f3c1a"
SECOND_PASSWORD = "Db-Pa55-second-9e2b4d"
SHOW_ITEMS = ("BULKHEADS", "POOLS", "CLIENTS", "SERVERS", "STATS", "CONFIG", "DATABASES", "LISTS",
              "VERSION", "HELP")


def config(metrics_port: int, password: str) -> dict:
    return {
        "admin_users": ["sluice_admin"],
        "stats_users": ["sluice_stats"],
        "log_level": "debug",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "databases": {"svc": {"server": "main", "dbname": "app", "user": ROLE,
                              "password": password, "pool_mode": "session", "pool_size": 4}},
    }


def write_config(sluice, cfg: dict) -> None:
    sluice.config = pgcluster.merge(sluice.config, cfg)
    sluice.config_path.write_text(pgcluster.to_toml(sluice.config))


def status(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
        return r.read().decode()


def everything_shown(console: Admin) -> str:
    """Every cell of every SHOW item, as one text."""
    cells = []
    for item in SHOW_ITEMS:
        for row in console.table(f"SHOW {item}"):
            cells.extend(v for v in row.values() if v is not None)
    return "\n".join(cells)


def current_users(sluice, n: int) -> list[str]:
    """current_user of `n` clients of database svc held at once (so some log in anew)."""
    conns = [sluice.connect(dbname="svc") for _ in range(n)]
    try:
        return [c.execute("SELECT current_user").fetchone()[0] for c in conns]
    finally:
        for c in conns:
            c.close()


def test_passwords_never_reach_show_status_reload_errors_or_the_log(pg, start_sluice):
    pg.create_role(ROLE, FIRST_PASSWORD)
    metrics_port = pgcluster.free_port()
    sluice = start_sluice(config=config(metrics_port, FIRST_PASSWORD), users=USERS)
    leaks = []  # (where, which password): every place is checked, then all are reported

    def check(where: str, text: str) -> None:
        leaks.extend((where, p) for p in (FIRST_PASSWORD, SECOND_PASSWORD) if p in text)

    # The password is really used: Sluice logs in to PostgreSQL as the configured user with it.
    assert current_users(sluice, 1) == [ROLE]

    stats = Admin(sluice, "sluice_stats", STATS_PASSWORD)
    shown = {r["key"]: r["value"] for r in stats.table("SHOW CONFIG")}
    assert shown["databases.app.password"] == '""'  # unset: visibly empty
    assert shown["databases.svc.user"] == f'"{ROLE}"'
    check("SHOW CONFIG databases.svc.password", shown["databases.svc.password"])
    check("SHOW (every item, stats user)", everything_shown(stats))
    check("/status", status(metrics_port))

    # A new password, on the server and in the file; the reload says the key changed, not how.
    pg.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
        psycopg.sql.Identifier(ROLE), psycopg.sql.Literal(SECOND_PASSWORD)))
    write_config(sluice, config(metrics_port, SECOND_PASSWORD))
    admin = Admin(sluice)
    _, _, tags = admin.query("RELOAD")
    assert tags == ["RELOAD"]
    assert current_users(sluice, 3) == [ROLE] * 3  # at least two new backends, new password

    # A rejected reload's errors, to the admin and in the log, do not repeat the password even
    # where the file puts it into another key by mistake.
    broken = config(metrics_port, SECOND_PASSWORD)
    broken["databases"]["svc"]["pool_mode"] = SECOND_PASSWORD
    write_config(sluice, broken)
    with pytest.raises(pgwire.ServerError) as rejected:
        admin.query("RELOAD")
    message = rejected.value.fields["M"]
    assert "running config is kept" in message and "databases.svc.pool_mode" in message
    check("RELOAD error (to the admin)", message)
    write_config(sluice, config(metrics_port, SECOND_PASSWORD))
    admin.query("RELOAD")

    shown = {r["key"]: r["value"] for r in stats.table("SHOW CONFIG")}
    check("SHOW CONFIG after RELOAD", shown["databases.svc.password"])
    check("SHOW after RELOAD (every item, stats user)", everything_shown(stats))
    check("/status after RELOAD", status(metrics_port))
    stats.close()
    admin.close()

    # The whole log file (PoolerProcess.log() is only its tail).
    log = sluice.log_file.read_text(errors="replace")
    for line in log.splitlines():
        check(f"log: {line[:60]}", line)

    assert leaks == [], "passwords leaked:\n" + "\n".join(f"{w}: {p}" for w, p in leaks)
    assert shown["databases.svc.password"] == "********"
    assert "reload_changed key=databases.svc.password old=******** new=********" in log
    assert "reload_rejected" in log
