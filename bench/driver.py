#!/usr/bin/python3
"""A small refusal-tolerant load driver (asyncpg, Debian's python3-asyncpg).

pgbench 15 drops a client at its first error, so overload scenarios where a pooler refuses work
use this instead. Each client class is `NAME:COUNT:POLICY:SQL`:

  NAME    the class; also sent as application_name, so a pooler can classify the client
  COUNT   number of clients (one connection each)
  POLICY  what a client does after an error:
            hint       sleep as long as a HINT "retry after N ms" says, else retry at once
            immediate  retry at once, ignoring any hint
  SQL     one statement, run with the simple-query protocol; "{aid}" is replaced by a random
          pgbench_accounts key for each request

The clients are spread over --procs worker processes (asyncpg's SCRAM and the per-query work
are CPU-bound Python; one process would be the bottleneck). Every client connects first; the
driver prints {"event": "ready", ...} and waits for a line "go" on stdin (unless --no-wait), runs
for --duration seconds, prints {"event": "stop"} at the end of that window and {"event": "done"}
when the clients have stopped, closes its connections and prints
{"event": "result", ...} with, per class: successes, attempts, errors by SQLSTATE, hints seen,
successful-attempt latency percentiles, end-to-end request latency (first attempt to success,
retries included) and a per-second timeline. A connection that is lost or refused is reopened
(counted as a connection attempt), following the same policy. Errors without a SQLSTATE are
counted as "conn" (socket closed, reset, refused) or "timeout". Requests still in flight at the
end are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import multiprocessing
import os
import random
import re
import sys
import time

import asyncpg

HINT_RE = re.compile(r"retry after\s+(\d+)\s*ms", re.IGNORECASE)


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an unsorted list; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


class ClassStats:
    def __init__(self, name: str, count: int, policy: str, sql: str) -> None:
        self.name, self.count, self.policy, self.sql = name, count, policy, sql
        self.ok = 0
        self.attempts = 0
        self.connect_attempts = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.setup_errors: collections.Counter[str] = collections.Counter()
        self.messages: dict[str, str] = {}
        self.hints_seen = 0
        self.hint_sleep_s = 0.0
        self.lat: list[float] = []       # successful attempt latency, seconds
        self.req_lat: list[float] = []   # first attempt to success, seconds
        self.timeline: dict[int, list] = {}  # second -> [ok, errors, [latencies]]

    def with_count(self, count: int) -> "ClassStats":
        return ClassStats(self.name, count, self.policy, self.sql)

    def raw(self) -> dict:
        return {k: (dict(v) if isinstance(v, collections.Counter) else v)
                for k, v in self.__dict__.items()}

    def merge(self, raw: dict) -> None:
        self.ok += raw["ok"]
        self.attempts += raw["attempts"]
        self.connect_attempts += raw["connect_attempts"]
        self.errors.update(raw["errors"])
        self.setup_errors.update(raw["setup_errors"])
        for k, v in raw["messages"].items():
            self.messages.setdefault(k, v)
        self.hints_seen += raw["hints_seen"]
        self.hint_sleep_s += raw["hint_sleep_s"]
        self.lat.extend(raw["lat"])
        self.req_lat.extend(raw["req_lat"])
        for sec, (ok, err, lats) in raw["timeline"].items():
            slot = self.timeline.setdefault(int(sec), [0, 0, []])
            slot[0] += ok
            slot[1] += err
            slot[2].extend(lats)

    def result(self, seconds: float) -> dict:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        timeline = []
        for sec in range(int(math.ceil(seconds))):
            ok, err, lats = self.timeline.get(sec, [0, 0, []])
            timeline.append({"t": sec, "ok": ok, "errors": err,
                             "p50_ms": ms(percentile(lats, 50)), "p99_ms": ms(percentile(lats, 99))})
        return {
            "clients": self.count, "policy": self.policy, "sql": self.sql,
            "ok": self.ok, "attempts": self.attempts, "tps": round(self.ok / seconds, 2),
            "attempts_per_s": round(self.attempts / seconds, 2),
            "connect_attempts": self.connect_attempts,
            "errors": dict(self.errors), "error_total": sum(self.errors.values()),
            "setup_errors": dict(self.setup_errors), "messages": self.messages,
            "hints_seen": self.hints_seen, "hint_sleep_s": round(self.hint_sleep_s, 3),
            "p50_ms": ms(percentile(self.lat, 50)), "p90_ms": ms(percentile(self.lat, 90)),
            "p99_ms": ms(percentile(self.lat, 99)), "max_ms": ms(max(self.lat, default=None)),
            "mean_ms": ms(sum(self.lat) / len(self.lat)) if self.lat else None,
            "req_p50_ms": ms(percentile(self.req_lat, 50)),
            "req_p99_ms": ms(percentile(self.req_lat, 99)),
            "timeline": timeline,
        }


class Worker:
    """One process's share of the clients, on one asyncio loop."""

    def __init__(self, args: argparse.Namespace, classes: list[ClassStats], pipe) -> None:
        self.args = args
        self.classes = classes
        self.pipe = pipe
        self.go_at = 0.0
        self.stop_at = math.inf
        self.conns: list[asyncpg.Connection] = []

    def classify(self, exc: BaseException) -> tuple[str, str | None, bool]:
        """(sqlstate or kind, hint, connection still usable)."""
        if isinstance(exc, asyncpg.PostgresError):
            return (exc.sqlstate or "?????", getattr(exc, "hint", None),
                    getattr(exc, "severity", "ERROR") not in ("FATAL", "PANIC"))
        if isinstance(exc, asyncio.TimeoutError):
            return "timeout", None, False
        return "conn", None, False

    async def connect(self, cls: ClassStats) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            host=self.args.host, port=self.args.port, user=self.args.user,
            password=self.args.password, database=self.args.dbname, ssl=False,
            statement_cache_size=0, timeout=self.args.connect_timeout,
            server_settings={"application_name": cls.name})
        self.conns.append(conn)
        return conn

    async def backoff(self, cls: ClassStats, hint: str | None) -> None:
        delay = 0.0
        if hint:
            m = HINT_RE.search(hint)
            if m:
                cls.hints_seen += 1
                if cls.policy == "hint":
                    delay = int(m.group(1)) / 1000.0
        if delay > 0:
            delay = min(delay, max(0.0, self.stop_at - time.monotonic()))
            cls.hint_sleep_s += delay
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let the others run; this is the "immediate" retry

    def failed(self, cls: ClassStats, exc: BaseException) -> tuple[str | None, bool]:
        kind, hint, usable = self.classify(exc)
        if time.monotonic() < self.stop_at:
            cls.errors[kind] += 1
            cls.messages.setdefault(kind, str(exc)[:200])
            self.tick(cls, ok=False)
        return hint, usable

    async def client(self, cls: ClassStats, setup_sem: asyncio.Semaphore,
                     ready: asyncio.Event) -> None:
        conn = None
        async with setup_sem:
            try:
                conn = await self.connect(cls)
            except Exception as exc:  # noqa: BLE001 - counted by kind
                kind, _, _ = self.classify(exc)
                cls.setup_errors[kind] += 1
                cls.messages.setdefault(kind, str(exc)[:200])
        await ready.wait()
        rows = self.args.scale * 100000
        request_start = None
        while True:
            now = time.monotonic()
            if now >= self.stop_at:
                return
            if request_start is None:
                request_start = now
            if conn is None or conn.is_closed():
                cls.connect_attempts += 1
                try:
                    conn = await self.connect(cls)
                except Exception as exc:  # noqa: BLE001
                    hint, _ = self.failed(cls, exc)
                    conn = None
                    await self.backoff(cls, hint)
                    continue
            sql = cls.sql.replace("{aid}", str(random.randint(1, rows)))
            cls.attempts += 1
            t0 = time.monotonic()
            try:
                await conn.execute(sql)
            except Exception as exc:  # noqa: BLE001
                hint, usable = self.failed(cls, exc)
                if not usable:
                    try:
                        conn.terminate()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
                await self.backoff(cls, hint)
                continue
            t1 = time.monotonic()
            if t1 <= self.stop_at:
                cls.ok += 1
                cls.lat.append(t1 - t0)
                cls.req_lat.append(t1 - request_start)
                self.tick(cls, ok=True, latency=t1 - t0, at=t1)
            request_start = None

    def tick(self, cls: ClassStats, ok: bool, latency: float = 0.0, at: float | None = None) -> None:
        sec = int(((at or time.monotonic()) - self.go_at))
        slot = cls.timeline.setdefault(sec, [0, 0, []])
        if ok:
            slot[0] += 1
            slot[2].append(latency)
        else:
            slot[1] += 1

    async def run(self) -> None:
        setup_sem = asyncio.Semaphore(self.args.connect_concurrency)
        ready = asyncio.Event()
        tasks = [asyncio.create_task(self.client(cls, setup_sem, ready))
                 for cls in self.classes for _ in range(cls.count)]
        deadline = time.monotonic() + self.args.setup_timeout
        total = sum(c.count for c in self.classes)
        while time.monotonic() < deadline:
            tried = len(self.conns) + sum(sum(c.setup_errors.values()) for c in self.classes)
            if tried >= total:
                break
            await asyncio.sleep(0.02)
        self.pipe.send(("ready", len(self.conns)))
        loop = asyncio.get_running_loop()
        command = await loop.run_in_executor(None, self.pipe.recv)
        if command != "go":
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.close_all()
            return
        self.go_at = time.monotonic()
        self.stop_at = self.go_at + self.args.duration
        ready.set()
        await asyncio.sleep(self.args.duration)
        done, pending = await asyncio.wait(tasks, timeout=self.args.grace)
        self.pipe.send(("done", len(pending)))
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        crashes = [repr(t.exception()) for t in done if t.exception() is not None]
        self.close_all()
        self.pipe.send(("result", [c.raw() for c in self.classes], crashes))

    def close_all(self) -> None:
        for conn in self.conns:
            try:
                conn.terminate()
            except Exception:  # noqa: BLE001
                pass


