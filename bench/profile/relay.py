#!/usr/bin/python3
"""Profiles Sluice's relay path against PgBouncer on a throwaway PostgreSQL 15 (bench/PROFILE.md).

Started by bench/profile/relay.sh (which raises the fd limit). Reuses bench/harness.py for the
cluster and the poolers (same settings as bench/run.sh: SCRAM passthrough, transaction mode,
pool 20, max_client_conn 12000), with Sluice at `threads = 1`. Phases (--phases, default all):

  cpu        pooler CPU µs per transaction (utime and stime from /proc/PID/stat over the whole
             pgbench run, connection set-up included) for `pgbench -n -S -M simple|extended
             -c C -j 2 -T D`, every target, repetitions interleaved with the targets' order
             rotating; medians. A second Sluice binary (--baseline-bin) runs as `sluice-base`.
  syscalls   `perf stat` of syscall tracepoints attached to each pooler for one pgbench run:
             syscalls per transaction by kind.
  perf       `perf record` (Sluice: --call-graph dwarf; PgBouncer: -g) for one pgbench run;
             `perf script` is reduced to shares by DSO, by category (which syscall the kernel
             time is under, Asio, malloc, ...), self and inclusive by function (perf/*.md).
  callgrind  each pooler under `valgrind --tool=callgrind` twice, from start to exit, with a
             warm-up and then `pgbench -t T1` or `-t T2`: the difference of the two runs over the
             difference of transactions is the per-transaction cost with start-up, logins and
             exit cancelled out: instructions by function and category, malloc/free calls and
             their call sites, pthread_mutex_lock callers, syscall wrappers and their callers.
  idle       a fresh pooler per case holds N idle SCRAM clients (bench/idle.py: logged in, never
             queried; idle_used.py: ran one query first): VmRSS delta per client. Then Sluice
             under heaptrack holds N/4 and N clients and is killed while they are held: the
             difference of the still-live heap per client, by allocation site.

--rows N replaces -S by a range query returning N rows (per-message cost of large results).
Everything goes to --out (default bench/out/profile/RUN_ID/): summary.md, summary.json and the
raw outputs. Standard library plus psycopg 3; run with Debian's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
import harness  # noqa: E402
from harness import DB_NAME, DB_PASSWORD, DB_USER, HarnessError, log  # noqa: E402

PYTHON = "/usr/bin/python3"
SYSCALLS = ["read", "write", "readv", "writev", "recvfrom", "sendto", "recvmsg", "sendmsg",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "futex", "ioctl", "getsockopt",
            "setsockopt", "accept4", "close", "timerfd_settime", "clock_gettime"]


# ---- helpers ---------------------------------------------------------------------------------


def cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of a process, seconds."""
    f = harness._stat_fields(pid)
    if f is None:
        return None
    return int(f[11]) / harness.CLK_TCK, int(f[12]) / harness.CLK_TCK


# Set by --rows: a pgbench script returning that many rows per transaction instead of -S's one
# (for the per-message cost of DataRow-heavy results).
SCRIPT: Path | None = None


def pgbench_argv(port: int, mode: str, clients: int, *, duration: float | None = None,
                 transactions: int | None = None) -> list[str]:
    workload = ["-f", str(SCRIPT)] if SCRIPT else ["-S"]
    argv = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER, *workload,
            "-M", mode, "-c", str(clients), "-j", str(max(1, min(2, clients)))]
    if duration is not None:
        argv += ["-T", str(int(duration))]
    if transactions is not None:
        argv += ["-t", str(transactions)]
    return argv + [DB_NAME]


def parse_pgbench(out: str, err: str) -> dict:
    m: dict = {}
    for pat, key, cast in ((r"number of transactions actually processed: (\d+)", "tx", int),
                           (r"number of failed transactions: (\d+)", "failed", int),
                           (r"tps = ([\d.]+) \(without initial", "tps", float)):
        r = re.search(pat, out)
        if r:
            m[key] = cast(r.group(1))
    m["aborted"] = len(re.findall(r"client \d+ aborted", err))
    if m["aborted"] or "tx" not in m:
        m["stderr"] = err[-800:]
    return m


def run_pgbench(argv: list[str], timeout: float) -> dict:
    code, out, err = harness.run_bounded(argv, timeout=timeout,
                                         env=harness.clean_env(PGPASSWORD=DB_PASSWORD))
    m = parse_pgbench(out, err)
    m["exit_code"] = code
    return m


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


# ---- the run ---------------------------------------------------------------------------------


