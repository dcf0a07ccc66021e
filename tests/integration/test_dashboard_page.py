"""The live dashboard page (src/http/dashboard.html) in headless Chromium against a fake /status.

No PostgreSQL and no Sluice: tests/support/browser.py serves the page and a scripted sequence of
/status documents from a thread, and Chromium runs the page on virtual time (its 1 s polls take
milliseconds). The page's data-* values must equal the newest document, saturated classes must be
marked, and a failing /status must show "connection lost" while keeping the last data.

Needs Debian's `chromium`; without it these tests skip, or fail when $CI is set.
"""

from __future__ import annotations

import re

import pytest

import browser
from browser import (FakeStatusServer, bulkhead_status, pool_status, server_status,
                     status_document)

PAGE = browser.DASHBOARD_HTML


@pytest.fixture(scope="module")
def chromium():
    return browser.chromium_or_skip()


def budget_ms(script_len: int) -> int:
    """Virtual time for the page to consume a script of this length, with some polls to spare."""
    return (script_len + 6) * 1000


# ---- the page itself (no browser needed) -----------------------------------------------------


def test_page_is_self_contained():
    text = PAGE.read_text(encoding="utf-8")
    assert text.isascii(), "keep dashboard.html ASCII (it is embedded as a string literal)"
    assert len(text.encode()) < 100_000, "the page should stay small"
    # nothing loaded from elsewhere: no external scripts, styles, fonts, images
    assert not re.search(r"""https?://""", text), "no absolute URLs (no CDN, no external fonts)"
    assert not re.search(r"""<(script|img|iframe)[^>]*\ssrc\s*=""", text, re.I)
    for link in re.findall(r"""<link\b[^>]*>""", text, re.I):
        assert re.search(r"""href="data:""", link), f"only inline (data:) links: {link}"
    assert "@import" not in text and "url(" not in text and "@font-face" not in text
    # same-origin, prefix-friendly polling
    assert "fetch('./status'" in text
    assert "setTimeout(poll, POLL_MS)" in text and "POLL_MS = 1000" in text


# ---- in the browser --------------------------------------------------------------------------


def test_values_match_latest_status(chromium, tmp_path):
    script = browser.overload_scenario(24, flood_at=4, breaker_at=14)
    last, before_last = script[-1], script[-2]
    shot = tmp_path / "dashboard.png"
    with FakeStatusServer(script) as server:
        html = browser.dump_dom(server.url, virtual_ms=budget_ms(len(script)), screenshot_to=shot)
        polls = len(server.served)
    print(f"dashboard screenshot: {shot}")
    assert polls > len(script), f"the page polled only {polls} times for {len(script)} documents"

    body = browser.body_attrs(html)
    assert body.get("data-connection") == "ok"
    assert float(body["data-status-time"]) == last["time"]

    problems = browser.field_mismatches(html, last)
    assert not problems, "page differs from the newest /status:\n" + "\n".join(problems)

    fields = browser.page_fields(html)
    batch = fields[("bulkhead", "main/batch")]
    # rates come from counter deltas over the documents' own clock
    dt = last["time"] - before_last["time"]
    lb = next(b for b in last["bulkheads"] if b["name"] == "batch")
    pb = next(b for b in before_last["bulkheads"] if b["name"] == "batch")
    assert float(batch["admit_rate"].value) == pytest.approx((lb["admitted"] - pb["admitted"]) / dt)
    assert float(batch["refuse_rate"].value) == pytest.approx(
        (lb["refused_total"] - pb["refused_total"]) / dt)
    assert float(batch["oldest_wait_ms"].value) == pytest.approx(lb["oldest_wait_ms"])

    cards = browser.elements_with(html, "data-bulkhead-card")
    assert set(cards) == {"main/critical", "main/batch", "main/default", "reports/default"}
    assert cards["main/batch"]["data-saturated"] == "true"
    assert "queue" in cards["main/batch"]["data-saturation"].split()
    assert cards["main/critical"]["data-saturated"] == "false"
    assert cards["main/default"]["data-saturated"] == "false"
    assert cards["reports/default"]["data-saturated"] == "true"
    assert "breaker" in cards["reports/default"]["data-saturation"].split()

    servers = browser.elements_with(html, "data-server-card")
    report_breaker = next(s["breaker"] for s in last["servers"] if s["name"] == "reports")
    assert report_breaker == "open", "the scenario should end with the breaker open"
    assert servers["reports"]["data-breaker"] == report_breaker
    assert servers["main"]["data-breaker"] == "closed"
    assert servers["main"]["data-alert"] == "false"
    assert fields[("server", "reports")]["breaker"].value == report_breaker
    summary = fields[("process", "")]["saturated_count"]
    assert summary.value == "2"

    assert shot.stat().st_size > 10_000, "screenshot looks empty"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def saturation_script(steps: int = 16) -> list[dict]:
    """Server main with one bulkhead per rule, and server down with its breaker open."""
    docs = []
    for i in range(steps):
        final = i == steps - 1
        docs.append(status_document(
            1_000_000.0 + i,
            servers=[server_status("main", capacity=40, in_use=10),
                     server_status("down", breaker="open", consecutive_connect_failures=5,
                                   connect_attempts=5, connect_failures=5)],
            bulkheads=[
                bulkhead_status("main", "calm", queue_depth=20, max_wait_ms=500, in_use=2,
                                admitted=100 * i),
                bulkhead_status("main", "busy", queue_depth=20, max_wait_ms=500, waiters=10,
                                oldest_wait_ms=80, in_use=8, admitted=50 * i),
                bulkhead_status("main", "queue", queue_depth=20, max_wait_ms=500, waiters=16,
                                oldest_wait_ms=50, in_use=8, admitted=40 * i),
                bulkhead_status("main", "refusing", queue_depth=20, max_wait_ms=500,
                                admitted=10 * i, refused={"rate_limit": 3 if final else 0}),
                bulkhead_status("main", "old_refusals", queue_depth=20, max_wait_ms=500,
                                refused={"queue_full": 5 if i >= 2 else 0}),
                bulkhead_status("main", "age", queue_depth=20, max_wait_ms=500, waiters=1,
                                oldest_wait_ms=251.5),
                bulkhead_status("down", "default", max=10, queue_depth=10, max_wait_ms=1000),
            ]))
    return docs


