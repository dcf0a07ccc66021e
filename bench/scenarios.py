"""The benchmark scenarios (issue 3). Each runs against the targets `direct`, `pgbouncer` and
`sluice` in turn, repetitions interleaved (repetition 1 of every case and target, then 2, ...;
the order of the targets rotates per repetition), and appends one JSON object per measurement
to out/results.jsonl:

  {"scenario", "target", "params", "repetition", "status": "ok"|"skipped"|"error",
   "metrics": {...}, "note": ...}

See README.md in this folder for what each scenario measures.
"""

from __future__ import annotations

import asyncio
import glob
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import wire
from harness import DB_NAME, DB_PASSWORD, DB_USER, HarnessError, log

PYTHON = "/usr/bin/python3"
CONFIGS_DIR = harness.BENCH_DIR / "configs"
SLO_MS = 500.0  # brownout goodput: transactions answered within this latency

# Scenario names, in run order, and the numbers for --only.
ORDER = ["throughput", "hop", "churn", "idle", "slow", "brownout", "twoclass", "retrystorm",
         "refusal", "pool8"]
NUMBERS = {"1": ["throughput"], "2": ["hop"], "3": ["churn"], "4": ["idle"],
           "5": ["slow", "brownout"], "6": ["twoclass"], "7": ["retrystorm"], "8": ["refusal"],
           "9": ["pool8"]}
# Scenarios in which Sluice in session mode is still a meaningful comparison.
SESSION_OK = {"hop", "churn"}


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def rnd(v, digits: int = 3):
    return None if v is None else round(v, digits)


@dataclass
class Target:
    name: str                      # direct | pgbouncer | sluice
    port: int
    pooler: harness.Pooler | None = None
    pool_mode: str = "transaction"
    config_note: str = ""          # e.g. "bulkheads from configs/bulkheads-twoclass.toml"

    @property
    def pid(self) -> int | None:
        return self.pooler.pid if self.pooler else None


@dataclass
class Settings:
    quick: bool
    duration: float
    reps: int
    brownout_duration: float
    scale: int = 10
    targets: list[str] = field(default_factory=lambda: ["direct", "pgbouncer", "sluice"])


class Meter:
    """CPU seconds of the pooler process and of the whole database (postmaster tree), and wall
    time, between start() and stop()."""

    def __init__(self, pg: harness.PgCluster, target: Target) -> None:
        self.pg = pg
        self.target = target

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.pooler0 = harness.proc_cpu(self.target.pid) if self.target.pid else None
        self.db0 = harness.tree_cpu(self.pg.postmaster_pid())

    def stop(self) -> dict:
        wall = time.monotonic() - self.t0
        out = {"wall_s": rnd(wall)}
        if self.target.pid:
            p1 = harness.proc_cpu(self.target.pid)
            if p1 is not None and self.pooler0 is not None:
                out["pooler_cpu_s"] = rnd(p1 - self.pooler0, 3)
                out["pooler_cores"] = rnd((p1 - self.pooler0) / wall, 3)
        d1 = harness.tree_cpu(self.pg.postmaster_pid())
        if d1 is not None and self.db0 is not None:
            out["db_cpu_s"] = rnd(d1 - self.db0, 3)
            out["db_cores"] = rnd((d1 - self.db0) / wall, 3)
        return out


def per_1000(metrics: dict, count: float | None) -> None:
    """Adds CPU seconds per 1000 transactions for the pooler and the database."""
    if not count:
        return
    for key in ("pooler_cpu_s", "db_cpu_s"):
        if metrics.get(key) is not None:
            metrics[key.replace("_s", "_s_per_1000tx")] = rnd(metrics[key] / count * 1000, 4)


