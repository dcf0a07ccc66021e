#!/usr/bin/python3
"""Idle clients that have been used: opens N SCRAM connections (bench/wire.py), runs QUERIES
simple queries on each (so every session has been through the relay at least once), prints one
JSON line {"event": "ready", ...}, keeps them idle until a line on stdin (or --max-hold seconds),
closes them and prints {"event": "closed"}. bench/idle.py holds clients that never sent a query;
this is the other half of what a pooler in front of an application's connection pool holds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import wire  # noqa: E402


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    conns: list[wire.Conn] = []
    failed: collections.Counter[str] = collections.Counter()
    sem = asyncio.Semaphore(args.concurrency)
    started = time.monotonic()

    async def one() -> None:
        async with sem:
            try:
                conn = await wire.connect(args.host, args.port, args.user, args.password,
                                          args.dbname, timeout=args.open_timeout)
                for _ in range(args.queries):
                    await asyncio.wait_for(conn.query(args.sql), args.open_timeout)
                conns.append(conn)
            except wire.PgError as exc:
                failed[exc.sqlstate] += 1
            except (asyncio.TimeoutError, OSError) as exc:
                failed[type(exc).__name__] += 1

    await asyncio.gather(*(one() for _ in range(args.count)))
    emit({"event": "ready", "requested": args.count, "connected": len(conns),
          "failed": dict(failed), "open_seconds": round(time.monotonic() - started, 3)})
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), args.max_hold)
    except asyncio.TimeoutError:
        pass
    for c in conns:
        c.close()
    await asyncio.sleep(0.2)
    emit({"event": "closed"})


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default=os.environ.get("PGPASSWORD", ""))
    p.add_argument("--dbname", required=True)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--queries", type=int, default=1)
    p.add_argument("--sql", default="SELECT 1")
    p.add_argument("--open-timeout", type=float, default=120.0)
    p.add_argument("--max-hold", type=float, default=600.0)
    a = p.parse_args()
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("idle_used.py talks to the loopback address only")
    asyncio.run(main(a))
