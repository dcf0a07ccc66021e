"""Headless-browser helpers for the dashboard page (src/http/dashboard.html).

Reusable by any test that looks at the page, against the fake server below or a real Sluice:

  FakeStatusServer   serves the page at PREFIX/ and scripted JSON documents at PREFIX/status
                     (one per poll, the last one repeated, or failures after the script ends)
  find_chromium()    the headless browser, or None; chromium_or_skip() for pytest
  dump_dom(url)      the page's DOM after `virtual_ms` of (virtual) time, as HTML text
  screenshot(url, path)
  page_fields(html)  every element with data-field, by scope: {("bulkhead", "main/batch"):
                     {"in_use": Field(text="3", value="3", attrs={...})}}
  elements_with(html, attr)  attributes of every element carrying `attr`, by its value
  status_document(), server_status(), bulkhead_status(), pool_status(): complete /status
                     documents with every field of the schema, for scripting
  overload_scenario()  a scripted incident: a batch flood saturating one class while another
                     stays healthy, and a second server whose circuit breaker opens

Chromium runs with --virtual-time-budget: page timers (the 1 s poll) run on virtual time, which
advances as fast as the page is idle, so minutes of polling take seconds. Each run gets its own
temporary profile and HOME and is killed (whole process group) on timeout.

Standard library only; run with /usr/bin/python3.
"""

from __future__ import annotations

import copy
import http.server
import json
import math
import os
import random
import shutil
import signal
import socketserver
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_HTML = REPO_ROOT / "src" / "http" / "dashboard.html"

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
REASONS = ("queue_full", "queue_age", "predicted_wait", "max_wait", "rate_limit", "max_clients",
           "server_down")


# ---- the browser -----------------------------------------------------------------------------


class BrowserError(RuntimeError):
    """Chromium failed or timed out; the message carries the tail of its output."""