def test_saturation_rules(chromium):
    script = saturation_script()
    with FakeStatusServer(script) as server:
        html = browser.dump_dom(server.url, virtual_ms=budget_ms(len(script)))
    assert not browser.field_mismatches(html, script[-1])
    cards = browser.elements_with(html, "data-bulkhead-card")
    got = {k: (c["data-saturated"], c["data-saturation"], c["data-level"]) for k, c in cards.items()}
    assert got == {
        "main/calm": ("false", "", "ok"),
        "main/busy": ("false", "", "warn"),            # half full: a warning, not saturated
        "main/queue": ("true", "queue", "alert"),       # 16 >= 0.8 * 20
        "main/refusing": ("true", "refusing", "alert"),  # 3 refusals in the last 10 s
        "main/old_refusals": ("false", "", "ok"),       # refusals, but 13 s ago
        "main/age": ("true", "age", "alert"),           # 251.5 ms > 500 ms / 2
        "down/default": ("true", "breaker", "alert"),   # its server's breaker is open
    }
    assert cards["main/refusing"]["data-recent-refusals"] == "3"
    servers = browser.elements_with(html, "data-server-card")
    assert servers["down"]["data-alert"] == "true" and servers["down"]["data-level"] == "alert"
    assert servers["main"]["data-alert"] == "false"
    assert browser.page_fields(html)[("process", "")]["saturated_count"].value == "4"


def test_connection_lost_keeps_last_data(chromium):
    # served under a path prefix: the page must poll PREFIX/status (its ./status)
    script = browser.overload_scenario(5, flood_at=2, breaker_at=100)
    with FakeStatusServer(script, prefix="/ops/sluice", after_end="fail") as server:
        html = browser.dump_dom(server.url, virtual_ms=budget_ms(len(script)))
        requests = list(server.requests)
        served = list(server.served)
    assert served.count(None) >= 2, "the script should have ended in failed polls"
    assert set(requests) == {"/ops/sluice/", "/ops/sluice/status"}, requests
    body = browser.body_attrs(html)
    assert body.get("data-connection") == "lost"
    assert int(body["data-failed-polls"]) >= 2
    assert "Connection lost" in html
    problems = browser.field_mismatches(html, script[-1])
    assert not problems, "the last good data must stay on screen:\n" + "\n".join(problems)
    assert browser.elements_with(html, "data-bulkhead-card")["main/batch"]["data-saturated"] == "true"


def test_a_redacted_status_shows_no_null_addresses_or_users(chromium):
    """status_detail = "redacted" (the default) sends null hosts, ports and users, and one pool row
    per database: the page says so instead of printing "null"."""
    doc = status_document(
        1_767_225_600.0,
        servers=[server_status("main", host=None, port=None)],
        bulkheads=[bulkhead_status("main", "default")],
        pools=[pool_status("app", None, users=3, transactions=42, backends={"idle": 2})])
    doc["detail"] = "redacted"
    with FakeStatusServer([doc]) as server:
        html = browser.dump_dom(server.url, virtual_ms=budget_ms(1))
    assert not browser.field_mismatches(html, doc)
    assert "address not shown" in html and "(all users)" in html
    assert "null" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)
    assert browser.page_fields(html)[("pool", "app/*")]["transactions"].text == "42"