class DbMonitor:
    """One superuser connection to database `bench`, opened before the load starts (once
    PostgreSQL is at max_connections even the superuser-reserved slots can run out), used to
    read the work counter and to sample the client backends every 0.25 s: all of them (the
    other pooler's idle pool included) and those running a statement."""

    def __init__(self, pg: harness.PgCluster) -> None:
        self.conn = pg.connect_admin(DB_NAME)
        self.lock = threading.Lock()
        self.samples: list[int] = []
        self.active: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def work_count(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT last_value FROM bench_work").fetchone()[0])

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                with self.lock:
                    row = self.conn.execute(
                        "SELECT count(*), count(*) FILTER (WHERE state = 'active')"
                        " FROM pg_stat_activity WHERE datname = %s"
                        " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                        (DB_NAME,)).fetchone()
                self.samples.append(row[0])
                self.active.append(row[1])
                self._stop.wait(0.25)
        except Exception as exc:  # noqa: BLE001 - monitoring must not kill a run
            log(f"backend sampler stopped: {exc}")

    def start_sampling(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop_sampling()
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass

    def summary(self) -> dict:
        if not self.samples:
            return {}
        return {"db_backends_max": max(self.samples),
                "db_backends_active_max": max(self.active),
                "db_backends_active_mean": rnd(sum(self.active) / len(self.active), 1)}


# ---- the bench: targets, recording, repetitions ----------------------------------------------


class Bench:
    def __init__(self, settings: Settings, pg: harness.PgCluster, base: Path,
                 targets: dict[str, Target], sluice_info: dict, results_path: Path,
                 sluice_factory, sluice_probe, pooler_factory=None,
                 run_id: str = "") -> None:
        self.run_id = run_id
        self.s = settings
        self.pg = pg
        self.base = base
        self.targets = targets
        self.sluice_info = sluice_info
        self.results_path = results_path
        self.sluice_factory = sluice_factory  # (extra_toml, tag) -> a started Sluice
        self.sluice_probe = sluice_probe      # (extra_toml) -> (accepted, --check-config output)
        # (kind "pgbouncer"|"sluice", pool_size, tag) -> a started dedicated instance
        self.pooler_factory = pooler_factory
        self.work = Path(tempfile.mkdtemp(prefix="runs-", dir=base))

    # -- recording

    def record(self, scenario: str, target: str, params: dict, rep: int, metrics: dict,
               status: str = "ok", note: str | None = None) -> None:
        obj = {"run_id": self.run_id, "scenario": scenario, "target": target, "params": params,
               "repetition": rep,
               "status": status, "metrics": metrics, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if note:
            obj["note"] = note
        with open(self.results_path, "a") as f:
            f.write(json.dumps(obj) + "\n")
        brief = ", ".join(f"{k}={v}" for k, v in metrics.items()
                          if not isinstance(v, (dict, list)))[:220]
        log(f"{scenario} {target} {json.dumps(params)} rep {rep}: {status}"
            f"{' (' + note + ')' if note else ''} {brief}")

    def target_order(self, rep: int) -> list[str]:
        names = [n for n in ("direct", "pgbouncer", "sluice") if n in self.targets]
        k = (rep - 1) % len(names) if names else 0
        return names[k:] + names[:k]

    def sluice_skip_reason(self, scenario: str) -> str | None:
        t = self.targets.get("sluice")
        if t is None or t.pool_mode == "transaction" or scenario in SESSION_OK:
            return None
        if self.sluice_info.get("transaction_mode") is False:
            return "skipped: sluice lacks transaction mode"
        return "skipped: sluice runs in session mode"

    def skip_all(self, scenario: str, cases: list[dict], reason: str) -> None:
        for params in cases:
            self.record(scenario, "sluice", params, 1, {}, status="skipped", note=reason)

    def ensure_up(self, target: Target) -> str | None:
        """Waits for the previous run's connections to go; restarts a pooler that died.
        Returns a note when something was wrong."""
        if self.pg.settle() is None:
            log("the database still had the previous run's connections after 15 s")
        if target.pooler is None:
            return None
        if target.pooler.ensure_running():
            return None
        target.port = target.pooler.port
        return f"{target.name} had exited and was restarted before this run"

    def check_alive_after(self, target: Target) -> str | None:
        if target.pooler is not None and not target.pooler.child.running():
            return f"{target.name} exited during the run (exit {target.pooler.child.proc.poll()})"
        return None

    # -- pgbench

    def pgbench(self, target: Target, clients: int, duration: float, *, mode: str = "simple",
                builtin: str | None = "-S", script: str | None = None, connect: bool = False,
                sampling: float | None = None, keep_log: bool = False) -> dict:
        run_dir = Path(tempfile.mkdtemp(prefix="pgbench-", dir=self.work))
        threads = max(1, min(2, clients))
        # pgbench's -T clock includes opening the connections, which for 200+ direct clients
        # (a fork and a SCRAM exchange each) can take seconds: short runs get some slack.
        if duration < 10 and clients >= 64:
            duration = max(duration, 6.0)
        argv = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(target.port), "-U", DB_USER,
                "-c", str(clients), "-j", str(threads), "-T", str(int(duration)), "-M", mode]
        if script:
            path = run_dir / "script.sql"
            path.write_text(script)
            argv += ["-f", str(path)]
        elif builtin:
            argv.append(builtin)
        if connect:
            argv.append("-C")
        log_prefix = run_dir / "tx"
        if sampling is not None:
            argv += ["-l", f"--log-prefix={log_prefix}"]
            if sampling < 1.0:
                argv.append(f"--sampling-rate={sampling}")
        argv.append(DB_NAME)
        meter = Meter(self.pg, target)
        started_epoch = time.time()
        meter.start()
        code, out, err = harness.run_bounded(argv, timeout=duration + 30,
                                             env=harness.clean_env(PGPASSWORD=DB_PASSWORD),
                                             cwd=run_dir)
        metrics = meter.stop()
        metrics.update(parse_pgbench(out, err))
        metrics["exit_code"] = code
        metrics["pgbench_T_s"] = int(duration)
        if code == -9:
            metrics["error"] = (f"pgbench did not finish within -T {int(duration)} s + 30 s and was"
                                " killed (a hang)")
        lat_us: list[int] = []
        events: list[tuple[float, int]] = []
        for fn in glob.glob(f"{log_prefix}.*"):
            with open(fn) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 6 and parts[2].isdigit():
                        lat = int(parts[2])
                        lat_us.append(lat)
                        if keep_log:
                            events.append((int(parts[4]) + int(parts[5]) / 1e6 - started_epoch,
                                           lat))
        if lat_us:
            metrics["p50_ms"] = rnd(percentile(lat_us, 50) / 1000)
            metrics["p99_ms"] = rnd(percentile(lat_us, 99) / 1000)
            metrics["latency_samples"] = len(lat_us)
        per_1000(metrics, metrics.get("tx"))
        if code not in (0,) and not metrics.get("tx"):
            metrics["stderr"] = err[-600:]
        if keep_log:
            metrics["_events"] = events
        return metrics

    # -- driver

    def driver(self, target: Target, classes: list[str], duration: float,
               sample_backends: bool = False, work_counter: bool = False,
               isolate_classes: bool = False) -> dict:
        argv = [PYTHON, str(harness.BENCH_DIR / "driver.py"), "--port", str(target.port),
                "--user", DB_USER, "--dbname", DB_NAME, "--duration", str(duration),
                "--scale", str(self.s.scale)]
        if isolate_classes:
            argv.append("--isolate-classes")
        for c in classes:
            argv += ["--class", c]
        monitor = DbMonitor(self.pg) if (sample_backends or work_counter) else None
        child = harness.Child(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=open(self.work / "driver.stderr", "ab"),
                              env=harness.clean_env(PGPASSWORD=DB_PASSWORD), text=True)
        result: dict = {}
        try:
            ready = _read_event(child, "ready", timeout=120)
            meter = Meter(self.pg, target)
            seq0 = monitor.work_count() if work_counter else None
            if sample_backends:
                monitor.start_sampling()
            meter.start()
            child.proc.stdin.write("go\n")
            child.proc.stdin.flush()
            _read_event(child, "stop", timeout=duration + 60)
            metrics = meter.stop()
            if work_counter:
                metrics["db_statements"] = monitor.work_count() - seq0
                metrics["db_statements_per_s"] = rnd(metrics["db_statements"] / duration, 1)
            if sample_backends:
                monitor.stop_sampling()
                metrics.update(monitor.summary())
            _read_event(child, "done", timeout=60)
            res = _read_event(child, "result", timeout=60)
            metrics["driver_setup_s"] = ready.get("setup_s")
            metrics["driver_close_s"] = res.get("close_s")
            result = {"metrics": metrics, "classes": res["classes"], "ready": ready}
        finally:
            child.stop(timeout=5)
            if monitor:
                monitor.close()
        return result

    # -- Sluice variants with a config fragment (bulkheads)

    def sluice_variant(self, scenario: str) -> tuple[Target | None, str | None, object]:
        """The Sluice target for an admission-control scenario: a dedicated instance with
        configs/bulkheads-SCENARIO.toml appended when Sluice accepts it (checked with
        --check-config) and runs transaction mode, else the main instance (a single pool) if it
        runs in transaction mode. Returns (target, skip reason, instance to stop afterwards)."""
        main = self.targets.get("sluice")
        if main is None:
            return None, None, None
        fragment_path = CONFIGS_DIR / f"bulkheads-{scenario}.toml"
        verdicts = self.sluice_info.setdefault("bulkheads", {})
        tx = main.pool_mode == "transaction"
        if fragment_path.exists():
            ok, out = self.sluice_probe(fragment_path.read_text())
            first = next((line for line in out.splitlines() if line.strip()), "")
            verdicts[scenario] = "accepted" if ok else f"refused by --check-config: {first[:300]}"
            if ok and tx:
                inst = self.sluice_factory(fragment_path.read_text(), scenario)
                t = Target("sluice", inst.port, inst, "transaction",
                           f"bulkheads from configs/{fragment_path.name}")
                return t, None, inst
        reason = self.sluice_skip_reason(scenario)
        if reason:
            return None, reason, None
        main.config_note = "single pool (bulkhead config not accepted)"
        return main, None, None


def _read_event(child: harness.Child, event: str, timeout: float) -> dict:
    """Reads JSON lines from a child's stdout until one with this event (with a deadline)."""
    deadline = time.monotonic() + timeout
    box: dict = {}

    def reader() -> None:
        while True:
            line = child.proc.stdout.readline()
            if not line:
                box["eof"] = True
                return
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("event") == event:
                box["obj"] = obj
                return
            if obj.get("event") == "client_crash":
                log(f"driver: {obj}")

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    th.join(max(0.0, deadline - time.monotonic()))
    if "obj" in box:
        return box["obj"]
    raise HarnessError(f"child {child.argv[1]} gave no '{event}' event"
                       f" ({'it exited' if box.get('eof') else 'timeout'})")


def aborted_note(m: dict) -> str | None:
    if m.get("aborted_clients"):
        return (f"{m['aborted_clients']} pgbench clients aborted (pgbench 15 drops a client at its"
                f" first error): {m.get('first_error', '')}")
    return None


def pgbench_status(m: dict) -> str:
    """A run in which pgbench failed or dropped clients is an error, not a measurement."""
    return "ok" if m.get("tx") and m.get("exit_code") == 0 and not m.get("aborted_clients") \
        else "error"


def parse_pgbench(out: str, err: str) -> dict:
    import re

    m: dict = {}

    def grab(pattern: str, key: str, cast=float, text: str = out) -> None:
        r = re.search(pattern, text, re.MULTILINE)
        if r:
            m[key] = cast(r.group(1))

    grab(r"^tps = ([\d.]+)", "tps", lambda v: round(float(v), 1))
    grab(r"^latency average = ([\d.]+) ms", "lat_avg_ms")
    grab(r"^latency stddev = ([\d.]+) ms", "lat_stddev_ms")
    grab(r"^number of transactions actually processed: (\d+)", "tx", int)
    grab(r"^number of failed transactions: (\d+)", "failed", int)
    grab(r"^initial connection time = ([\d.]+) ms", "initial_conn_ms")
    grab(r"^average connection time = ([\d.]+) ms", "avg_conn_ms")
    aborted = len(re.findall(r"client \d+ aborted", err))
    if aborted:
        m["aborted_clients"] = aborted
        first = re.search(r"^.*(?:ERROR|FATAL|error).*$", err, re.MULTILINE)
        if first:
            m["first_error"] = first.group(0)[:300]
    return m


# ---- scenario 1: throughput ------------------------------------------------------------------


def throughput(b: Bench) -> None:
    cases = [{"mode": mode, "clients": c} for mode in ("simple", "extended", "prepared")
             for c in (16, 64, 256)]
    skip = b.sluice_skip_reason("throughput")
    if skip:
        b.skip_all("throughput", cases, skip)
    for rep in range(1, b.s.reps + 1):
        for case in cases:
            for name in b.target_order(rep):
                if case["mode"] == "prepared" and name != "sluice":
                    continue  # PgBouncer 1.18 cannot run it; the issue asks for Sluice only
                if name == "sluice" and skip:
                    continue
                t = b.targets[name]
                note = b.ensure_up(t)
                m = b.pgbench(t, case["clients"], b.s.duration, mode=case["mode"], sampling=0.1)
                note = note or b.check_alive_after(t)
                params = dict(case, threads=2, pool_size=20, pool_mode=t.pool_mode,
                              duration_s=b.s.duration)
                b.record("throughput", name, params, rep, m, status=pgbench_status(m),
                         note=note or m.get("first_error") or m.get("error"))


# ---- scenario 2: hop cost --------------------------------------------------------------------


def hop(b: Bench) -> None:
    for rep in range(1, b.s.reps + 1):
        for mode in ("simple", "extended"):
            for name in b.target_order(rep):
                t = b.targets[name]
                note = b.ensure_up(t)
                m = b.pgbench(t, 1, b.s.duration, mode=mode, sampling=0.2)
                if m.get("lat_avg_ms") is not None:
                    m["lat_avg_us"] = round(m["lat_avg_ms"] * 1000, 1)
                note = note or b.check_alive_after(t)
                b.record("hop", name, {"mode": mode, "clients": 1, "pool_mode": t.pool_mode,
                                       "duration_s": b.s.duration}, rep, m,
                         status=pgbench_status(m),
                         note=note or m.get("first_error") or m.get("error"))


# ---- scenario 3: connection churn ------------------------------------------------------------


def churn(b: Bench) -> None:
    for rep in range(1, b.s.reps + 1):
        for clients in (1, 32):
            for name in b.target_order(rep):
                t = b.targets[name]
                note = b.ensure_up(t)
                m = b.pgbench(t, clients, b.s.duration, mode="simple", connect=True)
                if m.get("tps") is not None:
                    m["connections_per_s"] = m["tps"]
                note = note or b.check_alive_after(t)
                b.record("churn", name, {"clients": clients, "mode": "simple", "connect": "-C",
                                         "pool_mode": t.pool_mode, "duration_s": b.s.duration},
                         rep, m, status=pgbench_status(m),
                         note=note or m.get("first_error") or m.get("error"))


# ---- scenario 4: many idle clients -----------------------------------------------------------


async def _fresh_queries(port: int, n: int = 5) -> dict:
    connect_ms, query_ms, errors = [], [], {}
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            conn = await wire.connect("127.0.0.1", port, DB_USER, DB_PASSWORD, DB_NAME,
                                      application_name="bench-fresh", timeout=10)
        except (wire.PgError, asyncio.TimeoutError, OSError) as exc:
            key = getattr(exc, "sqlstate", type(exc).__name__)
            errors[key] = str(exc)[:200]
            continue
        t1 = time.perf_counter()
        try:
            await asyncio.wait_for(
                conn.query("SELECT abalance FROM pgbench_accounts WHERE aid = 1"), 10)
            query_ms.append((time.perf_counter() - t1) * 1000)
            connect_ms.append((t1 - t0) * 1000)
        except (wire.PgError, asyncio.TimeoutError) as exc:
            key = getattr(exc, "sqlstate", type(exc).__name__)
            errors[key] = str(exc)[:200]
        finally:
            conn.close()
    out: dict = {}
    if query_ms:
        total = [c + q for c, q in zip(connect_ms, query_ms)]
        out.update({"fresh_connect_ms": rnd(percentile(connect_ms, 50)),
                    "fresh_query_ms": rnd(percentile(query_ms, 50)),
                    "fresh_total_ms": rnd(percentile(total, 50)),
                    "fresh_total_max_ms": rnd(max(total))})
    out["fresh_ok"] = len(query_ms)
    if errors:
        out["fresh_errors"] = errors
    return out


def idle(b: Bench) -> None:
    counts = (2000, 10000)
    skip = b.sluice_skip_reason("idle")
    if skip:
        b.skip_all("idle", [{"clients": n} for n in counts], skip)
    for rep in range(1, b.s.reps + 1):
        for n in counts:
            for name in b.target_order(rep):
                if name == "sluice" and skip:
                    continue
                t = b.targets[name]
                note = b.ensure_up(t)
                if t.pooler is not None:
                    # Memory per client is the RSS growth of a fresh process (see restart_fresh).
                    t.pooler.restart_fresh()
                    t.port = t.pooler.port
                m = idle_once(b, t, n)
                note = note or b.check_alive_after(t)
                b.record("idle", name, {"clients": n, "pool_mode": t.pool_mode}, rep, m,
                         status="ok" if m.get("connected") else "error", note=note)


def idle_once(b: Bench, t: Target, n: int) -> dict:
    m: dict = {}
    pid = t.pid
    settle = 1.0
    time.sleep(settle)
    rss0 = harness.vm_rss_kb(pid) if pid else None
    pss0 = harness.tree_pss_kb(b.pg.postmaster_pid()) if pid is None else None
    argv = [PYTHON, str(harness.BENCH_DIR / "idle.py"), "hold", "--port", str(t.port),
            "--user", DB_USER, "--dbname", DB_NAME, "--count", str(n), "--concurrency", "100",
            "--open-timeout", "120", "--max-hold", "300", "--application-name", "bench-idle",
            "--give-up-after", "1000"]
    child = harness.Child(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=open(b.work / "idle.stderr", "ab"),
                          env=harness.clean_env(PGPASSWORD=DB_PASSWORD), text=True)
    try:
        ready = _read_event(child, "ready", timeout=200)
        m["connected"] = ready["connected"]
        m["failed"] = ready["failed"]
        if ready.get("messages"):
            m["failed_messages"] = ready["messages"]
        m["open_s"] = ready["open_seconds"]
        if ready.get("stopped_early"):
            m["stopped_early"] = "stopped opening after 1000 refusals"
        time.sleep(settle)
        if pid:
            rss1 = harness.vm_rss_kb(pid)
            m["rss_before_kb"], m["rss_held_kb"] = rss0, rss1
            if rss0 is not None and rss1 is not None and ready["connected"]:
                m["bytes_per_client"] = round((rss1 - rss0) * 1024 / ready["connected"], 1)
            m["pooler_fd_limit"] = harness.fd_limit(pid)
        else:
            pss1 = harness.tree_pss_kb(b.pg.postmaster_pid())
            m["db_pss_before_kb"], m["db_pss_held_kb"] = pss0, pss1
            if ready["connected"]:
                m["bytes_per_client"] = round((pss1 - pss0) * 1024 / ready["connected"], 1)
                m["memory_measure"] = "PSS of all PostgreSQL processes"
        m.update(asyncio.run(_fresh_queries(t.port)))
        child.proc.stdin.write("close\n")
        child.proc.stdin.flush()
        closed = _read_event(child, "closed", timeout=60)
        m["alive_at_close"] = closed.get("alive_at_close")
    except HarnessError as exc:
        m["error"] = str(exc)
    finally:
        child.stop(timeout=10)
    time.sleep(settle)
    if pid:
        m["rss_after_close_kb"] = harness.vm_rss_kb(pid)
    return m


# ---- scenario 5: slow dependency and brownout ------------------------------------------------


def slow(b: Bench) -> None:
    params = {"clients": 200, "query": "SELECT pg_sleep(0.02)", "pool_size": 20}
    skip = b.sluice_skip_reason("slow")
    if skip:
        b.skip_all("slow", [params], skip)
    for rep in range(1, b.s.reps + 1):
        for name in b.target_order(rep):
            if name == "sluice" and skip:
                continue
            t = b.targets[name]
            note = b.ensure_up(t)
            m = b.pgbench(t, 200, b.s.duration, script="SELECT pg_sleep(0.02);\n", sampling=1.0)
            note = note or b.check_alive_after(t)
            b.record("slow", name, dict(params, pool_mode=t.pool_mode, duration_s=b.s.duration),
                     rep, m, status="error" if not m.get("tx") else "ok",
                     note=note or aborted_note(m))


def brownout(b: Bench) -> None:
    dur = b.s.brownout_duration
    third = dur / 3.0
    params = {"clients": 200, "normal_s": 0.001, "brownout_s": 0.2, "pool_size": 20,
              "brownout_from_s": round(third, 1), "brownout_to_s": round(2 * third, 1),
              "slo_ms": SLO_MS, "duration_s": dur}
    skip = b.sluice_skip_reason("brownout")
    if skip:
        b.skip_all("brownout", [params], skip)
    script = "SELECT pg_sleep(delay) FROM bench_control;\n"
    for rep in range(1, b.s.reps + 1):
        for name in b.target_order(rep):
            if name == "sluice" and skip:
                continue
            t = b.targets[name]
            note = b.ensure_up(t)
            stop = threading.Event()
            control_conn = b.pg.connect_admin(DB_NAME)  # before the 200 clients arrive
            t_start = time.time()

            def control() -> None:
                try:
                    with control_conn as conn:
                        if not stop.wait(max(0.0, t_start + third - time.time())):
                            conn.execute("UPDATE bench_control SET delay = 0.2")
                        if not stop.wait(max(0.0, t_start + 2 * third - time.time())):
                            conn.execute("UPDATE bench_control SET delay = 0.001")
                except Exception as exc:  # noqa: BLE001
                    log(f"brownout control failed: {exc}")

            th = threading.Thread(target=control, daemon=True)
            th.start()
            try:
                m = b.pgbench(t, 200, dur, script=script, sampling=1.0, keep_log=True)
            finally:
                stop.set()
                th.join(timeout=10)
                b.pg.execute("UPDATE bench_control SET delay = 0.001", dbname=DB_NAME)
            events = m.pop("_events", [])
            m["timeline"] = brownout_timeline(events, dur)
            # "before" starts at the first answer: opening 200 direct connections takes seconds.
            first = min((at for at, _ in events), default=0.0)
            phases = {"before": (min(first, third - 1), third), "during": (third, 2 * third),
                      "after": (2 * third, dur)}
            for phase, (lo, hi) in phases.items():
                lat = [l for (at, l) in events if lo <= at < hi]
                span = hi - lo
                m[f"{phase}_tps"] = rnd(len(lat) / span, 1)
                m[f"{phase}_goodput"] = rnd(sum(1 for l in lat if l <= SLO_MS * 1000) / span, 1)
                m[f"{phase}_p99_ms"] = rnd((percentile(lat, 99) or 0) / 1000)
            note = note or b.check_alive_after(t)
            b.record("brownout", name, dict(params, pool_mode=t.pool_mode), rep, m,
                     status="error" if not m.get("tx") else "ok", note=note or aborted_note(m))


def brownout_timeline(events: list[tuple[float, int]], dur: float) -> list[dict]:
    buckets: dict[int, list[int]] = {}
    for at, lat in events:
        if 0 <= at < dur + 5:
            buckets.setdefault(int(at), []).append(lat)
    out = []
    for sec in range(int(math.ceil(dur)) + 2):
        lat = buckets.get(sec, [])
        out.append({"t": sec, "tps": len(lat),
                    "goodput": sum(1 for l in lat if l <= SLO_MS * 1000),
                    "p50_ms": rnd(percentile(lat, 50) / 1000) if lat else None,
                    "p99_ms": rnd(percentile(lat, 99) / 1000) if lat else None})
    return out


# ---- scenario 6: two classes -----------------------------------------------------------------

CRITICAL_SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = {aid}"
BATCH_SQL = "SELECT pg_sleep(0.02)"


def twoclass(b: Bench) -> None:
    cases = [{"critical": 20, "batch": 0}, {"critical": 20, "batch": 200}]
    st, skip, inst = b.sluice_variant("twoclass")
    if skip:
        b.skip_all("twoclass", cases, skip)
    try:
        for rep in range(1, b.s.reps + 1):
            for case in cases:
                for name in b.target_order(rep):
                    t = st if name == "sluice" else b.targets[name]
                    if t is None:
                        continue
                    note = b.ensure_up(t)
                    classes = [f"critical:{case['critical']}:hint:{CRITICAL_SQL}"]
                    if case["batch"]:
                        classes.append(f"batch:{case['batch']}:hint:{BATCH_SQL}")
                    params = dict(case, retry="hint", pool_mode=t.pool_mode,
                                  duration_s=b.s.duration)
                    if t.config_note:
                        params["sluice_config"] = t.config_note
                    try:
                        # Each class in its own driver process: the critical clients' latency
                        # must not include the batch clients' Python work.
                        r = b.driver(t, classes, b.s.duration, isolate_classes=True)
                        m = r["metrics"]
                        m["classes"] = r["classes"]
                        total = sum(c["ok"] for c in r["classes"].values())
                        per_1000(m, total)
                        status = "ok"
                    except HarnessError as exc:
                        m, status = {"error": str(exc)}, "error"
                    note = note or b.check_alive_after(t)
                    b.record("twoclass", name, params, rep, m, status=status, note=note)
    finally:
        if inst is not None:
            inst.stop()


# ---- scenario 7: retry storm -----------------------------------------------------------------

STORM_CLIENTS = 500
STORM_SQL = "SELECT nextval('bench_work'), pg_sleep(0.02)"


def retrystorm(b: Bench) -> None:
    cases = [{"clients": STORM_CLIENTS, "retry": "immediate"},
             {"clients": STORM_CLIENTS, "retry": "hint"}]
    st, skip, inst = b.sluice_variant("retrystorm")
    if skip:
        b.skip_all("retrystorm", cases, skip)
    try:
        for rep in range(1, b.s.reps + 1):
            for case in cases:
                for name in b.target_order(rep):
                    t = st if name == "sluice" else b.targets[name]
                    if t is None:
                        continue
                    note = b.ensure_up(t)
                    params = dict(case, query=STORM_SQL, pool_mode=t.pool_mode,
                                  duration_s=b.s.duration)
                    if t.config_note:
                        params["sluice_config"] = t.config_note
                    try:
                        r = b.driver(t, [f"storm:{case['clients']}:{case['retry']}:{STORM_SQL}"],
                                     b.s.duration, sample_backends=True, work_counter=True)
                        m = r["metrics"]
                        c = r["classes"]["storm"]
                        m["classes"] = r["classes"]
                        m["goodput"] = c["tps"]
                        m["attempts_per_s"] = c["attempts_per_s"]
                        m["connect_attempts"] = c["connect_attempts"]
                        m["errors"] = c["errors"]
                        m["setup_errors"] = c["setup_errors"]
                        m["p50_ms"], m["p99_ms"] = c["p50_ms"], c["p99_ms"]
                        m["req_p99_ms"] = c["req_p99_ms"]
                        per_1000(m, c["ok"])
                        status = "ok"
                    except HarnessError as exc:
                        m, status = {"error": str(exc)}, "error"
                    note = note or b.check_alive_after(t)
                    b.record("retrystorm", name, params, rep, m, status=status, note=note)
    finally:
        if inst is not None:
            inst.stop()


# ---- scenario 8: refusal cost ----------------------------------------------------------------

HOLD_SQL = "SELECT pg_sleep(0.5)"
FLOOD_SQL = "SELECT 1"


def refusal(b: Bench) -> None:
    pooled = {"holders": 20, "hold_query": HOLD_SQL, "flood_clients": 100,
              "flood_query": FLOOD_SQL, "retry": "immediate"}
    direct = {"held_connections": 400, "flood_connectors": 16,
              "flood": "connection attempts, retried at once"}
    st, skip, inst = b.sluice_variant("refusal")
    if skip:
        b.skip_all("refusal", [pooled], skip)
    try:
        for rep in range(1, b.s.reps + 1):
            for name in b.target_order(rep):
                t = st if name == "sluice" else b.targets[name]
                if t is None:
                    continue
                note = b.ensure_up(t)
                if name == "direct":
                    m = refusal_direct(b, t)
                    params = dict(direct, duration_s=b.s.duration)
                else:
                    params = dict(pooled, pool_mode=t.pool_mode, duration_s=b.s.duration)
                    if t.config_note:
                        params["sluice_config"] = t.config_note
                    m = refusal_pooled(b, t)
                note = note or b.check_alive_after(t)
                b.record("refusal", name, params, rep, m,
                         status="error" if "error" in m else "ok", note=note)
    finally:
        if inst is not None:
            inst.stop()


def refusal_pooled(b: Bench, t: Target) -> dict:
    classes = [f"hold:20:hint:{HOLD_SQL}", f"flood:100:immediate:{FLOOD_SQL}"]
    try:
        r = b.driver(t, classes, b.s.duration)
    except HarnessError as exc:
        return {"error": str(exc)}
    m = r["metrics"]
    f = r["classes"]["flood"]
    m["classes"] = r["classes"]
    m["flood_attempts"] = f["attempts"]
    m["flood_ok"] = f["ok"]
    m["refusals"] = f["error_total"]
    m["refusals_per_s"] = rnd(f["error_total"] / b.s.duration, 1)
    m["flood_errors"] = f["errors"]
    m["flood_p99_ms"] = f["p99_ms"]
    cpu = m.get("pooler_cpu_s")
    if cpu is not None:
        if f["error_total"]:
            m["pooler_cpu_us_per_refusal"] = rnd(cpu / f["error_total"] * 1e6, 1)
        if f["attempts"]:
            m["pooler_cpu_us_per_flood_request"] = rnd(cpu / f["attempts"] * 1e6, 1)
    if not f["error_total"]:
        m["what_happens"] = ("no refusals: the flood waits in the pooler's queue "
                             f"(flood p99 {f['p99_ms']} ms, {f['tps']} flood TPS)")
    return m


def refusal_direct(b: Bench, t: Target) -> dict:
    """Direct: fill PostgreSQL to max_connections with idle clients, then flood it with
    connection attempts; each refusal (53300) costs a fork and an exit in PostgreSQL."""
    m: dict = {}
    hold = harness.Child([PYTHON, str(harness.BENCH_DIR / "idle.py"), "hold", "--port",
                          str(t.port), "--user", DB_USER, "--dbname", DB_NAME, "--count", "400",
                          "--concurrency", "50", "--give-up-after", "20", "--max-hold", "300"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=open(b.work / "idle.stderr", "ab"),
                         env=harness.clean_env(PGPASSWORD=DB_PASSWORD), text=True)
    try:
        ready = _read_event(hold, "ready", timeout=120)
        m["held"] = ready["connected"]
        meter = Meter(b.pg, t)
        meter.start()
        code, out, err = harness.run_bounded(
            [PYTHON, str(harness.BENCH_DIR / "idle.py"), "flood", "--port", str(t.port),
             "--user", DB_USER, "--dbname", DB_NAME, "--concurrency", "16",
             "--duration", str(b.s.duration)],
            timeout=b.s.duration + 60, env=harness.clean_env(PGPASSWORD=DB_PASSWORD))
        m.update(meter.stop())
        res = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        outcomes = res.get("outcomes", {})
        refused = sum(v for k, v in outcomes.items() if k not in ("connected", "timeout",
                                                                  "oserror", "conn"))
        m["flood_outcomes"] = outcomes
        m["refusals"] = refused
        m["refusals_per_s"] = rnd(refused / b.s.duration, 1)
        if res.get("messages"):
            m["messages"] = res["messages"]
        if refused and m.get("db_cpu_s") is not None:
            m["db_cpu_us_per_refusal"] = rnd(m["db_cpu_s"] / refused * 1e6, 1)
        hold.proc.stdin.write("close\n")
        hold.proc.stdin.flush()
        _read_event(hold, "closed", timeout=60)
    except (HarnessError, ValueError) as exc:
        m["error"] = str(exc)
    finally:
        hold.stop(timeout=10)
    return m


# ---- scenario 9: throughput over a pool of 8 -------------------------------------------------


POOL8_SIZE = 8
POOL8_CLIENTS = 64


def pool8(b: Bench) -> None:
    """`pgbench -S`, 64 clients (-j 2) over 8 server connections: dedicated PgBouncer
    (default_pool_size 8) and Sluice (pool_size 8) instances, transaction mode; direct has 64
    connections (no pool). Same accounting as `throughput`."""
    cases = [{"mode": mode, "clients": POOL8_CLIENTS} for mode in ("simple", "extended",
                                                                     "prepared")]
    skip = b.sluice_skip_reason("pool8")
    if "sluice" in b.targets and b.targets["sluice"].pool_mode != "transaction":
        skip = skip or "skipped: sluice runs in session mode"
    if skip:
        b.skip_all("pool8", cases, skip)
    targets: dict[str, Target] = {}
    started: list[harness.Pooler] = []
    try:
        for name in b.target_order(1):
            if name == "direct":
                targets[name] = b.targets[name]
            elif name == "sluice" and skip:
                continue
            else:
                if b.pooler_factory is None:
                    raise HarnessError("pool8 needs dedicated pooler instances (no factory)")
                inst = b.pooler_factory(name, POOL8_SIZE, "pool8")
                started.append(inst)
                targets[name] = Target(name, inst.port, inst, "transaction",
                                       f"dedicated instance, pool size {POOL8_SIZE}")
                log(f"pool8: dedicated {name} on 127.0.0.1:{inst.port} (pool size {POOL8_SIZE})")
        for rep in range(1, b.s.reps + 1):
            for case in cases:
                for name in b.target_order(rep):
                    if name not in targets:
                        continue
                    if case["mode"] == "prepared" and name != "sluice":
                        continue  # PgBouncer 1.18 cannot run it
                    t = targets[name]
                    note = b.ensure_up(t)
                    m = b.pgbench(t, case["clients"], b.s.duration, mode=case["mode"],
                                  sampling=0.1)
                    note = note or b.check_alive_after(t)
                    params = dict(case, threads=2,
                                  pool_size=None if name == "direct" else POOL8_SIZE,
                                  pool_mode=t.pool_mode, duration_s=b.s.duration)
                    b.record("pool8", name, params, rep, m, status=pgbench_status(m),
                             note=note or m.get("first_error") or m.get("error"))
    finally:
        for inst in started:
            inst.stop()


SCENARIOS = {"throughput": throughput, "hop": hop, "churn": churn, "idle": idle, "slow": slow,
             "brownout": brownout, "twoclass": twoclass, "retrystorm": retrystorm,
             "refusal": refusal, "pool8": pool8}


def select(only: str | None) -> list[str]:
    if not only:
        return list(ORDER)
    chosen: set[str] = set()
    for item in only.split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item in NUMBERS:
            chosen.update(NUMBERS[item])
        elif item in SCENARIOS:
            chosen.add(item)
        else:
            raise SystemExit(f"unknown scenario {item!r}; choose from "
                             f"{', '.join(ORDER)} or 1-9")
    return [s for s in ORDER if s in chosen]
