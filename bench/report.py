"""Turns out/results.jsonl (+ out/run.json) into RESULTS.md and plots/*.png.

Numbers are medians over repetitions of each (scenario, target, parameters). Ratios are taken
between medians of the same run. Plots use matplotlib (Debian's python3-matplotlib, Agg).
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
PLOTS_DIR = BENCH_DIR / "plots"
TARGETS = ("direct", "pgbouncer", "sluice")
LABEL = {"direct": "direct", "pgbouncer": "PgBouncer", "sluice": "Sluice"}
COLOR = {"direct": "#7f7f7f", "pgbouncer": "#1f77b4", "sluice": "#d62728"}


# ---- loading ---------------------------------------------------------------------------------


def sanitize(text: str) -> str:
    """No paths of the machine that ran the benchmark in committed files."""
    text = text.replace(str(REPO_DIR) + "/", "")
    text = re.sub(r"/tmp/sluice-bench-[^/\s]+/(?:[^/\s]+/)*", "", text)
    return text


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
        elif isinstance(v, str):
            out[key] = v
    return out


def pkey(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


class Results:
    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows
        # (scenario, target, params) -> list of flattened metrics of ok repetitions
        self.ok: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        self.raw: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        self.skipped: dict[tuple[str, str], str] = {}
        self.errors: list[dict] = []
        for r in rows:
            key = (r["scenario"], r["target"], pkey(r.get("params", {})))
            if r["status"] == "ok":
                self.ok[key].append(flatten(r.get("metrics", {})))
                self.raw[key].append(r)
            elif r["status"] == "skipped":
                self.skipped[(r["scenario"], r["target"])] = r.get("note", "skipped")
            else:
                self.errors.append(r)

    def cases(self, scenario: str, match: dict | None = None) -> list[dict]:
        """Distinct parameter sets of a scenario (any target), optionally filtered."""
        seen, out = set(), []
        for (s, _t, pk) in list(self.ok.keys()):
            if s != scenario or pk in seen:
                continue
            params = json.loads(pk)
            if match and any(params.get(k) != v for k, v in match.items()):
                continue
            seen.add(pk)
            out.append(params)
        return out

    def find(self, scenario: str, target: str, match: dict) -> list[dict]:
        """Metrics of all repetitions of `target` whose params contain `match`."""
        out = []
        for (s, t, pk), ms in self.ok.items():
            if s == scenario and t == target:
                params = json.loads(pk)
                if all(params.get(k) == v for k, v in match.items()):
                    out.extend(ms)
        return out

    def median(self, scenario: str, target: str, match: dict, metric: str):
        vals = [m[metric] for m in self.find(scenario, target, match)
                if isinstance(m.get(metric), (int, float))]
        return statistics.median(vals) if vals else None

    def first_raw(self, scenario: str, target: str, match: dict) -> dict | None:
        for (s, t, pk), rs in self.raw.items():
            if s == scenario and t == target:
                params = json.loads(pk)
                if all(params.get(k) == v for k, v in match.items()):
                    return rs[0]
        return None

    def params_of(self, scenario: str, target: str, match: dict) -> dict | None:
        r = self.first_raw(scenario, target, match)
        return r["params"] if r else None

    def has(self, scenario: str) -> bool:
        return any(s == scenario for (s, _t, _p) in self.ok) or any(
            s == scenario for (s, _t) in self.skipped) or any(
            e["scenario"] == scenario for e in self.errors)


def load_rows(results_path: Path) -> list[dict]:
    rows = []
    if results_path.exists():
        for line in results_path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                row.setdefault("run_id", "")  # records written before runs had ids
                rows.append(row)
    return rows


def load(results_path: Path) -> Results:
    return Results(load_rows(results_path))


def latest_per_scenario(rows: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """results.jsonl accumulates runs. For each scenario, keep only the records of the latest
    run (by run id, a UTC start time) that ran it: a table's ratios always come from one run,
    and a partial --only run replaces only the sections it re-ran."""
    latest: dict[str, str] = {}
    for r in rows:
        if r["scenario"] == "harness":
            continue
        if r["run_id"] >= latest.get(r["scenario"], ""):
            latest[r["scenario"]] = r["run_id"]
    kept = [r for r in rows if (r["scenario"] != "harness" and r["run_id"] == latest[r["scenario"]])
            or (r["scenario"] == "harness" and r["run_id"] == max(latest.values(), default=""))]
    return kept, latest


def load_metas(meta_path: Path, runs_dir: Path | None) -> dict[str, dict]:
    """run id -> that run's run.json ("" for the run of records that had no run id)."""
    metas: dict[str, dict] = {}
    if runs_dir is not None and runs_dir.is_dir():
        for f in sorted(runs_dir.glob("*.json")):
            try:
                meta = json.loads(f.read_text())
            except ValueError:
                continue
            metas[meta.get("run_id", f.stem)] = meta
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        metas.setdefault(meta.get("run_id", ""), meta)
    return metas


# ---- formatting ------------------------------------------------------------------------------


def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def fmt_small(v) -> str:
    return "–" if v is None else f"{v:.3f}"


