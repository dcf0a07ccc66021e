#!/usr/bin/python3
"""Takes docs/img/dashboard-real-overload.png: a real PostgreSQL 15 and Sluice (SLUICE_BIN, else
build/sluice), 8 critical clients beside 80 batch clients running pg_sleep(0.05) against batch
max = 6, and Debian's Chromium rendering the dashboard. Usage: dashboard_real_screenshot.py OUT.png
"""
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pgcluster  # noqa: E402
import psycopg  # noqa: E402
port = pgcluster.free_port()
cfg = {
    "metrics_listen": f"127.0.0.1:{port}",
    "max_client_conn": 500,
    "servers": {"main": {"max_connections": 12}},
    "databases": {"app": {"pool_mode": "transaction", "pool_size": 12}},
    "bulkheads": [
        {"name": "critical", "priority": 0, "reserved": 4, "max": 12, "queue_depth": 20, "max_wait": "250ms",
         "match": {"application_name": ["checkout"]}},
        {"name": "batch", "priority": 1, "reserved": 1, "max": 6, "queue_depth": 40, "max_wait": "300ms",
         "match": {"application_name": ["batch*"]}},
    ],
}
with pgcluster.PgCluster() as pg:
    binary = os.environ.get("SLUICE_BIN")
    s = pgcluster.SluiceProcess(pg, cfg, binary=Path(binary) if binary else None)
    s.start()
    stop = threading.Event()
    def crit():
        with s.connect(application_name="checkout") as c:
            while not stop.is_set():
                try: c.execute("SELECT 1")
                except psycopg.Error: pass
                time.sleep(0.02)
    def batch(i):
        with s.connect(application_name=f"batch-{i}") as c:
            while not stop.is_set():
                try: c.execute("SELECT pg_sleep(0.05)")
                except psycopg.errors.TooManyConnections:
                    time.sleep(0.1)
                except psycopg.Error: pass
    with s.connect() as c: c.execute("SELECT 1")
    ts = [threading.Thread(target=crit) for _ in range(8)]
    for t in ts: t.start()
    time.sleep(5)
    ts2 = [threading.Thread(target=batch, args=(i,)) for i in range(80)]
    for t in ts2: t.start()
    out = sys.argv[1]
    r = subprocess.run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,760", f"--screenshot={out}",
                        f"http://127.0.0.1:{port}/"], capture_output=True, timeout=120)
    print(r.returncode, r.stderr[-300:])
    stop.set()
    for t in ts + ts2: t.join(20)
    s.cleanup()
