"""The foreground part of tests/demo.sh: a throwaway PostgreSQL 15 with role app_user and
database app, and Sluice in front of it, until Ctrl-C or SIGTERM.

Sluice gets sluice.example.toml with the addresses changed to point at the throwaway server, and
an auth file holding only app_user's SCRAM verifier copied from pg_authid: no plain password is
stored anywhere, Sluice logs in to PostgreSQL with the keys from the client's own SCRAM exchange.
Run with /usr/bin/python3 (Debian's psycopg).
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import time
import tomllib
from pathlib import Path

import pgcluster

DEMO_USER, DEMO_PASSWORD, DEMO_DB = "app_user", "app-secret", "app"


def first_free_port(start: int = 6432, tries: int = 100) -> int:
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise pgcluster.HarnessError(f"no free port in {start}..{start + tries - 1}")


def demo_config(pg: pgcluster.PgCluster, port: int) -> dict:
    """The example config with listen, auth_file and every server pointed at the demo."""
    example = pgcluster.REPO_ROOT / "sluice.example.toml"
    if example.exists():
        config = tomllib.loads(example.read_text())
    else:  # keep the demo working while the example is being rewritten
        config = pgcluster.default_config(pg, port)
        config["databases"].pop("postgres", None)
    config["listen"] = [f"127.0.0.1:{port}"]
    config["auth_file"] = "userlist.txt"  # SluiceProcess writes it next to the config
    servers = config.setdefault("servers", {"main": {}})
    for server in servers.values():
        server["host"] = "127.0.0.1"
        server["port"] = pg.port
    databases = config.setdefault("databases", {})
    databases.setdefault(DEMO_DB, {"server": next(iter(servers)), "dbname": DEMO_DB})
    return config


def on_terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM and SIGHUP clean up exactly like Ctrl-C


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sluice", type=Path, default=pgcluster.sluice_binary(),
                        help="the sluice binary (default: $SLUICE_BIN or build/sluice)")
    args = parser.parse_args()
    # Explicitly: a shell starting us in the background leaves SIGINT ignored otherwise.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_terminate)
    signal.signal(signal.SIGHUP, on_terminate)

    pg = pgcluster.PgCluster(with_default_roles=False)
    sluice = None
    try:
        print("Starting a throwaway PostgreSQL 15 ...", flush=True)
        pg.start()
        pg.create_role(DEMO_USER, DEMO_PASSWORD, "scram-sha-256")
        pg.create_database(DEMO_DB, owner=DEMO_USER)
        verifier = pg.rolpassword(DEMO_USER)

        port = first_free_port()
        sluice = pgcluster.SluiceProcess(
            pg, config=demo_config(pg, port), users={DEMO_USER: verifier}, port=port,
            binary=args.sluice, defaults=False, log_to_file=False)  # logs go to this terminal
        print(f"PostgreSQL {pg.port} in {pg.base}; starting Sluice on 127.0.0.1:{port} "
              f"with {sluice.config_path} ...", flush=True)
        sluice.start()
        print("\nSluice is ready. Connect with:\n\n"
              f'  psql "host=127.0.0.1 port={port} user={DEMO_USER} dbname={DEMO_DB} '
              f'password={DEMO_PASSWORD}"\n\n'
              "Press Ctrl-C to stop Sluice and PostgreSQL and remove their files.\n", flush=True)
        while sluice.running():
            time.sleep(0.5)
        print(f"Sluice exited on its own with code {sluice.proc.returncode}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...", flush=True)
        return 0
    except pgcluster.HarnessError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        # Ignore further Ctrl-C while cleaning up, so nothing is left behind half-stopped.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if sluice is not None:
            sluice.cleanup()  # SIGINT: immediate; the demo's clients need no drain
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