def ratio(a, b) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r) -> str:
    return "–" if r is None else f"{r:.2f}×"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def errors_text(metrics: dict, prefix: str) -> str:
    parts = [f"{k[len(prefix):]}: {fmt(v, 0)}" for k, v in sorted(metrics.items())
             if k.startswith(prefix) and isinstance(v, (int, float)) and v]
    return ", ".join(parts) if parts else "none"


def median_dict(ms: list[dict], prefix: str) -> dict:
    keys = {k for m in ms for k in m if k.startswith(prefix)}
    out = {}
    for k in keys:
        vals = [m.get(k, 0) for m in ms if isinstance(m.get(k, 0), (int, float))]
        out[k] = statistics.median(vals) if vals else 0
    return out


def skipped_line(res: Results, scenario: str) -> str:
    notes = [f"{LABEL[t]}: {res.skipped[(scenario, t)]}" for t in TARGETS
             if (scenario, t) in res.skipped]
    return ("\n" + "; ".join(notes) + ".\n") if notes else ""


# ---- sections --------------------------------------------------------------------------------


def section_throughput(res: Results, goals: list) -> str:
    out = ["## 1. Throughput: `pgbench -S`, `-j 2`, pool 20\n"]
    rows = []
    for mode in ("simple", "extended", "prepared"):
        for clients in (16, 64, 256):
            m = {"mode": mode, "clients": clients}
            v = {t: res.median("throughput", t, m, "tps") for t in TARGETS}
            if all(x is None for x in v.values()):
                continue
            p99 = {t: res.median("throughput", t, m, "p99_ms") for t in TARGETS}
            cpu = {t: res.median("throughput", t, m, "pooler_cpu_s_per_1000tx") for t in TARGETS}
            cores = {t: res.median("throughput", t, m, "pooler_cores") for t in TARGETS}
            rows.append([mode, str(clients), fmt(v["direct"]), fmt(v["pgbouncer"]), fmt(v["sluice"]),
                         fmt_ratio(ratio(v["sluice"], v["pgbouncer"])),
                         fmt_ratio(ratio(v["sluice"], v["direct"])),
                         fmt(p99["pgbouncer"]), fmt(p99["sluice"]),
                         fmt_small(cpu["pgbouncer"]), fmt_small(cpu["sluice"]),
                         fmt_ratio(ratio(cpu["sluice"], cpu["pgbouncer"])),
                         fmt(cores["pgbouncer"], 2), fmt(cores["sluice"], 2)])
            if mode != "prepared":
                goals.append(("tps", mode, clients, v["sluice"], v["pgbouncer"]))
                goals.append(("cpu", mode, clients, cpu["sluice"], cpu["pgbouncer"]))
    out.append(table(["protocol", "clients", "direct TPS", "PgBouncer TPS", "Sluice TPS",
                      "Sluice/PgBouncer", "Sluice/direct", "PgBouncer p99 ms", "Sluice p99 ms",
                      "PgBouncer CPU s/1000 tx", "Sluice CPU s/1000 tx", "CPU Sluice/PgBouncer",
                      "PgBouncer cores", "Sluice cores"], rows))
    out.append("\nCPU s/1000 tx: the pooler process's utime+stime over the run (from "
               "/proc/PID/stat) per 1000 transactions; cores: the same CPU over wall time. "
               "p99 from pgbench's per-transaction log (10% sample). `-M prepared` runs against "
               "Sluice only (PgBouncer 1.18 cannot run it).\n")
    out.append(skipped_line(res, "throughput"))
    out.append("\n![throughput](plots/throughput.png)\n")
    return "\n".join(out)


def section_pool8(res: Results) -> str:
    out = ["## 9. Small pool: `pgbench -S`, 64 clients, `-j 2`, pool 8\n"]
    rows = []
    for mode in ("simple", "extended", "prepared"):
        m = {"mode": mode, "clients": 64}
        v = {t: res.median("pool8", t, m, "tps") for t in TARGETS}
        if all(x is None for x in v.values()):
            continue
        p99 = {t: res.median("pool8", t, m, "p99_ms") for t in TARGETS}
        cpu = {t: res.median("pool8", t, m, "pooler_cpu_s_per_1000tx") for t in TARGETS}
        cores = {t: res.median("pool8", t, m, "pooler_cores") for t in TARGETS}
        rows.append([mode, "64", fmt(v["direct"]), fmt(v["pgbouncer"]), fmt(v["sluice"]),
                     fmt_ratio(ratio(v["sluice"], v["pgbouncer"])),
                     fmt_ratio(ratio(v["sluice"], v["direct"])),
                     fmt(p99["direct"]), fmt(p99["pgbouncer"]), fmt(p99["sluice"]),
                     fmt_small(cpu["pgbouncer"]), fmt_small(cpu["sluice"]),
                     fmt_ratio(ratio(cpu["sluice"], cpu["pgbouncer"])),
                     fmt(cores["pgbouncer"], 2), fmt(cores["sluice"], 2)])
    out.append(table(["protocol", "clients", "direct TPS (64 conns)", "PgBouncer TPS",
                      "Sluice TPS", "Sluice/PgBouncer", "Sluice/direct", "direct p99 ms",
                      "PgBouncer p99 ms", "Sluice p99 ms", "PgBouncer CPU s/1000 tx",
                      "Sluice CPU s/1000 tx", "CPU Sluice/PgBouncer", "PgBouncer cores",
                      "Sluice cores"], rows))
    out.append("\n64 clients share 8 server connections: dedicated PgBouncer "
               "(`default_pool_size = 8`) and Sluice (`pool_size = 8`) instances in transaction "
               "mode, started for this scenario and stopped after it; direct opens 64 "
               "connections (no pool). CPU and p99 as in scenario 1. `-M prepared` runs against "
               "Sluice only (PgBouncer 1.18 cannot run it).\n")
    out.append(skipped_line(res, "pool8"))
    return "\n".join(out)