class Profile:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.out: Path = args.out
        self.summary: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "args": {k: str(v) for k, v in vars(args).items()},
                              "git": harness.git_revision()}
        self.base = harness.make_temp_dir("sluice-profile-")
        self.pg = harness.PgCluster(self.base, scale=args.scale)
        self.targets: dict[str, harness.Pooler] = {}

    # -- processes

    def start(self) -> None:
        log(f"PostgreSQL 15 in {self.base}")
        self.pg.start()
        self.pg.init_pgbench()
        if "pgbouncer" in self.a.targets:
            self.targets["pgbouncer"] = harness.PgBouncer(self.base, self.pg)
        self.targets["sluice"] = harness.Sluice(self.base, self.pg, self.a.sluice_bin,
                                                threads=self.a.threads)
        if self.a.baseline_bin:
            self.targets["sluice-base"] = harness.Sluice(self.base, self.pg, self.a.baseline_bin,
                                                         threads=self.a.threads, tag="base")
        for name, t in self.targets.items():
            t.start()
            log(f"{name} pid {t.pid} port {t.port}")
        # Warm every pool to its 20 backends so that no run pays for backend logins.
        for t in self.targets.values():
            run_pgbench(pgbench_argv(t.port, "simple", 32, duration=2), 40)

    def stop(self) -> None:
        for t in self.targets.values():
            try:
                t.stop()
            except Exception:
                pass
        self.pg.stop()
        shutil.rmtree(self.base, ignore_errors=True)
        harness.state_remove("dirs", lambda x: x == str(self.base))

    def order(self, rep: int) -> list[str]:
        names = list(self.targets)
        k = rep % len(names)
        return names[k:] + names[:k]

    # -- phase: CPU per transaction

    def phase_cpu(self) -> None:
        rows = []
        for rep in range(self.a.reps):
            for mode in self.a.modes:
                for clients in self.a.clients:
                    for name in self.order(rep):
                        t = self.targets[name]
                        c0 = cpu_split(t.pid)
                        m = run_pgbench(pgbench_argv(t.port, mode, clients,
                                                     duration=self.a.duration),
                                        self.a.duration + 60)
                        c1 = cpu_split(t.pid)
                        row = {"target": name, "mode": mode, "clients": clients, "rep": rep, **m}
                        if c0 and c1 and m.get("tx"):
                            row["user_us_tx"] = (c1[0] - c0[0]) * 1e6 / m["tx"]
                            row["sys_us_tx"] = (c1[1] - c0[1]) * 1e6 / m["tx"]
                            row["cpu_us_tx"] = row["user_us_tx"] + row["sys_us_tx"]
                        rows.append(row)
                        log(f"cpu rep {rep} {mode} c={clients} {name}: tps {m.get('tps')} "
                            f"cpu {fmt(row.get('cpu_us_tx'))} µs/tx (user "
                            f"{fmt(row.get('user_us_tx'))}, sys {fmt(row.get('sys_us_tx'))}) "
                            f"failed {m.get('failed')} aborted {m.get('aborted')}")
        self.summary["cpu_runs"] = rows
        table = []
        for mode in self.a.modes:
            for clients in self.a.clients:
                entry = {"mode": mode, "clients": clients}
                for name in self.targets:
                    sel = [r for r in rows if r["target"] == name and r["mode"] == mode
                           and r["clients"] == clients]
                    entry[name] = {k: med([r.get(k) for r in sel])
                                   for k in ("cpu_us_tx", "user_us_tx", "sys_us_tx", "tps")}
                    entry[name]["all_cpu_us_tx"] = [round(r["cpu_us_tx"], 2) for r in sel
                                                    if r.get("cpu_us_tx") is not None]
                    entry[name]["failed"] = sum(r.get("failed") or 0 for r in sel)
                    entry[name]["aborted"] = sum(r.get("aborted") or 0 for r in sel)
                table.append(entry)
        self.summary["cpu"] = table

    # -- a profiler attached to a pooler for the whole of one pgbench run

    def with_profiler(self, t: harness.Pooler, mode: str, argv: list[str]) -> tuple[dict, str]:
        """Runs `argv` (perf stat/record ... -p PID) from just before to just after one
        `pgbench -T duration` run against `t`; returns pgbench's metrics and perf's stderr."""
        prof = subprocess.Popen(argv + ["-p", str(t.pid)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        harness.register_pid(prof.pid, group=False)
        try:
            time.sleep(0.5)
            m = run_pgbench(pgbench_argv(t.port, mode, self.a.clients[0],
                                         duration=self.a.duration), self.a.duration + 60)
        finally:
            prof.send_signal(signal.SIGINT)
            _, err = prof.communicate(timeout=600)
            harness.unregister_pid(prof.pid)
        return m, err

    # -- phase: syscalls per transaction

    def phase_syscalls(self) -> None:
        events = ",".join(["raw_syscalls:sys_enter"] +
                          [f"syscalls:sys_enter_{s}" for s in SYSCALLS])
        res = []
        for mode in self.a.modes:
            for name, t in self.targets.items():
                m, err = self.with_profiler(t, mode, ["perf", "stat", "-x", ";", "-e", events])
                counts = {}
                for line in err.splitlines():
                    parts = line.split(";")
                    if len(parts) > 2 and parts[0].strip().isdigit():
                        ev = parts[2].split(":")[-1].replace("sys_enter_", "")
                        counts["all" if ev == "sys_enter" else ev] = int(parts[0])
                tx = m.get("tx") or 0
                per_tx = {k: round(v / tx, 3) for k, v in counts.items() if tx and v}
                res.append({"target": name, "mode": mode, "tx": tx, "tps": m.get("tps"),
                            "counts": counts, "per_tx": per_tx})
                log(f"syscalls {mode} {name}: {per_tx}")
        self.summary["syscalls"] = res

    # -- phase: perf record

    def phase_perf(self) -> None:
        pdir = self.out / "perf"
        pdir.mkdir(parents=True, exist_ok=True)
        res = {}
        for mode in self.a.modes:
            for name, t in self.targets.items():
                data = pdir / f"{name}-{mode}.data"
                # Sluice is built without frame pointers: DWARF unwinding. PgBouncer's C code
                # unwinds with -g well enough for a comparison of where its time goes.
                cg = (["--call-graph", f"dwarf,{self.a.perf_stack}"]
                      if name.startswith("sluice") else ["-g"])
                m, _ = self.with_profiler(t, mode, ["perf", "record", "-F",
                                                    str(self.a.perf_freq), *cg, "-o", str(data)])
                r = subprocess.run(["perf", "script", "-i", str(data), "-F",
                                    "comm,tid,period,ip,sym,dso"],
                                   capture_output=True, text=True, timeout=1800)
                analysis = analyse_perf_script(r.stdout)
                analysis["pgbench"] = {k: m.get(k) for k in ("tx", "tps", "failed", "aborted")}
                (pdir / f"{name}-{mode}.json").write_text(json.dumps(analysis, indent=1))
                (pdir / f"{name}-{mode}.md").write_text(render_perf(f"{name} {mode}",
                                                                    analysis))
                res[f"{name}-{mode}"] = analysis
                log(f"perf {mode} {name}: {analysis['samples']} samples")
                if not self.a.keep_perf_data:
                    data.unlink(missing_ok=True)
        self.summary["perf"] = {k: {kk: vv for kk, vv in v.items() if kk != "stacks"}
                                for k, v in res.items()}

    # -- phase: callgrind (instructions and allocations per transaction)

    def phase_callgrind(self) -> None:
        # Written in the temporary directory (PgBouncer runs as the bench user), copied to out.
        cdir = self.base / "callgrind"
        cdir.mkdir(exist_ok=True)
        chmod_open(cdir)
        keep = self.out / "callgrind"
        keep.mkdir(parents=True, exist_ok=True)
        res = []
        names = [n for n in self.targets if n in ("sluice", "pgbouncer")]
        c = self.a.cg_clients
        for mode in self.a.modes:
            for name in names:
                runs = []
                for label, n in (("a", self.a.cg_tx[0]), ("b", self.a.cg_tx[1])):
                    path = self.callgrind_run(name, mode, label, n, cdir)
                    shutil.copy(path, keep / path.name)
                    runs.append((n * c, path, parse_callgrind(path)))
                (na, fa, pa), (nb, fb, pb) = runs
                entry = {"target": name, "mode": mode, "clients": c, "tx_a": na, "tx_b": nb,
                         **callgrind_diff(pa, pb, nb - na),
                         "dumps": [f"callgrind/{fa.name}", f"callgrind/{fb.name}"]}
                log(f"callgrind {name} {mode}: {entry['ir_per_tx']} Ir/tx, "
                    f"{entry['malloc_per_tx']} mallocs/tx")
                res.append(entry)
        self.summary["callgrind"] = res

    def callgrind_run(self, name: str, mode: str, label: str, n: int, cdir: Path) -> Path:
        """One pooler under callgrind from start to exit: a warm-up (pool logins), then
        `pgbench -t n`. Two such runs differ only by the extra transactions, so their
        difference is the cost of transactions alone (start-up, logins and exit cancel out)."""
        tag = f"cg-{mode}-{label}"
        if name == "sluice":
            p = harness.Sluice(self.base, self.pg, self.a.sluice_bin, threads=self.a.threads,
                               tag=tag)
        else:
            p = harness.PgBouncer(self.base, self.pg, tag=tag)
        out = cdir / f"{name}.{mode}.{label}"
        inner = p.argv()
        p.argv = lambda: ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          "--dump-instr=no", "--collect-jumps=no", *inner]
        c = self.a.cg_clients
        p.start()
        try:
            w = run_pgbench(pgbench_argv(p.port, mode, c, transactions=20), 600)
            m = run_pgbench(pgbench_argv(p.port, mode, c, transactions=n), 1800)
            if w.get("tx") != c * 20 or m.get("tx") != c * n or m.get("aborted"):
                raise HarnessError(f"callgrind pgbench {name} {mode} {label}: {w} {m}")
            time.sleep(1.0)
        finally:
            p.child.stop(signal.SIGINT, timeout=300)
        if not out.exists():
            raise HarnessError(f"callgrind wrote no {out}")
        return out

    # -- phase: idle memory

    def open_idle(self, port: int, n: int, used: bool = False) -> tuple[harness.Child, dict]:
        """Opens n idle SCRAM clients (bench/idle.py hold, or with `used` idle_used.py: each runs
        one query first); returns the child and its report."""
        if used:
            argv = [PYTHON, str(HERE / "idle_used.py"), "--port", str(port), "--user", DB_USER,
                    "--dbname", DB_NAME, "--count", str(n), "--concurrency", "50",
                    "--max-hold", "900"]
        else:
            argv = [PYTHON, str(BENCH / "idle.py"), "hold", "--port", str(port), "--user",
                    DB_USER, "--dbname", DB_NAME, "--count", str(n), "--concurrency", "100",
                    "--open-timeout", "300", "--max-hold", "900", "--application-name",
                    "bench-idle"]
        child = harness.Child(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=harness.clean_env(PGPASSWORD=DB_PASSWORD), text=True)
        line = child.proc.stdout.readline()
        try:
            return child, json.loads(line)
        except ValueError as exc:
            child.stop()
            raise HarnessError(f"idle.py did not report: {line!r}") from exc

    @staticmethod
    def close_idle(child: harness.Child) -> None:
        try:
            child.proc.stdin.write("close\n")
            child.proc.stdin.flush()
            child.proc.stdout.readline()
        except OSError:
            pass
        child.stop(timeout=20)

    def idle_hold(self, port: int, pid: int, n: int, used: bool = False) -> dict:
        time.sleep(1.0)
        rss0 = harness.vm_rss_kb(pid)
        child, ready = self.open_idle(port, n, used)
        try:
            time.sleep(1.5)
            rss1 = harness.vm_rss_kb(pid)
        finally:
            self.close_idle(child)
        time.sleep(1.0)
        rss2 = harness.vm_rss_kb(pid)
        got = ready.get("connected") or 0
        return {"clients": n, "used": used, "connected": got, "rss_before_kb": rss0,
                "rss_held_kb": rss1,
                "rss_after_kb": rss2,
                "bytes_per_client": round((rss1 - rss0) * 1024 / got, 1) if got else None}

    def phase_idle(self) -> None:
        res = {"rss": [], "heaptrack": None}
        cases = [(n, False) for n in self.a.idle] + [(n, True) for n in self.a.idle_used]
        for n, used in cases:
            for name in ("pgbouncer", "sluice"):
                if name not in self.targets:
                    continue
                # A fresh pooler for each case, so earlier runs leave nothing behind.
                tag = f"idle{n}{'u' if used else ''}"
                fresh = (harness.PgBouncer(self.base, self.pg, tag=tag)
                         if name == "pgbouncer" else
                         harness.Sluice(self.base, self.pg, self.a.sluice_bin,
                                        threads=self.a.threads, tag=tag))
                fresh.start()
                try:
                    run_pgbench(pgbench_argv(fresh.port, "simple", 4, transactions=50), 60)
                    m = self.idle_hold(fresh.port, fresh.pid, n, used)
                finally:
                    fresh.stop()
                m["target"] = name
                res["rss"].append(m)
                log(f"idle {name} {n} {'used' if used else 'fresh'}: {m}")
        if shutil.which("heaptrack") and self.a.heaptrack_clients:
            res["heaptrack"] = self.idle_heaptrack(self.a.heaptrack_clients)
        self.summary["idle"] = res

    def idle_heaptrack(self, n: int) -> dict:
        """Heap bytes per idle client by allocation site: Sluice under heaptrack holding n/4,
        then n idle clients, killed (SIGKILL) while they are held, so that every allocation of
        the held state is still live ("leaked") in the data. The difference of the two runs over
        the difference of clients is the per-client heap, start-up and caches cancelled out."""
        hdir = self.out / "heaptrack"
        hdir.mkdir(parents=True, exist_ok=True)
        counts = (max(1, n // 4), n)
        runs = []
        for label, count in zip(("a", "b"), counts):
            s = harness.Sluice(self.base, self.pg, self.a.sluice_bin, threads=self.a.threads,
                               tag=f"ht-{label}")
            data = hdir / f"heaptrack.{label}"
            inner_argv = s.argv()
            s.argv = lambda data=data, inner_argv=inner_argv: ["heaptrack", "-o", str(data),
                                                               *inner_argv]
            s.start()
            inner = sluice_child_pid(s.pid)
            child = None
            try:
                run_pgbench(pgbench_argv(s.port, "simple", 4, transactions=50), 120)
                time.sleep(1.0)
                rss0 = harness.vm_rss_kb(inner)
                child, ready = self.open_idle(s.port, count)
                time.sleep(3.0)  # heaptrack flushes its buffer on a timer
                rss1 = harness.vm_rss_kb(inner)
                os.kill(inner, signal.SIGKILL)
                try:
                    s.child.wait(timeout=600)
                except subprocess.TimeoutExpired:
                    pass
            finally:
                if child:
                    self.close_idle(child)
                s.child.stop(signal.SIGTERM, timeout=60)
            files = sorted(hdir.glob(f"heaptrack.{label}*"))
            if not files:
                return {"error": f"heaptrack wrote no data for {label}"}
            stacks = hdir / f"leaked-stacks.{label}.txt"
            subprocess.run(["heaptrack_print", "-f", str(files[-1]), "--flamegraph-cost-type",
                            "leaked", "-F", str(stacks), "-p", "0", "-a", "0", "-T", "0"],
                           capture_output=True, text=True, timeout=900)
            r = subprocess.run(["heaptrack_print", "-f", str(files[-1]), "-p", "0", "-a", "0",
                                "-T", "0"], capture_output=True, text=True, timeout=900)
            runs.append({"clients": ready.get("connected"), "rss_before_kb": rss0,
                         "rss_held_kb": rss1, "file": str(files[-1].relative_to(self.out)),
                         "stacks": parse_leak_stacks(stacks),
                         "summary": r.stdout.strip().splitlines()[-6:]})
        a, b = runs
        dn = (b["clients"] or 0) - (a["clients"] or 0)
        sites: collections.Counter = collections.Counter()
        for k, v in b["stacks"].items():
            sites[k] += v
        for k, v in a["stacks"].items():
            sites[k] -= v
        total = sum(sites.values())
        return {
            "clients": [a["clients"], b["clients"]],
            "runs": [{k: v for k, v in r.items() if k != "stacks"} for r in runs],
            "heap_bytes_per_client": round(total / dn, 1) if dn else None,
            "sites_per_client": [(k, round(v / dn, 1)) for k, v in sites.most_common(40)
                                 if dn and abs(v / dn) >= 1],
        }

    # -- report

    def write(self) -> None:
        (self.out / "summary.json").write_text(json.dumps(self.summary, indent=1, default=str))
        (self.out / "summary.md").write_text(render(self.summary))
        log(f"wrote {self.out / 'summary.md'}")


def chmod_open(path: Path) -> None:
    """PgBouncer runs as the unprivileged bench user and must be able to write profiles here."""
    path.chmod(0o777)


def sluice_child_pid(pid: int) -> int:
    """heaptrack runs the debuggee as a child: the pid whose RSS counts."""
    for _ in range(50):
        kids = harness.children_of(pid)
        for k in kids:
            try:
                if "sluice" in Path(f"/proc/{k}/cmdline").read_text():
                    return k
            except OSError:
                pass
            grand = harness.children_of(k)
            if grand:
                return grand[0]
        time.sleep(0.1)
    return pid


def simplify(sym: str) -> str:
    """A C++ symbol without template arguments, parameter lists and clone suffixes."""
    sym = re.sub(r"\+0x[0-9a-f]+$", "", sym.strip())
    sym = sym.replace(" (inlined)", "")
    coro = " [clone .actor]" in sym or " [clone .resume]" in sym
    sym = re.sub(r" \[clone [^\]]*\]", "", sym)
    sym = sym.replace("operator()", "operator\x01").replace("operator<<", "operator\x02")
    sym = sym.replace("operator<", "operator\x03").replace("operator->", "operator\x04")
    out = []
    depth_t = depth_p = 0
    for ch in sym:
        if ch == "<":
            depth_t += 1
            if depth_t == 1 and depth_p == 0:
                out.append("<>")
            continue
        if ch == ">" and depth_t:
            depth_t -= 1
            continue
        if depth_t:
            continue
        if ch == "(":
            depth_p += 1
            if depth_p == 1:
                out.append("()")
            continue
        if ch == ")" and depth_p:
            depth_p -= 1
            continue
        if depth_p:
            continue
        out.append(ch)
    sym = "".join(out)
    sym = sym.replace("\x01", "()").replace("\x02", "<<").replace("\x03", "<").replace("\x04", "->")
    sym = re.sub(r"\(\)$", "", sym)
    sym = sym.replace("boost::asio::", "asio::")
    return sym + (" [coroutine]" if coro else "")


MALLOC = {"malloc", "free", "_int_malloc", "_int_free", "cfree", "__libc_malloc", "__libc_free",
          "malloc_consolidate", "tcache_get", "tcache_put", "_int_free_merge_chunk",
          "_int_free_create_chunk", "_int_free_maybe_consolidate", "unlink_chunk", "operator new",
          "operator delete", "realloc", "_int_realloc", "calloc", "__libc_calloc"}
MUTEX = {"pthread_mutex_lock", "pthread_mutex_unlock", "___pthread_mutex_lock",
         "__pthread_mutex_lock", "__pthread_mutex_unlock", "___pthread_mutex_unlock",
         "__lll_lock_wait", "__lll_lock_wake", "__pthread_mutex_unlock_usercnt"}


def classify(frames: list[tuple[str, str]]) -> str:
    """What one sample was doing, from its stack (leaf first): a coarse category."""
    leaf, dso = frames[0]
    if dso == "kernel":
        for f, d in frames:
            if d != "kernel":
                name = re.sub(r"^(__libc_|__GI___|__)", "", f)
                return f"kernel: {name}"
        return "kernel: other (softirq, scheduler)"
    if leaf in MALLOC or leaf.startswith(("operator new", "operator delete")):
        return "user: malloc/free"
    if leaf in MUTEX:
        return "user: mutex"
    if leaf.startswith(("__memmove", "__memcpy", "__memset", "memcpy", "memmove", "memset",
                        "__memcmp", "memcmp", "__strlen", "strlen")):
        return "user: mem*/str*"
    if leaf.startswith("asio::"):
        return "user: asio (reactor, scheduler, ops, coroutine glue)"
    if leaf.startswith("sluice::"):
        return "user: sluice code"
    if leaf.startswith("std::"):
        return "user: libstdc++/inlined std"
    return f"user: other ({dso})"


def owner(frames: list[tuple[str, str]]) -> str:
    """The innermost Sluice function on the stack (the code that caused this sample)."""
    for f, _ in frames:
        if f.startswith("sluice::") and not f.startswith(("sluice::log::", "sluice::Runtime::")):
            return f
    for f, _ in frames:
        if f.startswith(("pgbouncer", "sbuf_", "server_proto", "client_proto", "janitor")):
            return f
    # Asio starts an operation after the coroutine has suspended (awaitable_thread::pump), so
    # the socket calls of relay() and backend_to_client() appear under the event loop.
    return "(no Sluice frame: event loop, or I/O started by a suspended coroutine)"


def analyse_perf_script(text: str) -> dict:
    """Self and inclusive shares by simplified function, by DSO, by category, and by the Sluice
    function that owns each sample, from `perf script` output with call chains."""
    samples = 0
    self_c: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    dsos: collections.Counter = collections.Counter()
    cats: collections.Counter = collections.Counter()
    owners: collections.Counter = collections.Counter()
    owner_cats: collections.Counter = collections.Counter()
    stacks: collections.Counter = collections.Counter()
    frames: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal samples, frames
        if not frames:
            return
        # An inlined frame lives in the object of the next real frame up the stack.
        real = None
        for i in range(len(frames) - 1, -1, -1):
            if frames[i][1] == "inlined":
                frames[i] = (frames[i][0], real or "inlined")
            else:
                real = frames[i][1]
        samples += 1
        leaf, dso = frames[0]
        self_c[(leaf, dso)] += 1
        dsos[dso] += 1
        for f in set(f for f, _ in frames):
            incl[f] += 1
        c = classify(frames)
        o = owner(frames)
        cats[c] += 1
        owners[o] += 1
        owner_cats[(o, c)] += 1
        user = [f for f, d in frames if d != "kernel"][:12]
        stacks[";".join(reversed(user)) + (";[kernel]" if dso == "kernel" else "")] += 1
        frames = []

    for line in text.splitlines():
        if not line.strip():
            flush()
            continue
        if not line.startswith(("\t", " ")):
            flush()  # a sample header
            continue
        m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line)
        if not m:
            continue
        sym, dso = m.group(1), m.group(2)
        dso = "kernel" if "kernel" in dso or dso.startswith("[") else Path(dso).name
        if sym == "[unknown]":
            continue
        frames.append((simplify(sym), dso))
    flush()
    pct = lambda n: round(100.0 * n / samples, 2) if samples else 0.0  # noqa: E731
    return {
        "samples": samples,
        "dso": [(d, pct(n)) for d, n in dsos.most_common()],
        "categories": [(c, pct(n)) for c, n in cats.most_common()],
        "self": [(f, d, pct(n)) for (f, d), n in self_c.most_common(60)],
        "inclusive": [(f, pct(n)) for f, n in incl.most_common(80)],
        "owners": [(o, pct(n)) for o, n in owners.most_common(30)],
        "owner_categories": [(o, c, pct(n)) for (o, c), n in owner_cats.most_common(60)],
        "stacks": [(s, pct(n)) for s, n in stacks.most_common(60)],
    }


def render_perf(title: str, a: dict) -> str:
    out = [f"# perf: {title} ({a['samples']} samples; pgbench {a.get('pgbench')})", ""]
    for key, head in (("dso", "by DSO"), ("categories", "by category"),
                      ("owners", "by owning Sluice function (innermost sluice:: frame)")):
        out += [f"## {head}", ""] + [f"- {p}% {n}" for n, p in a[key]] + [""]
    out += ["## owner x category", ""] + [f"- {p}% {o} / {c}" for o, c, p in
                                          a["owner_categories"]] + [""]
    out += ["## self", ""] + [f"- {p}% {f} ({d})" for f, d, p in a["self"]] + [""]
    out += ["## inclusive", ""] + [f"- {p}% {f}" for f, p in a["inclusive"]] + [""]
    out += ["## user stacks (root first, 12 innermost user frames)", ""]
    out += [f"- {p}% {s}" for s, p in a["stacks"][:40]] + [""]
    return "\n".join(out) + "\n"


def demangle_all(names) -> dict:
    """c++filt over the names callgrind left mangled (GCC's coroutine actor clones)."""
    mangled = sorted({n for n in names if n.startswith("_Z")})
    if not mangled or not shutil.which("c++filt"):
        return {}
    r = subprocess.run(["c++filt"], input="\n".join(mangled), capture_output=True, text=True,
                       timeout=120)
    return dict(zip(mangled, r.stdout.splitlines()))


def parse_callgrind(path: Path) -> dict:
    """Totals of one callgrind dump: instructions; calls and inclusive cost of every call edge
    (caller -> callee); self instructions by function. Names are simplified (simplify())."""
    names: dict[str, str] = {}
    self_ir: collections.Counter = collections.Counter()
    edge_calls: collections.Counter = collections.Counter()
    edge_cost: collections.Counter = collections.Counter()
    total = 0
    fn = cfn = None
    pending_calls = None

    def resolve(token: str, table: dict) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", token)
        if not m:
            return token
        if m.group(2):
            table[m.group(1)] = m.group(2)
            return m.group(2)
        return table.get(m.group(1), token)

    files: dict[str, str] = {}
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn = resolve(line[3:].strip(), names)
            elif line.startswith("cfn="):
                cfn = resolve(line[4:].strip(), names)
            elif line.startswith(("fl=", "fi=", "fe=", "cfi=", "cfl=", "ob=", "cob=")):
                resolve(line.split("=", 1)[1].strip(), files)
            elif line.startswith("calls="):
                pending_calls = int(line[6:].split()[0])
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if pending_calls is not None:
                    edge_calls[(fn, cfn)] += pending_calls
                    edge_cost[(fn, cfn)] += cost
                    pending_calls = None
                else:
                    self_ir[fn] += cost
    dm = demangle_all(set(names.values()))
    simple = {n: simplify(dm.get(n, n)) for n in set(names.values())}
    s_self: collections.Counter = collections.Counter()
    for k, v in self_ir.items():
        s_self[simple.get(k, k)] += v
    s_calls: collections.Counter = collections.Counter()
    s_cost: collections.Counter = collections.Counter()
    for (a, b), v in edge_calls.items():
        s_calls[(simple.get(a, a), simple.get(b, b))] += v
    for (a, b), v in edge_cost.items():
        s_cost[(simple.get(a, a), simple.get(b, b))] += v
    return {"total_ir": total or sum(self_ir.values()), "self_ir": s_self, "calls": s_calls,
            "cost": s_cost}


def ir_category(fn: str) -> str:
    """Coarse owner of a function's self instructions (callgrind)."""
    if fn in MALLOC or fn.startswith(("operator new", "operator delete", "malloc", "free",
                                      "_int_", "tcache", "cfree", "__libc_malloc",
                                      "__libc_free", "unlink_chunk")):
        return "malloc/free"
    if "pthread_mutex" in fn or "lll_lock" in fn or fn.startswith("std::_Sp_locker"):
        return "mutex lock/unlock"
    if "asio::" in fn[:60] or fn.startswith("_ZN5boost"):
        return "Asio (reactor, scheduler, handlers, awaitable glue)"
    if fn.startswith(("sluice::protocol::detect", "isalnum", "isspace", "tolower", "isdigit",
                      "sluice::protocol::()::Cursor", "sluice::protocol::()::starts_with",
                      "sluice::protocol::iequals", "sluice::protocol::read_query")):
        return "SQL inspection (detect_session_feature, read_query)"
    if fn.startswith(("sluice::pools::", "sluice::PoolManager", "sluice::Lease",
                      "sluice::CancelRegistry")) or "Hashtable" in fn:
        return "pool manager, admission, cancel registry"
    if fn.startswith("sluice::"):
        return "Sluice relay and session code"
    if fn.startswith(("recv", "sendmsg", "send", "epoll", "__libc_recv", "__libc_send",
                      "__pthread_enable_asynccancel", "__pthread_disable_asynccancel")):
        return "libc syscall wrappers"
    if fn.startswith("0x"):
        return "unresolved (no symbols)"
    return "other (libstdc++, libc, libevent)"


ALLOC_FNS = ("malloc", "calloc", "realloc", "__libc_malloc", "__libc_calloc", "__libc_realloc")
NEW_FNS = ("operator new",)


def callgrind_diff(pa: dict, pb: dict, dtx: int) -> dict:
    """Per-transaction figures from two dumps (b minus a, over dtx transactions)."""
    def diff(key):
        c: collections.Counter = collections.Counter()
        for k, v in pb[key].items():
            c[k] += v
        for k, v in pa[key].items():
            c[k] -= v
        return c
    self_ir, calls, cost = diff("self_ir"), diff("calls"), diff("cost")
    total = pb["total_ir"] - pa["total_ir"]
    incl: collections.Counter = collections.Counter()
    for k, v in self_ir.items():
        incl[k] += v
    for (a, b), v in cost.items():
        if a != b:
            incl[a] += v
    mallocs = sum(v for (a, b), v in calls.items() if b in ALLOC_FNS)
    frees = sum(v for (a, b), v in calls.items() if b in ("free", "__libc_free", "cfree"))
    # Allocation sites: callers of operator new (and of malloc other than operator new).
    sites: collections.Counter = collections.Counter()
    for (a, b), v in calls.items():
        if (b in ALLOC_FNS and not a.startswith("operator new")) or b.startswith(NEW_FNS):
            if not a.startswith("operator new"):
                sites[a] += v
    lock_callers: collections.Counter = collections.Counter()
    for (a, b), v in calls.items():
        if "pthread_mutex_lock" in b:
            lock_callers[a] += v
    syscall_callers: collections.Counter = collections.Counter()
    for (a, b), v in calls.items():
        if b in ("recv", "__libc_recv", "sendmsg", "__libc_sendmsg", "recvmsg", "send",
                 "epoll_wait", "__libc_recvfrom", "recvfrom", "sendto", "__libc_send",
                 "epoll_ctl", "read", "write", "__libc_read", "__libc_write", "writev", "readv"):
            syscall_callers[f"{b} <- {a}"] += v
    r = lambda v: round(v / dtx, 3)  # noqa: E731
    cats: collections.Counter = collections.Counter()
    for k, v in self_ir.items():
        cats[ir_category(k)] += v
    return {
        "ir_categories": [(k, round(100 * v / total, 1), round(v / dtx)) for k, v in
                          cats.most_common() if v > 0],
        "ir_per_tx": round(total / dtx), "malloc_per_tx": r(mallocs), "free_per_tx": r(frees),
        "alloc_sites_per_tx": [(k, r(v)) for k, v in sites.most_common(30) if v / dtx >= 0.01],
        "mutex_lock_per_tx": [(k, r(v)) for k, v in lock_callers.most_common(15)
                              if v / dtx >= 0.01],
        "syscalls_per_tx": [(k, r(v)) for k, v in syscall_callers.most_common(20)
                            if v / dtx >= 0.01],
        "top_self_ir": [(k, round(100 * v / total, 2), round(v / dtx))
                        for k, v in self_ir.most_common(45)],
        "top_inclusive_ir": [(k, round(100 * v / total, 2), round(v / dtx))
                             for k, v in incl.most_common(70)],
    }


ALLOC_FRAMES = ("std::__new_allocator", "std::allocator", "std::_Vector_base", "operator new",
                "malloc", "std::__cxx11::basic_string<>::_M_", "__gnu_cxx::", "std::_Hashtable_alloc",
                "std::__detail::_Hashtable_alloc", "std::_Sp_", "std::__allocate_shared",
                "std::__shared_count", "std::make_shared", "std::allocate_shared", "void* asio::detail::thread_info_base::allocate",
                "asio::detail::recycling_allocator", "asio::aligned_new", "asio::detail::aligned_new")


SOURCE_FILES = {p.name for d in ("src", "protocol", "pools", "config") for p in
                (REPO / d).rglob("*.[ch]pp")}


def parse_leak_stacks(path: Path) -> collections.Counter:
    """heaptrack's flame-graph stacks (root first, `frame (file);...; bytes`), grouped by the
    innermost Sluice frame and the first frame below it that is not allocator plumbing."""
    out: collections.Counter = collections.Counter()
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        stack, _, num = line.rpartition(";")
        try:
            nbytes = int(num.strip())
        except ValueError:
            continue
        if not nbytes:
            continue
        raw = [f for f in stack.split(";") if f]
        files = [(re.search(r" \(([^()]*)\)$", f) or [None, ""])[1] for f in raw]
        frames = [simplify(re.sub(r" \([^()]*\)$", "", f)) for f in raw]
        frames = [f"{f} ({fl})" if fl in SOURCE_FILES and not f.startswith("sluice::") else f
                  for f, fl in zip(frames, files)]
        idx = max((i for i, (f, fl) in enumerate(zip(frames, files))
                   if f.startswith("sluice::") or fl in SOURCE_FILES), default=None)
        if idx is None:
            key = "(outside Sluice code) " + " < ".join(reversed(frames[-3:]))
        else:
            below = [f for f in frames[idx + 1:] if not f.startswith(ALLOC_FRAMES)]
            key = frames[idx] + (" > " + " > ".join(below[:2]) if below else "")
        out[key] += nbytes
    return out


def render(s: dict) -> str:
    a = s.get("args", {})
    lines = [f"# Relay profile run ({s['started']}, git {s['git']})", "",
             f"sluice: `{a.get('sluice_bin')}`" +
             (f", sluice-base: `{a.get('baseline_bin')}`" if a.get("baseline_bin") != "None" else "")
             + f"; clients {a.get('clients')}, -T {a.get('duration')}, reps {a.get('reps')}"
             + (f", {a.get('rows')} rows per transaction" if a.get("rows") not in ("0", None) else
                ", pgbench -S"), ""]
    if "cpu" in s:
        names = [k for k in s["cpu"][0] if k not in ("mode", "clients")] if s["cpu"] else []
        lines += ["## Pooler CPU per transaction (µs, median; user + sys)", "",
                  "| mode | clients | " + " | ".join(names) + " | Sluice/PgBouncer |",
                  "|---|---|" + "---|" * (len(names) + 1)]
        for e in s["cpu"]:
            cells = []
            for n in names:
                d = e[n]
                cells.append(f"{fmt(d['cpu_us_tx'])} ({fmt(d['user_us_tx'])} + "
                             f"{fmt(d['sys_us_tx'])}), {fmt(d['tps'], 0)} tps, runs "
                             f"{d['all_cpu_us_tx']}, failed {d['failed']}, aborted {d['aborted']}")
            ratio = "–"
            if "pgbouncer" in e and e["pgbouncer"]["cpu_us_tx"] and e["sluice"]["cpu_us_tx"]:
                ratio = f"{e['sluice']['cpu_us_tx'] / e['pgbouncer']['cpu_us_tx']:.2f}×"
            lines.append(f"| {e['mode']} | {e['clients']} | " + " | ".join(cells) +
                         f" | {ratio} |")
        lines.append("")
    if "syscalls" in s:
        lines += ["## Syscalls per transaction (perf stat, tracepoints)", ""]
        keys = sorted({k for r in s["syscalls"] for k in r["per_tx"]})
        lines += ["| target | mode | " + " | ".join(keys) + " |",
                  "|---|---|" + "---|" * len(keys)]
        for r in s["syscalls"]:
            lines.append(f"| {r['target']} | {r['mode']} | " +
                         " | ".join(fmt(r["per_tx"].get(k), 2) for k in keys) + " |")
        lines.append("")
    if "callgrind" in s:
        lines += ["## callgrind (user space only; difference of two dumps, per transaction)", ""]
        for c in s["callgrind"]:
            lines += [f"### {c['target']} {c['mode']}: {c['ir_per_tx']:,} instructions/tx, "
                      f"{c['malloc_per_tx']} malloc/tx, {c['free_per_tx']} free/tx", ""]
            lines += ["instructions by category (% of total, Ir/tx):", ""]
            lines += [f"- {p}% {ir:,} {k}" for k, p, ir in c.get("ir_categories", [])] + [""]
            for key, head in (("alloc_sites_per_tx", "allocation sites (calls per tx)"),
                              ("mutex_lock_per_tx", "pthread_mutex_lock callers (per tx)"),
                              ("syscalls_per_tx", "syscall wrappers <- caller (per tx)")):
                lines += [f"{head}:", ""] + [f"- {v} {k}" for k, v in c[key]] + [""]
            lines += ["top functions by self instructions (% of total, Ir/tx):", ""]
            lines += [f"- {p}% {ir:,} {k}" for k, p, ir in c["top_self_ir"][:35]]
            lines += ["", "top functions by inclusive instructions (% of total, Ir/tx):", ""]
            lines += [f"- {p}% {ir:,} {k}" for k, p, ir in c["top_inclusive_ir"][:50]]
            lines.append("")
    if "perf" in s:
        lines += ["## perf (cpu-clock samples over one pgbench run; see perf/*.md)", ""]
        for k, a in s["perf"].items():
            lines += [f"### {k}: {a['samples']} samples", "", "by category:", ""]
            lines += [f"- {p}% {n}" for n, p in a["categories"][:14]] + [""]
    if "idle" in s:
        lines += ["## Idle clients (VmRSS delta / clients)", "",
                  "| target | clients | kind | connected | bytes/client |", "|---|---|---|---|---|"]
        for r in s["idle"]["rss"]:
            kind = "ran one query, then idle" if r.get("used") else "logged in, never queried"
            lines.append(f"| {r['target']} | {r['clients']} | {kind} | {r['connected']} | "
                         f"{fmt(r['bytes_per_client'])} |")
        ht = s["idle"].get("heaptrack")
        if ht and "sites_per_client" in ht:
            lines += ["", f"heaptrack (live heap while held, runs with {ht['clients']} clients, "
                          f"difference per client): {ht['heap_bytes_per_client']} B/client "
                          "(requested bytes, without malloc's own overhead)", ""]
            for site, v in ht["sites_per_client"]:
                lines.append(f"- {v} B {site}")
        elif ht:
            lines += ["", f"heaptrack: {ht}"]
        lines.append("")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/profile/relay.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sluice-bin", type=Path, default=REPO / "build-perf" / "sluice")
    p.add_argument("--baseline-bin", type=Path,
                   help="a second sluice binary measured alongside (target sluice-base)")
    p.add_argument("--phases", default="cpu,syscalls,perf,callgrind,idle")
    p.add_argument("--targets", default="pgbouncer,sluice")
    p.add_argument("--modes", default="simple,extended")
    p.add_argument("--clients", default="64", help="comma-separated; the first is used for "
                   "syscalls and perf")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="Sluice's `threads`")
    p.add_argument("--scale", type=int, default=10)
    p.add_argument("--perf-freq", type=int, default=1999)
    p.add_argument("--perf-stack", type=int, default=16384, help="DWARF stack bytes per sample")
    p.add_argument("--keep-perf-data", action="store_true")
    p.add_argument("--cg-clients", type=int, default=16)
    p.add_argument("--cg-tx", default="100,600", help="pgbench -t of the two callgrind dumps")
    p.add_argument("--idle", default="2000", help="idle client counts (comma-separated)")
    p.add_argument("--idle-used", default="1000",
                   help="counts of idle clients that ran one query first (comma-separated)")
    p.add_argument("--heaptrack-clients", type=int, default=2000, help="0: skip heaptrack")
    p.add_argument("--rows", type=int, default=0,
                   help="instead of -S, a point range query returning this many rows")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    a.modes = a.modes.split(",")
    a.clients = [int(x) for x in a.clients.split(",")]
    a.cg_tx = [int(x) for x in a.cg_tx.split(",")]
    a.idle = [int(x) for x in a.idle.split(",") if x]
    a.idle_used = [int(x) for x in a.idle_used.split(",") if x]
    a.targets = a.targets.split(",")
    a.phases = a.phases.split(",")
    a.sluice_bin = a.sluice_bin.resolve()
    if a.baseline_bin:
        a.baseline_bin = a.baseline_bin.resolve()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    a.out = (a.out or BENCH / "out" / "profile" / run_id).resolve()
    return a


def main() -> int:
    a = parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    # A state file of our own: bench/run.sh's cleanup must not stop our processes, nor we its.
    harness.OUT_DIR = a.out
    harness.STATE_FILE = a.out / "state.json"
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda n, f: (_ for _ in ()).throw(KeyboardInterrupt()))
    prof = Profile(a)
    if a.rows:
        global SCRIPT
        SCRIPT = prof.base / "rows.sql"
        SCRIPT.write_text(f"\\set aid random(1, {100000 * a.scale - a.rows})\n"
                          "SELECT aid, bid, abalance FROM pgbench_accounts "
                          f"WHERE aid BETWEEN :aid AND :aid + {a.rows - 1};\n")
        SCRIPT.chmod(0o644)
    try:
        prof.start()
        for phase in a.phases:
            log(f"phase {phase}")
            getattr(prof, f"phase_{phase}")()
            prof.write()
    except (HarnessError, KeyboardInterrupt) as exc:
        log(f"stopped: {exc}")
        prof.write()
        return 1
    finally:
        prof.stop()
        harness.cleanup_from_state()
    return 0


if __name__ == "__main__":
    sys.exit(main())
