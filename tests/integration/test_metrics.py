"""The metrics port: /metrics parses as Prometheus text and its counters move with refusals,
/status agrees with the admin console, and the dashboard at / shows the same numbers in a real
headless Chromium (with a screenshot taken under overload)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

import browser
import pgcluster
from admin_console import USERS, Admin

pytestmark = [pytest.mark.targets("sluice"), pytest.mark.sluice_threads(2)]

METRICS_PORT = pgcluster.free_port()
CONFIG = {
    "admin_users": ["sluice_admin"],
    "metrics_listen": f"127.0.0.1:{METRICS_PORT}",
    "servers": {"main": {"max_connections": 6}},
    "databases": {"app": {"pool_mode": "transaction", "pool_size": 6}},
    "bulkheads": [
        {"name": "critical", "reserved": 2, "max": 6, "match": {"application_name": ["crit"]}},
        {"name": "batch", "max": 1, "queue_depth": 0, "match": {"application_name": ["batch"]}},
    ],
}
REASONS = ("queue_full", "queue_age", "predicted_wait", "max_wait", "rate_limit", "max_clients",
           "server_down")


def get(path: str, port: int = METRICS_PORT) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def samples() -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    status, ctype, body = get("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples, name, **labels):
    return all_samples[(name, tuple(sorted(labels.items())))]


def refuse_batch(sluice, times: int) -> None:
    """Batch has one slot and no queue: with it held, each further attempt is refused."""
    holder = sluice.connect(application_name="batch", autocommit=False)
    other = sluice.connect(application_name="batch")
    holder.execute("SELECT 1")
    for _ in range(times):
        with pytest.raises(psycopg.errors.TooManyConnections):
            other.execute("SELECT 1")
    holder.rollback()
    holder.close()
    other.close()


@pytest.mark.sluice_config(config=CONFIG, users=USERS)
def test_metrics_exist_from_start_and_counters_move_with_refusals(sluice):
    first = samples()
    assert [v for (name, _), v in first.items() if name == "sluice_build_info"] == [1]
    for bulkhead in ("critical", "batch", "default"):
        for reason in REASONS:
            assert value(first, "sluice_admission_refusals_total", server="main",
                         bulkhead=bulkhead, reason=reason) == 0
        assert value(first, "sluice_queue_waiters", server="main", bulkhead=bulkhead) == 0
    assert value(first, "sluice_bulkhead_slots_reserved", server="main", bulkhead="critical") == 2
    for state in ("connecting", "idle", "active"):
        assert ("sluice_backend_connections", (("server", "main"), ("state", state))) in first

    refuse_batch(sluice, 3)
    with sluice.connect(application_name="crit") as c:
        for _ in range(5):
            c.execute("SELECT 1")
    # A transaction's duration is recorded as its backend goes back to the pool, just after the
    # client has its ReadyForQuery (and, with two event loops, maybe after /metrics is served).
    for _ in range(100):
        after = samples()
        if value(after, "sluice_transaction_duration_seconds_count", server="main",
                 bulkhead="critical") >= 5:
            break
        time.sleep(0.05)
    assert value(after, "sluice_admission_refusals_total", server="main", bulkhead="batch",
                 reason="queue_full") == 3
    assert value(after, "sluice_admissions_total", server="main", bulkhead="critical") >= 5
    assert value(after, "sluice_queue_wait_seconds_count", server="main",
                 bulkhead="critical") >= 5
    assert value(after, "sluice_transaction_duration_seconds_count", server="main",
                 bulkhead="critical") >= 5
    assert value(after, "sluice_client_bytes_received_total") > 0
    assert value(after, "sluice_backend_connect_attempts_total", server="main") >= 1
    # The admin console reads the same snapshot.
    admin = Admin(sluice)
    batch = next(r for r in admin.table("SHOW BULKHEADS") if r["name"] == "batch")
    assert int(batch["refused_queue_full"]) == 3
    status = json.loads(get("/status")[2])
    jb = next(b for b in status["bulkheads"] if b["name"] == "batch")
    assert jb["refused"]["queue_full"] == 3 and jb["max"] == 1 and jb["max_wait_ms"] > 0
    admin.close()


@pytest.mark.sluice_config(config=CONFIG, users=USERS)
def test_http_routes_and_bad_requests(sluice):
    status, ctype, body = get("/")
    assert status == 200 and ctype.startswith("text/html") and "<html" in body.lower()
    assert "http://" not in body and "https://" not in body  # self-contained: nothing external
    assert get("/status")[1].startswith("application/json")
    assert get("/nope")[0] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{METRICS_PORT}/metrics", method="POST",
                                 data=b"x")
    with pytest.raises(urllib.error.HTTPError) as posted:
        urllib.request.urlopen(req, timeout=10)
    assert posted.value.code == 405
    # Garbage on the socket does not hurt the server.
    import socket
    with socket.create_connection(("127.0.0.1", METRICS_PORT), timeout=5) as s:
        s.sendall(b"\x00\xff garbage\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400")
    assert get("/metrics")[0] == 200


@pytest.mark.timeout(240)
@pytest.mark.sluice_config(config=CONFIG, users=USERS)
def test_the_dashboard_shows_what_show_bulkheads_says_in_a_real_browser(sluice):
    browser.chromium_or_skip()
    stop = threading.Event()

    def batch_client():
        with sluice.connect(application_name="batch") as c:
            while not stop.is_set():
                try:
                    c.execute("SELECT pg_sleep(0.02)")
                except psycopg.errors.TooManyConnections:
                    time.sleep(0.005)

    def critical():
        with sluice.connect(application_name="crit") as c:
            while not stop.is_set():
                c.execute("SELECT 1")
                time.sleep(0.01)

    with sluice.connect(application_name="crit") as c:  # the pool learns the server's settings:
        c.execute("SELECT 1")  # later logins need no backend, even while batch is saturated
    threads = [threading.Thread(target=batch_client) for _ in range(4)]
    threads.append(threading.Thread(target=critical))
    for t in threads:
        t.start()
    url = f"http://127.0.0.1:{METRICS_PORT}/"
    shots = Path(os.environ.get("SLUICE_SCREENSHOT_DIR") or tempfile.mkdtemp(prefix="sluice-ui-"))
    try:
        time.sleep(2)
        html = browser.dump_dom(url, virtual_ms=4000, screenshot_to=shots / "overload.png")
        print(f"dashboard screenshot: {shots / 'overload.png'}")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    cards = browser.elements_with(html, "data-bulkhead-card")
    assert cards["main/batch"]["data-saturated"] == "true"  # refusing: it stands out
    # Once the load has stopped, the page and SHOW BULKHEADS agree on every number.
    time.sleep(1.5)
    admin = Admin(sluice)
    show = {r["name"]: r for r in admin.table("SHOW BULKHEADS")}
    html = browser.dump_dom(url, virtual_ms=3000)
    fields = browser.page_fields(html)
    for name in ("critical", "batch", "default"):
        page = fields[("bulkhead", f"main/{name}")]
        for key in ("reserved", "max", "queue_depth", "in_use", "waiters", "admitted",
                    "refused_total"):
            assert page[key].text == show[name][key], (name, key)
    assert browser.body_attrs(html).get("data-connection") == "ok"
    admin.close()


# ---- what /status reveals (issue 12, item 12) ---------------------------------------------------

STATUS_PASSWORD = "correct-horse-battery-staple"


def fetch(path: str, authorization: str | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{METRICS_PORT}{path}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def two_users_busy(sluice) -> None:
    for user in ("alice", "bob"):
        with sluice.connect(user=user) as c:
            c.execute("SELECT 1")


@pytest.mark.sluice_config(config=CONFIG, users=USERS)
def test_status_by_default_names_no_server_address_and_no_user(sluice):
    """status_detail's default, "redacted": /status has no server host or port and no user name
    (one pool row per database, its users summed), and neither have the page nor /metrics; the
    admin console, for stats_users, still has them all."""
    two_users_busy(sluice)
    code, _, body = fetch("/status")
    assert code == 200
    for hidden in ("127.0.0.1", "alice", "bob"):
        assert hidden not in body, hidden
    status = json.loads(body)
    assert status["detail"] == "redacted"
    assert [(s["name"], s["host"], s["port"]) for s in status["servers"]] == [("main", None, None)]
    pools = {p["database"]: p for p in status["pools"]}
    assert set(pools) == {"app"} and pools["app"]["user"] is None
    assert pools["app"]["users"] == 2 and pools["app"]["transactions"] >= 2
    for path in ("/", "/metrics"):
        code, _, text = fetch(path)
        assert code == 200 and "alice" not in text and "bob" not in text and "127.0.0.1" not in text
    admin = Admin(sluice)
    assert {(r["database"], r["user"]) for r in admin.table("SHOW POOLS")} == {
        ("app", "alice"), ("app", "bob")}
    admin.close()


PROTECTED = {**CONFIG, "status_detail": "full", "status_password": STATUS_PASSWORD}


@pytest.mark.sluice_config(config=PROTECTED, users=USERS)
def test_status_password_guards_status_and_the_page_but_not_metrics(sluice):
    """With status_password, /status and / answer 401 with a Basic challenge unless the request
    carries the password (Basic with any user name, or Bearer); /metrics and /healthz stay open
    for Prometheus. The full detail then names servers and users. SHOW CONFIG hides the value."""
    import base64
    two_users_busy(sluice)
    basic = "Basic " + base64.b64encode(f"ops:{STATUS_PASSWORD}".encode()).decode()
    wrong = "Basic " + base64.b64encode(b"ops:correct-horse-battery-stapl").decode()
    for path in ("/status", "/"):
        for authorization in (None, wrong, "Bearer nope", f"Digest {STATUS_PASSWORD}"):
            code, headers, body = fetch(path, authorization)
            assert code == 401, (path, authorization)
            assert headers.get("WWW-Authenticate", "").startswith("Basic realm=")
            assert "alice" not in body and "servers" not in body
        assert fetch(path, basic)[0] == 200
        assert fetch(path, f"Bearer {STATUS_PASSWORD}")[0] == 200
    status = json.loads(fetch("/status", basic)[2])
    assert status["detail"] == "full"
    assert status["servers"][0]["host"] == "127.0.0.1"
    assert {p["user"] for p in status["pools"]} == {"alice", "bob"}
    assert fetch("/metrics")[0] == 200 and fetch("/healthz")[0] == 200
    admin = Admin(sluice)
    rows = {r["key"]: r["value"] for r in admin.table("SHOW CONFIG")}
    assert rows["status_password"] == "********"
    assert not any(STATUS_PASSWORD in v for v in rows.values())
    admin.close()