def section_hop(res: Results, goals: list) -> str:
    out = ["## 2. Hop cost: 1 client, `pgbench -S`\n"]
    rows = []
    for mode in ("simple", "extended"):
        m = {"mode": mode}
        v = {t: res.median("hop", t, m, "lat_avg_us") for t in TARGETS}
        if all(x is None for x in v.values()):
            continue
        added_p = None if v["pgbouncer"] is None or v["direct"] is None else v["pgbouncer"] - v["direct"]
        added_s = None if v["sluice"] is None or v["direct"] is None else v["sluice"] - v["direct"]
        sp = res.params_of("hop", "sluice", m)
        rows.append([mode, fmt(v["direct"]), fmt(v["pgbouncer"]), fmt(v["sluice"]),
                     sp["pool_mode"] if sp else "–", fmt(added_p), fmt(added_s),
                     fmt_ratio(ratio(added_s, added_p))])
        goals.append(("hop", mode, None, added_s, added_p))
    out.append(table(["protocol", "direct avg µs", "PgBouncer avg µs", "Sluice avg µs",
                      "Sluice pool mode", "PgBouncer added µs", "Sluice added µs",
                      "added Sluice/PgBouncer"], rows))
    out.append("\nAverage latency as pgbench reports it; *added* is the pooler's latency minus "
               "direct's, medians of the same run. PgBouncer runs in transaction mode.\n")
    out.append(skipped_line(res, "hop"))
    return "\n".join(out)


def section_churn(res: Results) -> str:
    out = ["## 3. Connection churn: `pgbench -S -C` (a new connection per transaction, SCRAM)\n"]
    rows = []
    for clients in (1, 32):
        m = {"clients": clients}
        v = {t: res.median("churn", t, m, "connections_per_s") for t in TARGETS}
        if all(x is None for x in v.values()):
            continue
        ct = {t: res.median("churn", t, m, "avg_conn_ms") for t in TARGETS}
        cpu = {t: res.median("churn", t, m, "pooler_cpu_s_per_1000tx") for t in TARGETS}
        sp = res.params_of("churn", "sluice", m)
        rows.append([str(clients), fmt(v["direct"]), fmt(v["pgbouncer"]), fmt(v["sluice"]),
                     sp["pool_mode"] if sp else "–",
                     fmt_ratio(ratio(v["sluice"], v["pgbouncer"])),
                     fmt_ratio(ratio(v["sluice"], v["direct"])),
                     fmt(ct["direct"], 2), fmt(ct["pgbouncer"], 2), fmt(ct["sluice"], 2),
                     fmt_small(cpu["pgbouncer"]), fmt_small(cpu["sluice"])])
    out.append(table(["clients", "direct conn/s", "PgBouncer conn/s", "Sluice conn/s",
                      "Sluice pool mode", "Sluice/PgBouncer", "Sluice/direct",
                      "direct conn ms", "PgBouncer conn ms", "Sluice conn ms",
                      "PgBouncer CPU s/1000 conn", "Sluice CPU s/1000 conn"], rows))
    out.append("\nconn ms: pgbench's average connection time. pgbench itself (libpq) spends a few "
               "ms of CPU per SCRAM login (PBKDF2), which caps the poolers' rate on 2 cores.\n")
    out.append(skipped_line(res, "churn"))
    return "\n".join(out)