def find_chromium() -> str | None:
    """$SLUICE_CHROMIUM if set, else the first Chromium or Chrome on PATH (Debian: chromium)."""
    explicit = os.environ.get("SLUICE_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_or_skip() -> str:
    """For pytest: the browser's path. Without one the test is skipped, or fails when $CI is set
    (CI must install it: apt-get install chromium)."""
    import pytest

    path = find_chromium()
    if path:
        return path
    message = ("headless Chromium not found (looked for $SLUICE_CHROMIUM, "
               + ", ".join(CHROMIUM_NAMES) + "); install it with: apt-get install -y chromium")
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def run_chromium(url: str, args: Sequence[str], *, timeout: float = 90,
                 window_size: tuple[int, int] = (1280, 800),
                 virtual_ms: int | None = 5000) -> subprocess.CompletedProcess:
    """Runs headless Chromium once on `url` with extra `args` (e.g. --dump-dom) and returns the
    finished process (stdout as text). Raises BrowserError on failure or timeout."""
    binary = find_chromium()
    if binary is None:
        raise BrowserError("headless Chromium not found; apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="sluice-chromium-") as tmp:
        argv = [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp}/profile", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
            "--no-proxy-server", "--force-device-scale-factor=1", "--lang=en-US",
            f"--window-size={window_size[0]},{window_size[1]}",
        ]
        if virtual_ms is not None:
            argv.append(f"--virtual-time-budget={int(virtual_ms)}")
        argv += list(args) + [url]
        env = dict(os.environ, HOME=tmp, XDG_CONFIG_HOME=f"{tmp}/config",
                   XDG_CACHE_HOME=f"{tmp}/cache", LANG="C.UTF-8")
        for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(proxy, None)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=tmp, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out, err = proc.communicate(timeout=10)
            raise BrowserError(f"chromium timed out after {timeout}s: {' '.join(argv)}\n"
                               f"{_tail(err)}") from None
        finally:
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait(timeout=10)
            _kill_group(proc)  # helpers (zygote, crashpad) left in the group
        if proc.returncode != 0:
            raise BrowserError(f"chromium exited with {proc.returncode}: {' '.join(argv)}\n{_tail(err)}")
        return subprocess.CompletedProcess(argv, proc.returncode, out.decode("utf-8", "replace"),
                                           err.decode("utf-8", "replace"))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(data: bytes, limit: int = 3000) -> str:
    text = data.decode("utf-8", "replace")
    return text[-limit:]


def dump_dom(url: str, *, virtual_ms: int = 5000, timeout: float = 90,
             window_size: tuple[int, int] = (1280, 800),
             screenshot_to: Path | str | None = None) -> str:
    """The serialized DOM once `virtual_ms` of virtual time has passed after load; with
    `screenshot_to`, the same run also writes a PNG of the viewport there (same moment)."""
    args = ["--dump-dom"]
    shot = None
    if screenshot_to is not None:
        shot = Path(screenshot_to).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        if shot.exists():
            shot.unlink()
        args.append(f"--screenshot={shot}")
    html = run_chromium(url, args, timeout=timeout, virtual_ms=virtual_ms,
                        window_size=window_size).stdout
    if "<html" not in html:
        raise BrowserError(f"chromium printed no DOM for {url}: {html[:500]!r}")
    if shot is not None and (not shot.exists() or shot.stat().st_size == 0):
        raise BrowserError(f"chromium wrote no screenshot to {shot}")
    return html


def screenshot(url: str, path: Path | str, *, virtual_ms: int = 5000, timeout: float = 90,
               window_size: tuple[int, int] = (1280, 800)) -> Path:
    """A PNG of the viewport after `virtual_ms` of virtual time, written to `path`."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    run_chromium(url, [f"--screenshot={path}"], timeout=timeout, virtual_ms=virtual_ms,
                 window_size=window_size)
    if not path.exists() or path.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot to {path}")
    return path


# ---- reading the page ------------------------------------------------------------------------

SCOPES = ("bulkhead", "server", "pool", "clients", "process")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


@dataclass
class Field:
    text: str                    # the element's text content, stripped
    value: str | None            # its data-value attribute (the raw JSON value), if any
    attrs: dict[str, str] = field(default_factory=dict)


class _FieldParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[list[Any]] = []  # [tag, capture-or-None]
        self.fields: dict[tuple[str, str], dict[str, Field]] = {}
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        self.elements.append((tag, a))
        if tag in _VOID:
            return
        capture = None
        if "data-field" in a:
            scope = next((s for s in SCOPES if f"data-{s}" in a), "")
            capture = [(scope, a.get(f"data-{scope}", "")), a, []]
        self.stack.append([tag, capture])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: (v if v is not None else "") for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        # pop to the matching open tag (tolerates unclosed elements)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for _, capture in reversed(self.stack[i:]):
                    if capture is not None:
                        self._finish(capture)
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        for _, capture in self.stack:
            if capture is not None:
                capture[2].append(data)

    def _finish(self, capture: list[Any]) -> None:
        key, a, parts = capture
        self.fields.setdefault(key, {})[a["data-field"]] = Field(
            text=" ".join("".join(parts).split()), value=a.get("data-value"), attrs=a)

    def close(self) -> None:
        super().close()
        for _, capture in reversed(self.stack):
            if capture is not None:
                self._finish(capture)
        self.stack.clear()


def _parse(html: str) -> _FieldParser:
    parser = _FieldParser()
    parser.feed(html)
    parser.close()
    return parser


def page_fields(html: str) -> dict[tuple[str, str], dict[str, Field]]:
    """Every element with data-field, keyed by (scope, id): scope is bulkhead, server, pool (id
    "SERVER/NAME", "NAME", "DATABASE/USER") or clients, process (id "")."""
    return _parse(html).fields


def elements_with(html: str, attr: str) -> dict[str, dict[str, str]]:
    """Attributes of each element carrying `attr`, keyed by that attribute's value, e.g.
    elements_with(html, "data-bulkhead-card")["main/batch"]["data-saturated"]."""
    return {a[attr]: a for _, a in _parse(html).elements if attr in a}


def body_attrs(html: str) -> dict[str, str]:
    """The <body> element's attributes (data-connection, data-status-time, ...)."""
    for tag, a in _parse(html).elements:
        if tag == "body":
            return a
    return {}


def expected_fields(status: dict) -> dict[tuple[str, str], dict[str, str]]:
    """What the page must show for `status` as exact text, in page_fields' shape: the integer
    fields of bulkheads, servers, pools and clients."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for b in status["bulkheads"]:
        d = out.setdefault(("bulkhead", f"{b['server']}/{b['name']}"), {})
        for k in ("in_use", "waiters", "reserved", "max", "admitted", "refused_total", "queue_depth",
                  "borrowed", "priority", "max_wait_ms", "clients", "expired", "cancelled", "timeouts",
                  "queued", "handed_off"):
            d[k] = str(b[k])
        for r in REASONS:
            d[f"refused.{r}"] = str(b["refused"][r])
    for s in status["servers"]:
        d = out.setdefault(("server", s["name"]), {})
        for k in ("capacity", "in_use", "shared", "borrowed", "waiters", "connect_attempts",
                  "connect_failures", "consecutive_connect_failures"):
            d[k] = str(s[k])
        for k in ("connecting", "idle", "active"):
            d[f"backends.{k}"] = str(s["backends"][k])
    for p in status["pools"]:
        user = "*" if p["user"] is None else p["user"]  # redacted: every user of the database
        d = out.setdefault(("pool", f"{p['database']}/{user}"), {})
        for k in ("pool_size", "slots_in_use", "transactions", "queries"):
            d[k] = str(p[k])
        for k in ("connecting", "idle", "active"):
            d[f"backends.{k}"] = str(p["backends"][k])
    d = out.setdefault(("clients", ""), {})
    for k in ("login", "idle", "waiting", "active", "accepted_total"):
        d[k] = str(status["clients"][k])
    out.setdefault(("process", ""), {})["protocol_errors"] = str(status["protocol_errors"])
    return out


def field_mismatches(html: str, status: dict) -> list[str]:
    """Differences between the page's data-* values and `status`, one line each (empty: equal)."""
    shown = page_fields(html)
    problems = []
    for key, want in expected_fields(status).items():
        got = shown.get(key)
        if got is None:
            problems.append(f"{key}: no elements on the page")
            continue
        for name, text in want.items():
            f = got.get(name)
            if f is None:
                problems.append(f"{key} {name}: missing")
            elif f.text != text:
                problems.append(f"{key} {name}: page shows {f.text!r}, /status has {text}")
    return problems


# ---- the fake /status server -----------------------------------------------------------------

FAIL = object()  # in a script: answer this poll with HTTP 503


class FakeStatusServer:
    """Serves the dashboard page at PREFIX/ and a scripted sequence at PREFIX/status.

    `script` is a list of status documents (dicts), FAIL markers, or callables returning either.
    Poll n gets script[n]; past the end it gets the last entry again, or a 503 with
    after_end="fail". Use as a context manager; `url` is the page's address; `served` lists
    what each poll got (the document, or None for a failure); reset() starts the script over.
    """

    def __init__(self, script: Sequence[Any], *, page: Path | bytes = DASHBOARD_HTML,
                 prefix: str = "", after_end: str = "repeat") -> None:
        if not script:
            raise ValueError("empty script")
        if after_end not in ("repeat", "fail"):
            raise ValueError("after_end must be 'repeat' or 'fail'")
        self.script = list(script)
        self.page = page if isinstance(page, bytes) else Path(page).read_bytes()
        self.prefix = prefix.rstrip("/")
        self.after_end = after_end
        self.served: list[dict | None] = []
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._httpd: socketserver.TCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.prefix}/"

    def reset(self) -> None:
        with self._lock:
            self.served.clear()
            self.requests.clear()

    def last_document(self) -> dict | None:
        """The newest document served successfully."""
        with self._lock:
            return next((d for d in reversed(self.served) if d is not None), None)

    def _next(self) -> dict | None:
        with self._lock:
            n = len(self.served)
            if n < len(self.script):
                entry = self.script[n]
            elif self.after_end == "fail":
                entry = FAIL
            else:
                entry = self.script[-1]
            if callable(entry):
                entry = entry()
            doc = None if entry is FAIL else copy.deepcopy(entry)
            self.served.append(doc)
            return doc

    def start(self) -> "FakeStatusServer":
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.requests.append(path)
                if path in (server.prefix + "/", server.prefix + "/index.html"):
                    self._send(200, "text/html; charset=utf-8", server.page)
                elif path == server.prefix + "/status":
                    doc = server._next()
                    if doc is None:
                        self._send(503, "text/plain", b"scripted failure\n")
                    else:
                        self._send(200, "application/json", json.dumps(doc).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-status",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "FakeStatusServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---- status documents ------------------------------------------------------------------------


def server_status(name: str = "main", **overrides: Any) -> dict:
    """One entry of /status "servers", every field present; `backends` may be a partial dict."""
    doc = {"name": name, "host": "10.0.0.5", "port": 5432, "capacity": 20, "in_use": 0,
           "shared": 0, "borrowed": 0, "waiters": 0, "breaker": "closed",
           "consecutive_connect_failures": 0,
           "backends": {"connecting": 0, "idle": 0, "active": 0},
           "connect_attempts": 0, "connect_failures": 0}
    backends = overrides.pop("backends", {})
    doc.update(overrides)
    doc["backends"].update(backends)
    return doc


def bulkhead_status(server: str, name: str, **overrides: Any) -> dict:
    """One entry of /status "bulkheads", every field present; `refused` may be partial and
    refused_total is their sum unless given."""
    doc = {"server": server, "name": name, "priority": 0, "reserved": 0, "max": 20,
           "queue_depth": 128, "max_wait_ms": 5000, "in_use": 0, "borrowed": 0, "waiters": 0,
           "oldest_wait_ms": 0, "clients": 0, "admitted": 0, "handed_off": 0, "queued": 0,
           "expired": 0, "cancelled": 0, "timeouts": 0, "refused": {r: 0 for r in REASONS},
           "refused_total": 0, "mean_hold_ms": None, "lifo": False, "retired": False}
    refused = overrides.pop("refused", {})
    total = overrides.pop("refused_total", None)
    doc.update(overrides)
    doc["refused"].update(refused)
    doc["refused_total"] = sum(doc["refused"].values()) if total is None else total
    return doc


def pool_status(database: str = "app", user: str = "app_user", server: str = "main",
                **overrides: Any) -> dict:
    """One entry of /status "pools", every field present."""
    doc = {"database": database, "user": user, "server": server, "pool_mode": "transaction",
           "pool_size": 20, "backends": {"connecting": 0, "idle": 0, "active": 0},
           "slots_in_use": 0, "paused": False, "transactions": 0, "queries": 0, "bytes_in": 0,
           "bytes_out": 0}
    backends = overrides.pop("backends", {})
    doc.update(overrides)
    doc["backends"].update(backends)
    return doc


def status_document(time: float, servers: Iterable[dict], bulkheads: Iterable[dict],
                    pools: Iterable[dict] = (), clients: dict | None = None,
                    protocol_errors: int = 0, version: str = "0.1.0") -> dict:
    """A whole /status document in the shape Sluice serves."""
    c = {"login": 0, "idle": 0, "waiting": 0, "active": 0, "accepted_total": 0}
    c.update(clients or {})
    return {"version": version, "time": float(time), "servers": list(servers),
            "bulkheads": list(bulkheads), "pools": list(pools), "clients": c,
            "protocol_errors": protocol_errors}


def overload_scenario(duration: int = 300, *, flood_at: int = 90, breaker_at: int = 230,
                      step: float = 1.0, start: float = 1_767_225_600.0,
                      seed: int = 6) -> list[dict]:
    """One status document per `step` seconds for `duration` seconds (duration/step + 1 docs).

    Server "main" (capacity 20) has critical (reserved 8, max 14, queue_depth 20, max_wait
    250 ms), batch (reserved 2, max 12, queue_depth 120, max_wait 500 ms) and default (max 4).
    From `flood_at`, 200 batch clients flood: batch holds its 12 slots, its queue stands at
    100-120 waiters (>= 80% of queue_depth) with the oldest near max_wait, and it refuses
    (queue_full, predicted_wait, some max_wait expiries), while critical keeps its reserved slots
    and stays healthy. Server "reports" (capacity 10, bulkhead "reports/default") loses its
    database at `breaker_at`: connects fail, the breaker opens, arrivals get server_down.
    """
    rng = random.Random(seed)
    steps = int(round(duration / step))
    crit = dict(admitted=0, handed_off=0, queued=0, expired=0, cancelled=0, timeouts=0)
    batch = dict(crit)
    dflt = dict(crit)
    rep = dict(crit)
    batch_refused = {r: 0 for r in REASONS}
    rep_refused = {r: 0 for r in REASONS}
    main_attempts, rep_attempts, rep_failures = 20, 6, 0
    rep_consecutive = 0
    accepted, txs, queries = 260, 0, 0
    docs = []
    for i in range(steps + 1):
        t = i * step
        flooding = t >= flood_at
        down = t >= breaker_at
        wobble = math.sin(t / 7.0)
        # critical: ~800 tx/s at 5 ms, 4-7 slots, never queues for long
        c_in_use = max(1, min(14, int(round(5 + 1.5 * wobble + rng.uniform(-1, 1)))))
        c_waiters = 1 if rng.random() < 0.1 else 0
        crit["admitted"] += int(step * (790 + rng.randint(-30, 30)))
        crit["queued"] += c_waiters
        crit["handed_off"] += c_waiters
        # batch: calm at ~60 tx/s on 3 slots; flooded: 240 tx/s on 12, the rest wait or are refused
        if flooding:
            ramp = min(1.0, (t - flood_at) / 8.0)
            b_in_use = 12 if ramp >= 0.5 else int(3 + 9 * ramp * 2)
            b_waiters = int(ramp * (104 + rng.randint(-4, 14)))
            b_oldest = ramp * (380 + rng.uniform(-60, 100))
            b_adm = 240
            ref = int(step * ramp * (160 + rng.randint(-40, 60)))
            batch_refused["queue_full"] += int(ref * 0.55)
            batch_refused["predicted_wait"] += int(ref * 0.35)
            batch_refused["max_wait"] += ref - int(ref * 0.55) - int(ref * 0.35)
            batch["expired"] += ref - int(ref * 0.55) - int(ref * 0.35)
            batch["queued"] += int(step * b_adm * ramp)
            batch["handed_off"] += int(step * b_adm * ramp)
            batch["cancelled"] += rng.randint(0, 2)
            b_clients = 200
        else:
            b_in_use = 3 + (1 if rng.random() < 0.3 else 0)
            b_waiters, b_oldest, b_adm, b_clients = 0, 0.0, 60, 20
        batch["admitted"] += int(step * (b_adm + rng.randint(-5, 5)))
        d_in_use = 2 + (1 if rng.random() < 0.4 else 0) + (1 if flooding and rng.random() < 0.5 else 0)
        dflt["admitted"] += int(step * (35 + rng.randint(-5, 5)))
        # reports: fine, then down
        if down:
            rep_attempts += 1
            rep_failures += 1
            rep_consecutive += 1
            rep_refused["server_down"] += int(step * (20 + rng.randint(-3, 3)))
            r_in_use, r_idle, r_active = 0, 0, 0
            r_connecting = 1 if rng.random() < 0.5 else 0
            # open, with a half-open probe (which fails) every 10 s
            breaker = "half_open" if (t - breaker_at) % 10 == 5 else "open"
        else:
            rep["admitted"] += int(step * (12 + rng.randint(-2, 2)))
            r_in_use = 2 + (1 if rng.random() < 0.3 else 0)
            r_idle, r_active, r_connecting = 4 - r_in_use + 2, r_in_use, 0
            breaker = "closed"
        d_in_use = min(d_in_use, 20 - c_in_use - b_in_use)  # the server has 20 slots
        m_in_use = c_in_use + b_in_use + d_in_use
        borrowed_c = max(0, c_in_use - 8)
        borrowed_b = max(0, b_in_use - 2)
        m_borrowed = borrowed_c + borrowed_b + d_in_use
        m_active = m_in_use
        m_idle = max(0, 20 - m_active - 1) if flooding else max(0, 14 - m_active)
        if flooding and i % 37 == 0:
            main_attempts += 1
        accepted += rng.randint(0, 3) + (30 if flooding and t - flood_at < step * 3 else 0)
        txs += int(step * 900)
        queries += int(step * 2600)
        doc = status_document(
            start + t,
            servers=[
                server_status("main", host="db-main.internal", capacity=20, in_use=m_in_use,
                              shared=10, borrowed=m_borrowed, waiters=b_waiters + c_waiters,
                              backends={"connecting": 0, "idle": m_idle, "active": m_active},
                              connect_attempts=main_attempts, connect_failures=0),
                server_status("reports", host="db-reports.internal", capacity=10,
                              in_use=r_in_use, shared=10, borrowed=r_in_use, waiters=0,
                              breaker=breaker, consecutive_connect_failures=rep_consecutive,
                              backends={"connecting": r_connecting, "idle": r_idle,
                                        "active": r_active},
                              connect_attempts=rep_attempts, connect_failures=rep_failures),
            ],
            bulkheads=[
                bulkhead_status("main", "critical", priority=0, reserved=8, max=14, queue_depth=20,
                                max_wait_ms=250, in_use=c_in_use, borrowed=borrowed_c,
                                waiters=c_waiters, oldest_wait_ms=3.0 if c_waiters else 0,
                                clients=20, mean_hold_ms=round(5.1 + 0.4 * wobble, 2), **crit),
                bulkhead_status("main", "batch", priority=1, reserved=2, max=12, queue_depth=120,
                                max_wait_ms=500, in_use=b_in_use, borrowed=borrowed_b,
                                waiters=b_waiters, oldest_wait_ms=round(b_oldest, 1),
                                clients=b_clients, mean_hold_ms=50.3, lifo=flooding and b_oldest > 100,
                                refused=dict(batch_refused), **batch),
                bulkhead_status("main", "default", priority=2, reserved=0, max=4, queue_depth=128,
                                max_wait_ms=5000, in_use=d_in_use, borrowed=d_in_use, waiters=0,
                                clients=12, mean_hold_ms=21.0, **dflt),
                bulkhead_status("reports", "default", priority=0, reserved=0, max=10,
                                queue_depth=32, max_wait_ms=2000, in_use=r_in_use,
                                borrowed=r_in_use, clients=6,
                                mean_hold_ms=None if down else 180.0,
                                refused=dict(rep_refused), **rep),
            ],
            pools=[
                pool_status("app", "web", "main", pool_size=14,
                            backends={"idle": max(0, 6 - c_in_use), "active": c_in_use},
                            slots_in_use=c_in_use, transactions=txs // 2, queries=queries // 2),
                pool_status("app", "batch", "main", pool_size=12,
                            backends={"idle": max(0, 4 - b_in_use), "active": b_in_use},
                            slots_in_use=b_in_use, transactions=txs // 3, queries=queries // 3),
                pool_status("reports", "analyst", "reports", pool_mode="session", pool_size=10,
                            backends={"connecting": r_connecting, "idle": r_idle,
                                      "active": r_active},
                            slots_in_use=r_in_use, transactions=txs // 20,
                            queries=queries // 20),
            ],
            clients={"login": rng.randint(0, 2),
                     "idle": (20 - c_in_use - c_waiters) + (b_clients - b_in_use - b_waiters)
                             + (12 - d_in_use) + (6 - r_in_use),
                     "waiting": b_waiters + c_waiters,
                     "active": c_in_use + b_in_use + d_in_use + r_in_use,
                     "accepted_total": accepted},
            protocol_errors=0,
        )
        docs.append(doc)
    return docs
