#!/usr/bin/python3
"""Runs the Sluice benchmark: builds Sluice (Release, in out/build) unless given a binary,
starts a throwaway PostgreSQL 15, PgBouncer and Sluice on 127.0.0.1, runs the scenarios against
direct / PgBouncer / Sluice with interleaved repetitions, then writes out/results.jsonl,
RESULTS.md and plots/*.png. Normally started by run.sh (which installs what is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import report  # noqa: E402
import scenarios  # noqa: E402
from harness import HarnessError, log  # noqa: E402

RESULTS = harness.OUT_DIR / "results.jsonl"
RUN_META = harness.OUT_DIR / "run.json"
RUNS_DIR = harness.OUT_DIR / "runs"  # one run.json per run id (report.py merges runs)
BUILD_DIR = harness.OUT_DIR / "build"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="short runs (3 s, brownout 15 s), 1 repetition: checks the harness")
    p.add_argument("--only", metavar="SCENARIO[,...]",
                   help="scenarios by name (" + ", ".join(scenarios.ORDER) + ") or number 1-9")
    p.add_argument("--targets", default="direct,pgbouncer,sluice",
                   help="comma-separated subset of direct,pgbouncer,sluice")
    p.add_argument("--pool-mode", choices=["transaction", "session"], default="transaction",
                   help="Sluice's pool mode (default transaction, like PgBouncer's); if Sluice "
                        "refuses transaction mode it falls back to session mode for the hop and "
                        "churn scenarios and skips the others")
    p.add_argument("--sluice-bin", type=Path,
                   help="use this sluice binary instead of building one in bench/out/build")
    p.add_argument("--sluice-threads", type=int, default=1,
                   help="Sluice's `threads` setting (default 1, as PgBouncer runs one thread; "
                        "0 = one per core)")
    p.add_argument("--duration", type=float, help="seconds per run (default 15, quick 3)")
    p.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    p.add_argument("--report-only", action="store_true",
                   help="only regenerate RESULTS.md and plots from out/results.jsonl")
    p.add_argument("--cleanup", action="store_true",
                   help="only stop what an interrupted run left behind (run.sh's trap uses it)")
    return p.parse_args()


def build_sluice() -> Path:
    """Configures and builds Sluice in Release mode in bench/out/build (incremental)."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    build_log = harness.OUT_DIR / "build.log"
    log(f"building Sluice (Release) in bench/out/build; log: bench/out/build.log")
    with open(build_log, "w") as f:
        for argv in (["cmake", "-S", str(harness.REPO_DIR), "-B", str(BUILD_DIR), "-G", "Ninja",
                      "-DCMAKE_BUILD_TYPE=Release", "-DSLUICE_TESTS=OFF"],
                     ["cmake", "--build", str(BUILD_DIR), "-j2", "--target", "sluice"]):
            r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=3600)
            if r.returncode != 0:
                raise HarnessError(f"build failed ({' '.join(argv)}):\n{harness.tail(build_log)}")
    return BUILD_DIR / "sluice"