def section_idle(res: Results, goals: list) -> str:
    out = ["## 4. Many idle clients (SCRAM-authenticated, then idle)\n"]
    rows = []
    for n in (2000, 10000):
        for t in TARGETS:
            ms = res.find("idle", t, {"clients": n})
            if not ms:
                continue
            def med(k: str, ms=ms):
                vals = [m[k] for m in ms if isinstance(m.get(k), (int, float))]
                return statistics.median(vals) if vals else None
            fails = median_dict(ms, "failed.")
            not_attempted = fails.pop("failed.not_attempted", 0)
            failed = errors_text(fails, "failed.")
            fresh_err = "; ".join(sorted({f"{k[len('fresh_errors.'):]}" for m in ms for k in m
                                          if k.startswith("fresh_errors.")}))
            notes = []
            if fresh_err:
                notes.append(f"fresh query refused ({fresh_err})")
            if ms[0].get("stopped_early"):
                notes.append(ms[0]["stopped_early"] + (
                    f", {fmt(not_attempted, 0)} not attempted" if not_attempted else ""))
            rows.append([str(n), LABEL[t], fmt(med("connected"), 0), failed,
                         fmt(med("bytes_per_client"), 0),
                         fmt(med("fresh_total_ms"), 2), fmt(med("fresh_query_ms"), 2),
                         fmt(med("open_s"), 1), "; ".join(notes)])
        goals.append(("mem", None, n, res.median("idle", "sluice", {"clients": n}, "bytes_per_client"),
                      res.median("idle", "pgbouncer", {"clients": n}, "bytes_per_client")))
        if n == 10000:
            goals.append(("idle10k", None, n,
                          res.median("idle", "sluice", {"clients": n}, "connected"),
                          res.median("idle", "sluice", {"clients": n}, "fresh_total_ms")))
    out.append(table(["clients", "target", "connected", "refused (SQLSTATE: count)",
                      "bytes per client", "fresh connect+query ms", "fresh query ms",
                      "time to open s", "notes"], rows))
    out.append("\nBytes per client: the pooler's VmRSS (from /proc/PID/status) with the clients "
               "held minus before, over the clients connected, in a pooler process started afresh "
               "for each measurement (one that has served load reuses its freed heap); for direct, the PSS of all "
               "PostgreSQL processes instead. Fresh connect+query: a new SCRAM connection and "
               "`SELECT abalance ... WHERE aid = 1` while the clients are held (median of 5). "
               "Direct stops after 1000 refusals (PostgreSQL's max_connections is 400, 3 reserved "
               "for superusers; the poolers' idle backends count too).\n")
    out.append(skipped_line(res, "idle"))
    return "\n".join(out)


def section_slow(res: Results) -> str:
    out = ["## 5. Slow dependency: 200 clients, `SELECT pg_sleep(0.02)`, pool 20\n"]
    rows = []
    for t in TARGETS:
        tps = res.median("slow", t, {}, "tps")
        if tps is None:
            continue
        rows.append([LABEL[t], fmt(tps), fmt(res.median("slow", t, {}, "p50_ms")),
                     fmt(res.median("slow", t, {}, "p99_ms")),
                     fmt_small(res.median("slow", t, {}, "pooler_cpu_s_per_1000tx"))])
    tps = {t: res.median("slow", t, {}, "tps") for t in TARGETS}
    p99 = {t: res.median("slow", t, {}, "p99_ms") for t in TARGETS}
    if tps["sluice"] is not None:
        for other in ("pgbouncer", "direct"):
            if tps[other] is not None:
                rows.append([f"Sluice/{LABEL[other]}", fmt_ratio(ratio(tps["sluice"], tps[other])),
                             "", fmt_ratio(ratio(p99["sluice"], p99[other])), ""])
    out.append(table(["target", "TPS", "p50 ms", "p99 ms", "pooler CPU s/1000 tx"], rows))
    out.append("\nA pool of 20 backends caps this at 20 × 50/s = 1000 TPS; direct runs 200 "
               "backends at once.\n")
    out.append(skipped_line(res, "slow"))
    out.append("\n### Brownout: the database slows from 1 ms to 200 ms per transaction, then "
               "recovers (200 clients, pool 20)\n")
    rows = []
    for t in TARGETS:
        if res.median("brownout", t, {}, "tps") is None:
            continue
        cell = lambda p, k: fmt(res.median("brownout", t, {}, f"{p}_{k}"))  # noqa: E731
        rows.append([LABEL[t]] + [cell(p, k) for p in ("before", "during", "after")
                                  for k in ("tps", "goodput", "p99_ms")])
    out.append(table(["target", "before TPS", "before goodput", "before p99 ms",
                      "during TPS", "during goodput", "during p99 ms",
                      "after TPS", "after goodput", "after p99 ms"], rows))
    out.append("\nA custom pgbench script runs `SELECT pg_sleep(delay) FROM bench_control`; the "
               "harness sets `delay` to 0.2 s for the middle third of the run. Goodput: "
               "transactions per second answered within 500 ms. Per-second values from pgbench's "
               "transaction log, plotted for the first repetition.\n")
    out.append(skipped_line(res, "brownout"))
    out.append("\n![brownout](plots/brownout.png)\n")
    return "\n".join(out)


def section_twoclass(res: Results, sluice_info: dict) -> str:
    out = ["## 6. Two classes: 20 critical clients (point lookup) beside 200 batch clients "
           "(`pg_sleep(0.02)`)\n"]
    rows = []
    for batch in (0, 200):
        for t in TARGETS:
            ms = res.find("twoclass", t, {"batch": batch})
            if not ms:
                continue
            g = lambda k: res.median("twoclass", t, {"batch": batch}, k)  # noqa: E731
            unloaded = res.median("twoclass", t, {"batch": 0}, "classes.critical.p99_ms")
            errs_c = errors_text(median_dict(ms, "classes.critical.errors."),
                                 "classes.critical.errors.")
            errs_b = errors_text(median_dict(ms, "classes.batch.errors."), "classes.batch.errors.")
            params = res.params_of("twoclass", t, {"batch": batch}) or {}
            rows.append([str(batch), LABEL[t], fmt(g("classes.critical.tps")),
                         fmt(g("classes.critical.p50_ms"), 2), fmt(g("classes.critical.p99_ms"), 2),
                         fmt_ratio(ratio(g("classes.critical.p99_ms"), unloaded)) if batch else "–",
                         fmt(g("classes.batch.tps")) if batch else "–",
                         fmt(g("classes.batch.p99_ms")) if batch else "–",
                         errs_c, errs_b if batch else "–",
                         params.get("sluice_config") or (
                             params.get("pool_mode") if t != "direct" else "–")])
    out.append(table(["batch clients", "target", "critical TPS", "critical p50 ms",
                      "critical p99 ms", "critical p99 / unloaded", "batch TPS", "batch p99 ms",
                      "critical errors", "batch errors", "config"], rows))
    out.append("\nbench/driver.py (asyncpg, simple-query protocol), clients honour a `retry after N"
               " ms` HINT. *Unloaded* is the same critical class with no batch clients. The "
               "issue's goal for Sluice: critical p99 under overload within 2× unloaded.\n")
    verdicts = sluice_info.get("bulkheads", {})
    if "twoclass" in verdicts:
        out.append(f"\nSluice bulkhead config (configs/bulkheads-twoclass.toml): "
                   f"{sanitize(verdicts['twoclass'])}.\n")
    out.append(skipped_line(res, "twoclass"))
    out.append("\n![two classes](plots/twoclass.png)\n")
    return "\n".join(out)


