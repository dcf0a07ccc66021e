#!/usr/bin/python3
"""Idle clients and connection floods over raw sockets (bench/wire.py), as a child process of the
harness so that its file descriptors and CPU are its own.

  idle.py hold  --count N ...   open N authenticated connections, print one JSON line
                                {"event": "ready", ...}, keep them idle until a line "close" on
                                stdin (or EOF, or --max-hold seconds), then close them and print
                                {"event": "closed"}.
  idle.py flood --concurrency C --duration S ...
                                C workers each open a connection, count the outcome (connected,
                                or refused with a SQLSTATE), close it and try again at once,
                                for S seconds; print one JSON line with the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def hold(args: argparse.Namespace) -> None:
    conns: list[wire.Conn] = []
    failed: collections.Counter[str] = collections.Counter()
    messages: dict[str, str] = {}
    sem = asyncio.Semaphore(args.concurrency)
    stop_opening = asyncio.Event()
    started = time.monotonic()
    deadline = started + args.open_timeout

    async def one() -> None:
        if stop_opening.is_set():
            failed["not_attempted"] += 1
            return
        async with sem:
            if stop_opening.is_set() or time.monotonic() > deadline:
                failed["not_attempted"] += 1
                return
            try:
                conn = await wire.connect(args.host, args.port, args.user, args.password,
                                          args.dbname, application_name=args.application_name,
                                          timeout=max(1.0, deadline - time.monotonic()))
                conns.append(conn)
            except wire.PgError as exc:
                failed[exc.sqlstate] += 1
                messages.setdefault(exc.sqlstate, exc.message)
                refused = sum(v for k, v in failed.items() if k != "not_attempted")
                if args.give_up_after and refused >= args.give_up_after:
                    stop_opening.set()
            except asyncio.TimeoutError:
                failed["timeout"] += 1
            except OSError as exc:
                failed["oserror"] += 1
                messages.setdefault("oserror", str(exc))

    await asyncio.gather(*(one() for _ in range(args.count)))
    emit({"event": "ready", "requested": args.count, "connected": len(conns),
          "failed": dict(failed), "messages": messages,
          "open_seconds": round(time.monotonic() - started, 3),
          "stopped_early": stop_opening.is_set()})

    loop = asyncio.get_running_loop()
    try:
        line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline),
                                      args.max_hold)
    except asyncio.TimeoutError:
        line = "timeout"
    # Still connected? A pooler may have closed idle clients meanwhile.
    alive = sum(1 for c in conns if not c.reader.at_eof())
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)
    emit({"event": "closed", "reason": line.strip() or "eof", "alive_at_close": alive})


async def flood(args: argparse.Namespace) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    messages: dict[str, str] = {}
    stop = time.monotonic() + args.duration

    async def worker() -> None:
        while time.monotonic() < stop:
            try:
                conn = await wire.connect(args.host, args.port, args.user, args.password,
                                          args.dbname, application_name=args.application_name,
                                          timeout=max(0.5, stop - time.monotonic() + 1))
                outcomes["connected"] += 1
                conn.close()
            except wire.PgError as exc:
                outcomes[exc.sqlstate] += 1
                messages.setdefault(exc.sqlstate, exc.message)
            except asyncio.TimeoutError:
                outcomes["timeout"] += 1
            except OSError as exc:
                outcomes["oserror"] += 1
                messages.setdefault("oserror", str(exc))
                await asyncio.sleep(0.01)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = time.monotonic() - started
    emit({"event": "flood", "seconds": round(elapsed, 3), "outcomes": dict(outcomes),
          "attempts": sum(outcomes.values()), "messages": messages})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("mode", choices=["hold", "flood"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default=os.environ.get("PGPASSWORD", ""))
    p.add_argument("--dbname", required=True)
    p.add_argument("--application-name", default="bench-idle")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--open-timeout", type=float, default=120.0)
    p.add_argument("--max-hold", type=float, default=120.0)
    p.add_argument("--give-up-after", type=int, default=0,
                   help="stop opening after this many refused connections (0: never)")
    p.add_argument("--duration", type=float, default=5.0)
    args = p.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("idle.py talks to the loopback address only")
    asyncio.run(hold(args) if args.mode == "hold" else flood(args))


if __name__ == "__main__":
    main()