def worker_main(args: argparse.Namespace, classes: list[ClassStats], pipe) -> None:
    try:
        asyncio.run(Worker(args, classes, pipe).run())
    except KeyboardInterrupt:
        pass


def split(classes: list[ClassStats], procs: int,
          isolate: bool = False) -> list[list[ClassStats]]:
    """Each class's clients dealt over the processes as evenly as possible; with `isolate`,
    each class in a process of its own, so that one class's work (a flood of refusals and
    retries) cannot delay another class's event loop and show up as its latency."""
    if isolate:
        return [[cls] for cls in classes]
    shares: list[list[ClassStats]] = [[] for _ in range(procs)]
    for cls in classes:
        for i in range(procs):
            n = cls.count // procs + (1 if i < cls.count % procs else 0)
            if n:
                shares[i].append(cls.with_count(n))
    return [s for s in shares if s]


def recv(pipe, timeout: float):
    if not pipe.poll(timeout):
        emit({"event": "error", "error": "a worker process did not answer"})
        sys.exit(1)
    return pipe.recv()


def run(args: argparse.Namespace) -> None:
    ctx = multiprocessing.get_context("fork")
    shares = split(args.classes, max(1, args.procs), args.isolate_classes)
    workers = []
    for share in shares:
        parent, child = ctx.Pipe()
        p = ctx.Process(target=worker_main, args=(args, share, child), daemon=True)
        p.start()
        workers.append((p, parent))
    started = time.monotonic()
    connected = sum(recv(parent, args.setup_timeout + 30)[1] for _, parent in workers)
    setup_s = round(time.monotonic() - started, 3)
    merged = {c.name: c.with_count(c.count) for c in args.classes}
    emit({"event": "ready", "connected": connected, "setup_s": setup_s})
    go = "go" if args.no_wait else sys.stdin.readline().strip()
    for _, parent in workers:
        parent.send(go)
    if go != "go":
        emit({"event": "aborted"})
        return
    time.sleep(args.duration)
    emit({"event": "stop"})  # the end of the measured window (workers stop on their own clocks)
    in_flight = sum(recv(parent, args.duration + args.grace + 30)[1] for _, parent in workers)
    emit({"event": "done", "in_flight_at_end": in_flight})
    closing = time.monotonic()
    crashes: list[str] = []
    for _, parent in workers:
        _, raws, crashed = recv(parent, 60)
        crashes += crashed
        for raw in raws:
            merged[raw["name"]].merge(raw)
    for p, _ in workers:
        p.join(timeout=10)
    emit({"event": "result", "seconds": args.duration, "procs": len(workers),
          "close_s": round(time.monotonic() - closing, 3), "client_crashes": crashes[:5],
          "classes": {name: c.result(args.duration) for name, c in merged.items()}})


def parse_class(spec: str) -> ClassStats:
    try:
        name, count, policy, sql = spec.split(":", 3)
        count_i = int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad class {spec!r}: want NAME:COUNT:POLICY:SQL")
    if policy not in ("hint", "immediate"):
        raise argparse.ArgumentTypeError(f"bad policy {policy!r}: hint or immediate")
    return ClassStats(name, count_i, policy, sql)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default=os.environ.get("PGPASSWORD", ""))
    p.add_argument("--dbname", required=True)
    p.add_argument("--class", dest="classes", action="append", type=parse_class, required=True,
                   metavar="NAME:COUNT:POLICY:SQL")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--procs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--isolate-classes", action="store_true",
                   help="one worker process per class (ignores --procs)")
    p.add_argument("--scale", type=int, default=10, help="pgbench scale, for {aid}")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--connect-concurrency", type=int, default=50)
    p.add_argument("--setup-timeout", type=float, default=60.0)
    p.add_argument("--grace", type=float, default=1.0)
    p.add_argument("--no-wait", action="store_true", help="start at once, without 'go' on stdin")
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("driver.py talks to the loopback address only")
    run(args)


if __name__ == "__main__":
    main()