def section_retrystorm(res: Results, sluice_info: dict) -> str:
    out = ["## 7. Retry storm: 500 clients, `SELECT nextval('bench_work'), pg_sleep(0.02)`, "
           "pool 20\n"]
    rows = []
    for policy in ("immediate", "hint"):
        for t in TARGETS:
            m = {"retry": policy}
            ms = res.find("retrystorm", t, m)
            if not ms:
                continue
            g = lambda k: res.median("retrystorm", t, m, k)  # noqa: E731
            rows.append([policy, LABEL[t], fmt(g("goodput")), fmt(g("attempts_per_s")),
                         errors_text(median_dict(ms, "errors."), "errors."),
                         fmt(g("p99_ms")), fmt(g("req_p99_ms")), fmt(g("db_statements_per_s")),
                         fmt(g("db_cores"), 2), fmt(g("db_backends_active_mean"), 0),
                         fmt(g("db_backends_max"), 0), fmt(g("pooler_cores"), 2)])
    out.append(table(["retry", "target", "goodput/s", "attempts/s", "errors (SQLSTATE: count)",
                      "p99 ms", "request p99 ms (with retries)", "DB statements/s",
                      "DB cores", "DB backends active (mean)", "DB backends max",
                      "pooler cores"], rows))
    out.append("\nGoodput: successful requests per second. DB statements: how far the sequence "
               "`bench_work` advanced, i.e. statements the database actually ran. DB cores: CPU "
               "of all PostgreSQL processes (postmaster, live and exited backends) over wall "
               "time. Backends sampled every 0.25 s (max counts every backend of the database, "
               "the other pooler's idle pool included). *immediate* retries at once; *hint* sleeps as a `retry after N ms` HINT "
               "says and otherwise also retries at once. Direct: clients beyond "
               "max_connections are refused (53300) and reconnect, each attempt a fork in "
               "PostgreSQL.\n")
    verdicts = sluice_info.get("bulkheads", {})
    if "retrystorm" in verdicts:
        out.append(f"\nSluice bulkhead config (configs/bulkheads-retrystorm.toml): "
                   f"{sanitize(verdicts['retrystorm'])}.\n")
    out.append(skipped_line(res, "retrystorm"))
    return "\n".join(out)


def section_refusal(res: Results, sluice_info: dict) -> str:
    out = ["## 8. Refusal cost: a flood of arrivals to a saturated pool\n"]
    rows = []
    for t in TARGETS:
        ms = res.find("refusal", t, {})
        if not ms:
            continue
        g = lambda k: res.median("refusal", t, {}, k)  # noqa: E731
        if t == "direct":
            rows.append([LABEL[t], "connection attempts while PostgreSQL is at max_connections",
                         fmt(g("refusals_per_s")), fmt(g("db_cpu_us_per_refusal")) + " (database)",
                         "–", errors_text(median_dict(ms, "flood_outcomes."), "flood_outcomes.")])
        else:
            what = ms[0].get("what_happens", "")
            rows.append([LABEL[t], "100 clients `SELECT 1`, immediate retry, beside 20 holding "
                         "`pg_sleep(0.5)`", fmt(g("refusals_per_s")),
                         fmt(g("pooler_cpu_us_per_refusal")) + " (pooler)",
                         fmt(g("pooler_cpu_us_per_flood_request")),
                         errors_text(median_dict(ms, "flood_errors."), "flood_errors.") +
                         (f"; {what}" if what else "")])
    out.append(table(["target", "flood", "refusals/s", "CPU µs per refusal",
                      "pooler CPU µs per flood request", "outcomes / what happens"], rows))
    verdicts = sluice_info.get("bulkheads", {})
    if "refusal" in verdicts:
        out.append(f"\nSluice bulkhead config (configs/bulkheads-refusal.toml): "
                   f"{sanitize(verdicts['refusal'])}.\n")
    out.append(skipped_line(res, "refusal"))
    return "\n".join(out)