def install_signal_handlers() -> None:
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def main() -> int:
    args = parse_args()
    if args.cleanup:
        harness.cleanup_from_state()
        return 0
    if args.report_only:
        report.generate(RESULTS, RUN_META, RUNS_DIR)
        return 0
    install_signal_handlers()
    harness.cleanup_from_state()  # leftovers of an earlier run that was killed hard
    harness.OUT_DIR.mkdir(parents=True, exist_ok=True)

    duration = args.duration or (3.0 if args.quick else 15.0)
    reps = args.reps or (1 if args.quick else 3)
    settings = scenarios.Settings(quick=args.quick, duration=duration, reps=reps,
                                  brownout_duration=15.0 if args.quick else 45.0)
    chosen = scenarios.select(args.only)
    wanted_targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in wanted_targets:
        if t not in ("direct", "pgbouncer", "sluice"):
            raise SystemExit(f"unknown target {t!r}")

    binary = None
    if "sluice" in wanted_targets:
        binary = args.sluice_bin.resolve() if args.sluice_bin else build_sluice()
        if not binary.exists():
            raise SystemExit(f"sluice binary {binary} not found")

    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    meta = {
        "run_id": run_id,
        "command": os.environ.get("BENCH_COMMAND") or "bench/run.py " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": harness.machine_info(),
        "git_revision": harness.git_revision(),
        "quick": args.quick, "duration_s": duration, "repetitions": reps,
        "brownout_duration_s": settings.brownout_duration,
        "scenarios": chosen, "targets": wanted_targets,
        "pgbench": harness.pgbench_version(), "pgbouncer": harness.PgBouncer.version(),
        "sluice_binary": _describe_binary(binary, built=not args.sluice_bin),
        "fd_limit": _fd_limit(),
    }
    # results.jsonl accumulates runs (each record carries its run_id); report.py shows, per
    # scenario, the latest run that ran it, so a partial --only run keeps the other sections.
    RUNS_DIR.mkdir(parents=True, exist_ok=True)

    def write_meta() -> None:
        RUN_META.write_text(json.dumps(meta, indent=2))
        (RUNS_DIR / f"{run_id}.json").write_text(json.dumps(meta, indent=2))
    started = time.monotonic()
    base = harness.make_temp_dir("sluice-bench-")
    pg = harness.PgCluster(base, scale=settings.scale)
    poolers: list[harness.Pooler] = []
    extra_instances: list[harness.Pooler] = []
    try:
        if binary is not None:
            # A private copy: a rebuild of the original during the run must not change it.
            snapshot = base / "sluice-bin"
            shutil.copy2(binary, snapshot)
            binary = snapshot
        log("starting PostgreSQL 15 (fsync off, max_connections 400, shared_buffers 256MB, SCRAM)")
        pg.start()
        log(f"PostgreSQL on 127.0.0.1:{pg.port}; pgbench -i -s {settings.scale}")
        pg.init_pgbench()
        meta["postgres"] = pg.version()
        targets: dict[str, scenarios.Target] = {}
        if "direct" in wanted_targets:
            targets["direct"] = scenarios.Target("direct", pg.port, None, "none")
        if "pgbouncer" in wanted_targets:
            bouncer = harness.PgBouncer(base, pg)
            bouncer.start()
            poolers.append(bouncer)
            targets["pgbouncer"] = scenarios.Target("pgbouncer", bouncer.port, bouncer,
                                                    "transaction")
            log(f"PgBouncer on 127.0.0.1:{bouncer.port} (fd limit {harness.fd_limit(bouncer.pid)})")
        sluice_info: dict = {}

        def make_sluice(pool_mode: str, tag: str = "", extra: str = "",
                        server_max: int = 200) -> harness.Sluice:
            return harness.Sluice(base, pg, binary, pool_mode=pool_mode, tag=tag, extra=extra,
                                  threads=args.sluice_threads, server_max_connections=server_max)

        if "sluice" in wanted_targets:
            sluice_info["version"] = make_sluice("session", "version").version()
            probe = make_sluice("transaction", "probe")
            ok, out = probe.check_config()
            if ok:
                sluice_info["transaction_mode"] = True
            elif "transaction pooling is not available" in out:
                sluice_info["transaction_mode"] = False
                sluice_info["transaction_mode_message"] = out.splitlines()[0] if out else ""
            else:
                raise HarnessError(f"sluice --check-config refused the generated config:\n{out}")
            mode = args.pool_mode
            if mode == "transaction" and not sluice_info["transaction_mode"]:
                mode = "session"
                log("Sluice refuses transaction mode: session mode for hop and churn only, "
                    "the other Sluice cases are recorded as skipped")
            sluice_info["pool_mode_used"] = mode
            main_sluice = make_sluice(mode)
            ok, out = main_sluice.check_config()
            if not ok:
                raise HarnessError(f"sluice --check-config refused the generated config:\n{out}")
            main_sluice.start()
            poolers.append(main_sluice)
            targets["sluice"] = scenarios.Target("sluice", main_sluice.port, main_sluice, mode)
            log(f"Sluice ({sluice_info['version']}, {mode} mode) on 127.0.0.1:{main_sluice.port}"
                f" (fd limit {harness.fd_limit(main_sluice.pid)})")

        def factory(extra: str, tag: str) -> harness.Sluice:
            inst = make_sluice("transaction", tag, extra, server_max=20)
            ok, out = inst.check_config()
            if not ok:
                raise HarnessError(out)
            inst.start()
            extra_instances.append(inst)
            return inst

        def probe_extra(extra: str) -> tuple[bool, str]:
            mode = targets["sluice"].pool_mode if "sluice" in targets else "transaction"
            return make_sluice(mode, "bulkhead-probe", extra, server_max=20).check_config()

        sluice_info["threads"] = args.sluice_threads
        meta["sluice"] = sluice_info
        write_meta()
        def pooler_factory(kind: str, pool_size: int, tag: str) -> harness.Pooler:
            """A dedicated, started PgBouncer or Sluice (transaction mode) with this pool size;
            stopped by the scenario, and at the end of the run as a backstop."""
            if kind == "pgbouncer":
                inst: harness.Pooler = harness.PgBouncer(base, pg, pool_size=pool_size, tag=tag)
            elif kind == "sluice":
                inst = harness.Sluice(base, pg, binary, pool_mode="transaction",
                                      pool_size=pool_size, tag=tag,
                                      threads=args.sluice_threads)
                ok, out = inst.check_config()
                if not ok:
                    raise HarnessError(out)
            else:
                raise HarnessError(f"unknown pooler {kind!r}")
            inst.start()
            extra_instances.append(inst)
            return inst

        bench = scenarios.Bench(settings, pg, base, targets, sluice_info, RESULTS, factory,
                                probe_extra, pooler_factory, run_id)
        for name in chosen:
            log(f"=== scenario {name} ===")
            try:
                scenarios.SCENARIOS[name](bench)
            except Exception as exc:  # noqa: BLE001 - one scenario's failure ends only it
                log(f"scenario {name} failed:\n{traceback.format_exc()}")
                bench.record(name, "harness", {}, 0,
                             {"error": f"{type(exc).__name__}: {str(exc)[:2000]}"},
                             status="error")
            write_meta()
        meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        meta["pooler_restarts"] = {p.name + (f"-{p.tag}" if p.tag else ""): p.restarts
                                   for p in poolers if p.restarts}
        write_meta()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        for p in extra_instances + poolers:
            p.stop()
        pg.stop()
        logs = harness.OUT_DIR / "logs"
        logs.mkdir(exist_ok=True)
        for src in [pg.log_file] + [p.log_file for p in poolers + extra_instances]:
            if src.exists():
                name = src.name if src.parent == base else f"{src.parent.name}.log"
                shutil.copy(src, logs / name)
        shutil.rmtree(base, ignore_errors=True)
        harness.cleanup_from_state()
    report.generate(RESULTS, RUN_META, RUNS_DIR)
    log(f"done in {time.monotonic() - started:.0f} s: bench/RESULTS.md, bench/plots/, "
        "bench/out/results.jsonl")
    return 0


def _describe_binary(binary: Path | None, built: bool) -> str | None:
    if binary is None:
        return None
    if built:
        return "bench/out/build/sluice (built by the harness, CMAKE_BUILD_TYPE=Release)"
    try:
        rel = binary.resolve().relative_to(harness.REPO_DIR)
    except ValueError:
        return f"{binary.name} (given with --sluice-bin, outside the repository)"
    build_type = ""
    cache = harness.REPO_DIR / rel.parent / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_BUILD_TYPE:"):
                build_type = line.split("=", 1)[1] or "(empty: CMakeLists.txt's default)"
    return f"{rel} (given with --sluice-bin{', CMAKE_BUILD_TYPE=' + build_type if build_type else ''})"


def _fd_limit() -> str:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return f"{soft}/{hard}"


if __name__ == "__main__":
    sys.exit(main())