def section_goals(goals: list) -> str:
    """The issue's speed targets, met or not, with by how much."""
    rows = []

    def status(ok: bool | None) -> str:
        return "not measured" if ok is None else ("**met**" if ok else "**not met**")

    for kind, mode, n, s, p in goals:
        if kind == "tps":
            r = ratio(s, p)
            rows.append([f"TPS ≥ PgBouncer ({mode}, {n} clients)",
                         f"{fmt_ratio(r)} of PgBouncer", status(None if r is None else r >= 1.0)])
        elif kind == "cpu":
            r = ratio(s, p)
            rows.append([f"pooler CPU per tx ≤ 0.8× PgBouncer ({mode}, {n} clients)",
                         f"{fmt_ratio(r)}", status(None if r is None else r <= 0.8)])
        elif kind == "hop":
            ok = None if s is None or p is None else s <= p
            rows.append([f"added hop latency ≤ PgBouncer's ({mode}, 1 client)",
                         f"{fmt(s)} µs vs {fmt(p)} µs", status(ok)])
        elif kind == "mem":
            ok = None if s is None or p is None else s <= p
            rows.append([f"memory per idle client ≤ PgBouncer's ({n} clients)",
                         f"{fmt(s, 0)} B vs {fmt(p, 0)} B", status(ok)])
        elif kind == "idle10k":
            connected, fresh = s, p
            ok = None if connected is None else (connected >= 10000 and fresh is not None
                                                 and fresh < 50)
            rows.append(["10000 idle clients held, a fresh query answered < 50 ms",
                         f"{fmt(connected, 0)} held, {fmt(fresh, 2)} ms", status(ok)])
    rows.append(["relay-path profile in bench/PROFILE.md", "not produced by this harness",
                 "see bench/PROFILE.md"])
    return ("## The issue's speed targets\n\n" +
            table(["target", "measured (Sluice)", "status"], rows) +
            "\nWhere a target is not met, the numbers above say by how much; why, and what "
            "would close it, belongs next to them in the README's performance section and "
            "bench/PROFILE.md.\n")


# ---- plots -----------------------------------------------------------------------------------


def plots(res: Results, sluice_info: dict) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["matplotlib is missing (python3-matplotlib): no plots"]
    PLOTS_DIR.mkdir(exist_ok=True)
    notes = []
    sluice_note = ""
    if sluice_info.get("transaction_mode") is False:
        sluice_note = " (Sluice: no transaction mode yet)"

    # throughput by clients
    if any(s == "throughput" for (s, _t, _p) in res.ok):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, mode in zip(axes, ("simple", "extended")):
            for t in TARGETS:
                xs, ys = [], []
                for c in (16, 64, 256):
                    v = res.median("throughput", t, {"mode": mode, "clients": c}, "tps")
                    if v is not None:
                        xs.append(c)
                        ys.append(v)
                if xs:
                    ax.plot(xs, ys, marker="o", color=COLOR[t], label=LABEL[t])
            if mode == "extended":
                xs = [c for c in (16, 64, 256)
                      if res.median("throughput", "sluice", {"mode": "prepared", "clients": c}, "tps")]
                ys = [res.median("throughput", "sluice", {"mode": "prepared", "clients": c}, "tps")
                      for c in xs]
                if xs:
                    ax.plot(xs, ys, marker="s", linestyle="--", color=COLOR["sluice"],
                            label="Sluice -M prepared")
            ax.set_xscale("log", base=2)
            ax.set_xticks([16, 64, 256])
            ax.set_xticklabels(["16", "64", "256"])
            ax.set_xlabel("clients")
            ax.set_title(f"pgbench -S -M {mode}, pool 20")
            ax.grid(True, alpha=0.3)
            ax.legend()
        axes[0].set_ylabel("transactions per second (median)")
        axes[0].set_ylim(bottom=0)
        fig.suptitle("Throughput by clients" + sluice_note)
        fig.tight_layout()
        fig.savefig(PLOTS_DIR / "throughput.png", dpi=110)
        plt.close(fig)
        notes.append("plots/throughput.png")

    # brownout over time
    raw = {t: res.first_raw("brownout", t, {}) for t in TARGETS}
    if any(raw.values()):
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(13, 7), sharex=True)
        params = next(r["params"] for r in raw.values() if r)
        for t, r in raw.items():
            if not r:
                continue
            tl = r["metrics"].get("timeline", [])
            xs = [p["t"] + 0.5 for p in tl if p["p99_ms"] is not None]
            ax1.plot(xs, [p["p99_ms"] for p in tl if p["p99_ms"] is not None], color=COLOR[t],
                     label=f"{LABEL[t]} p99")
            ax1.plot(xs, [p["p50_ms"] for p in tl if p["p50_ms"] is not None], color=COLOR[t],
                     linestyle=":", label=f"{LABEL[t]} p50")
            xs2 = [p["t"] + 0.5 for p in tl]
            ax2.plot(xs2, [p["goodput"] for p in tl], color=COLOR[t],
                     label=f"{LABEL[t]} goodput (≤ {params['slo_ms']:.0f} ms)")
            ax2.plot(xs2, [p["tps"] for p in tl], color=COLOR[t], linestyle=":",
                     label=f"{LABEL[t]} throughput")
        for ax in (ax1, ax2):
            ax.axvspan(params["brownout_from_s"], params["brownout_to_s"], color="orange",
                       alpha=0.12, label="database at 200 ms/tx" if ax is ax1 else None)
            ax.grid(True, alpha=0.3)
        ax1.set_yscale("log")
        ax1.set_ylabel("latency, ms (log)")
        ax1.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax2.set_ylabel("transactions per second")
        ax2.set_xlabel("seconds since start")
        ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax2.set_ylim(bottom=0)
        ax1.set_xlim(0, params["duration_s"])
        fig.suptitle("Brownout: 200 clients, pool 20, database 1 ms → 200 ms → 1 ms per "
                     "transaction" + sluice_note)
        fig.tight_layout()
        fig.savefig(PLOTS_DIR / "brownout.png", dpi=110)
        plt.close(fig)
        notes.append("plots/brownout.png")

    # two classes
    present = [t for t in TARGETS if res.find("twoclass", t, {"batch": 200})]
    if present:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        series = [("critical p50", "classes.critical.p50_ms", 200),
                  ("critical p99", "classes.critical.p99_ms", 200),
                  ("critical p99, no batch", "classes.critical.p99_ms", 0),
                  ("batch p99", "classes.batch.p99_ms", 200)]
        width = 0.8 / len(series)
        hatches = ["", "//", "..", "xx"]
        for i, (label, key, batch) in enumerate(series):
            vals = [res.median("twoclass", t, {"batch": batch}, key) or 0 for t in present]
            ax1.bar([j + i * width for j in range(len(present))], vals, width, label=label,
                    color=[COLOR[t] for t in present], hatch=hatches[i], edgecolor="black",
                    alpha=0.55 + 0.1 * i)
        ax1.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(present))])
        ax1.set_xticklabels([LABEL[t] for t in present])
        ax1.set_yscale("log")
        ax1.set_ylabel("latency, ms (log)")
        ax1.set_title("latency per class")
        ax1.legend(fontsize=8)
        ax1.grid(True, axis="y", alpha=0.3)
        for i, (label, batch) in enumerate((("critical TPS, alone", 0),
                                            ("critical TPS, beside batch", 200))):
            vals = [res.median("twoclass", t, {"batch": batch}, "classes.critical.tps") or 0
                    for t in present]
            bars = ax2.bar([j + i * 0.4 for j in range(len(present))], vals, 0.4, label=label,
                           color=[COLOR[t] for t in present], hatch=["", "//"][i],
                           edgecolor="black", alpha=0.6 + 0.3 * i)
            ax2.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=8)
        ax2.set_xticks([j + 0.2 for j in range(len(present))])
        ax2.set_xticklabels([LABEL[t] for t in present])
        ax2.set_ylabel("critical transactions per second")
        ax2.set_title("critical throughput")
        ax2.legend(fontsize=8)
        ax2.grid(True, axis="y", alpha=0.3)
        fig.suptitle("Two classes: 20 critical clients beside 200 batch clients" + sluice_note)
        fig.tight_layout()
        fig.savefig(PLOTS_DIR / "twoclass.png", dpi=110)
        plt.close(fig)
        notes.append("plots/twoclass.png")
    return notes


# ---- the document ----------------------------------------------------------------------------


SECTION_SCENARIOS = {"throughput": ["throughput"], "hop": ["hop"], "churn": ["churn"],
                     "idle": ["idle"], "slow": ["slow", "brownout"], "twoclass": ["twoclass"],
                     "retrystorm": ["retrystorm"], "refusal": ["refusal"], "pool8": ["pool8"]}
ALL_SCENARIOS = {"throughput", "hop", "churn", "idle", "slow", "brownout", "twoclass",
                 "retrystorm", "refusal", "pool8"}


def run_label(run_id: str, meta: dict) -> str:
    kind = "quick" if meta.get("quick") else ("full" if meta else "?")
    return (f"run {run_id or '(no id)'} ({kind}, `{meta.get('command', '?')}`, "
            f"git {meta.get('git_revision', '?')})")


def generate(results_path: Path, meta_path: Path, runs_dir: Path | None = None) -> None:
    rows, latest = latest_per_scenario(load_rows(results_path))
    res = Results(rows)
    metas = load_metas(meta_path, runs_dir)
    newest = max(latest.values(), default=None)
    if newest is not None and newest in metas:
        meta = metas[newest]
    else:
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    used_runs = sorted(set(latest.values()))
    sluice_info = meta.get("sluice", {})
    plot_notes = plots(res, sluice_info)
    m = meta.get("machine", {})
    head = ["# Sluice benchmark results\n"]
    if meta.get("quick") or any(metas.get(r, {}).get("quick") for r in used_runs):
        head.append("> **Quick run** (`--quick`: short runs, one repetition): it checks that the "
                    "harness works end to end; its numbers are not measurements. Run "
                    "`bench/run.sh` for the full run.\n")
    if len(used_runs) > 1 or set(meta.get("scenarios", [])) != ALL_SCENARIOS:
        lines = ["> Sections come from more than one run: each scenario shows the latest run that "
                 "ran it (results.jsonl accumulates runs; each section names its run). The header "
                 "below describes the newest run.\n>"]
        for r in reversed(used_runs):
            shown = [s for s in sorted(latest, key=lambda x: x) if latest[s] == r]
            rm = metas.get(r, {})
            lines.append(f"> - {run_label(r, rm)}, started {rm.get('started', '?')}: "
                         f"{', '.join(shown)}")
        missing = sorted(ALL_SCENARIOS - set(latest))
        if missing:
            lines.append(f">\n> No records at all for: {', '.join(missing)}.")
        head.append("\n".join(lines) + "\n")
    tx = sluice_info.get("transaction_mode")
    head.append("| | |\n|---|---|\n" + "".join(f"| {k} | {sanitize(str(v))} |\n" for k, v in [
        ("date", meta.get("started", "?")),
        ("command", f"`{meta.get('command', '?')}`"),
        ("git revision", meta.get("git_revision", "?")),
        ("machine", f"{m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('memory')}, "
                    f"{m.get('os')}, kernel {m.get('kernel')}"),
        ("runs", f"{meta.get('duration_s')} s each (brownout {meta.get('brownout_duration_s')} s),"
                 f" {meta.get('repetitions')} interleaved repetition(s), medians"),
        ("PostgreSQL", f"{meta.get('postgres', '?')}: fsync off, max_connections 400, "
                       "shared_buffers 256MB, SCRAM-SHA-256, pgbench scale 10"),
        ("PgBouncer", f"{meta.get('pgbouncer', '?')}: transaction mode, default_pool_size 20, "
                      "max_client_conn 12000, SCRAM passthrough (verifier in auth_file), "
                      "connection logging off"),
        ("Sluice", f"{sluice_info.get('version', '?')}, {meta.get('sluice_binary', '?')}: "
                   f"threads {sluice_info.get('threads', 'default')}, pool_size 20, "
                   f"max_client_conn 12000, SCRAM passthrough, log_level warn; "
                   f"pool mode used: {sluice_info.get('pool_mode_used', '?')}"),
        ("Sluice transaction mode", {True: "available", False: "not available (`--check-config`"
                                     " refuses it): Sluice runs in session mode for hop and "
                                     "churn, its other cases are skipped", None: "?"}[tx]),
        ("pgbench", meta.get("pgbench", "?")),
        ("client fd limit", meta.get("fd_limit", "?")),
        ("elapsed", f"{meta.get('elapsed_s', '?')} s"),
    ]))
    head.append("\nPostgreSQL, the pooler and the load generator share the machine's cores, so "
                "absolute numbers drift between runs: compare within one run, by the ratios. "
                "Raw data: `bench/out/results.jsonl` (one object per measurement); how each "
                "scenario works: bench/README.md.\n")
    goals: list = []
    body: list[str] = []

    def source(section: str) -> str:
        runs = sorted({latest[s] for s in SECTION_SCENARIOS[section] if s in latest})
        return "; ".join(f"*From {run_label(r, metas.get(r, {}))}, started "
                         f"{metas.get(r, {}).get('started', '?')}.*" for r in runs)

    def info_of(scenario: str) -> dict:
        """Sluice facts (bulkhead verdicts, ...) of the run a section comes from."""
        return metas.get(latest.get(scenario, ""), {}).get("sluice", sluice_info)

    if res.has("throughput"):
        body.append(section_throughput(res, goals))
    if res.has("hop"):
        body.append(section_hop(res, goals))
    if res.has("churn"):
        body.append(section_churn(res))
    if res.has("idle"):
        body.append(section_idle(res, goals))
    if res.has("slow") or res.has("brownout"):
        body.append(section_slow(res))
    if res.has("twoclass"):
        body.append(section_twoclass(res, info_of("twoclass")))
    if res.has("retrystorm"):
        body.append(section_retrystorm(res, info_of("retrystorm")))
    if res.has("refusal"):
        body.append(section_refusal(res, info_of("refusal")))
    if res.has("pool8"):
        body.append(section_pool8(res))
    # each section names the run it comes from, right under its heading
    sections = ["throughput", "hop", "churn", "idle", "slow", "twoclass", "retrystorm",
                "refusal", "pool8"]
    present = [sec for sec in sections if any(res.has(s) for s in SECTION_SCENARIOS[sec])]
    for i, sec in enumerate(present):
        head_line, _, rest = body[i].partition("\n")
        body[i] = f"{head_line}\n\n{source(sec)}\n{rest}"
    doc = "\n".join(head) + "\n" + section_goals(goals) + "\n" + "\n".join(body)
    if res.errors:
        doc += "\n## Errors during the run\n\n"
        for e in res.errors:
            detail = e.get("note") or e.get("metrics", {}).get("error") or \
                e.get("metrics", {}).get("stderr") or ""
            doc += (f"- {e['scenario']} / {e['target']} {json.dumps(e.get('params', {}))} "
                    f"rep {e.get('repetition')}: {sanitize(str(detail))[:400]}\n")
    restarts = meta.get("pooler_restarts")
    if restarts:
        doc += f"\nPooler restarts during the run (a pooler had exited): {restarts}\n"
    if not plot_notes or any("missing" in n for n in plot_notes):
        doc += "\n" + "\n".join(plot_notes) + "\n"
    RESULTS_MD.write_text(sanitize(doc))
