"""Throwaway PostgreSQL 15 clusters and pooler processes for the integration tests and the demo.

PgCluster runs initdb into a temporary directory and starts PostgreSQL on a free 127.0.0.1 port.
When we are root it runs the server as an unprivileged system user (PostgreSQL refuses to run as
root), created on first use. SluiceProcess writes a config and an auth file, starts the sluice
binary and waits for its port; PgBouncerProcess does the same with PgBouncer from the same config
dict, so the tests' own logic can be checked against a known-good pooler (SLUICE_TEST_TARGET).

Standard library plus psycopg 3 (Debian's python3-psycopg); run with /usr/bin/python3.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import psycopg
import psycopg.conninfo
import psycopg.sql

PG_BIN = Path("/usr/lib/postgresql/15/bin")
TEST_OS_USER = "sluicetest"  # unprivileged account that owns the cluster when we run as root
REPO_ROOT = Path(__file__).resolve().parents[2]


class HarnessError(RuntimeError):
    """The harness itself failed (a server did not start, a process did not stop)."""


# Safety net: whatever was started and not cleaned up (an interrupted test run, a script that
# raised) is stopped and removed when the interpreter exits. Poolers first, then servers.
_live: list = []


@atexit.register
def _cleanup_leftovers() -> None:
    for thing in sorted(_live, key=lambda t: isinstance(t, PgCluster)):
        try:
            thing.destroy() if isinstance(thing, PgCluster) else thing.cleanup()
        except Exception:
            pass


# ---- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (the kernel's choice).

    There is a window between closing this probe socket and the real listener binding the port;
    callers that can detect a lost race (PgCluster.start) retry with a new port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_below(limit: int = 32768, lowest: int = 20000, attempts: int = 200) -> int:
    """A free TCP port on 127.0.0.1 in [lowest, limit): below the kernel's ephemeral range
    (32768 and up by default), so that a test opening hundreds of client connections cannot
    have one of their local ports taken for, or colliding with, the listener. Same race as
    free_port()."""
    rng = random.Random()
    for _ in range(attempts):
        port = rng.randrange(lowest, limit)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise HarnessError(f"no free port in [{lowest}, {limit}) after {attempts} attempts")


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float, alive=lambda: True, host: str = "127.0.0.1") -> bool:
    """Polls until `port` accepts a TCP connection; False on timeout or when alive() turns False."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(port, host):
            return True
        if not alive():
            return False
        time.sleep(0.05)
    return False


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_os_user(name: str = TEST_OS_USER) -> pwd.struct_passwd:
    """Returns the passwd entry of `name`, creating a locked system account if it is missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    result = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, timeout=30)
    # Exit code 9: created concurrently by someone else, which is just as good.
    if result.returncode not in (0, 9):
        raise HarnessError(f"useradd {name} failed: {result.stderr.strip()}")
    return pwd.getpwnam(name)


def _check_traversable(path: Path) -> None:
    """The unprivileged user must be able to reach `path`: every parent needs o+x."""
    for parent in path.parents:
        if not parent.stat().st_mode & 0o001:
            raise HarnessError(
                f"{path} is not reachable by user {TEST_OS_USER} ({parent} lacks o+x); "
                "point TMPDIR at a world-traversable directory such as /tmp")


def make_private_dir(prefix: str) -> Path:
    """A fresh temporary directory, owned by the unprivileged user when we are root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if is_root():
        entry = ensure_os_user()
        _check_traversable(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def as_test_user(argv: list[str]) -> list[str]:
    """Prefixes argv with runuser when root, so the command runs as the unprivileged user."""
    if is_root():
        return ["runuser", "-u", TEST_OS_USER, "--", *argv]
    return argv


def md5_secret(user: str, password: str) -> str:
    """PostgreSQL's stored md5 form: "md5" + md5(password || user)."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without PG* variables, so a developer's PGHOST or PGSSLMODE cannot leak into a
    test's client (psql, pgbench, libpq) and change what it connects to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def tail(path: Path, limit: int = 6000) -> str:
    try:
        data = path.read_text(errors="replace")
    except OSError:
        return ""
    return data[-limit:]


def psql(conninfo: str, sql: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Runs `psql -c sql` (no psqlrc, unaligned, tuples only, stop on error)."""
    return subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo],
                          capture_output=True, text=True, timeout=timeout, env=clean_env(),
                          stdin=subprocess.DEVNULL)


# ---- PostgreSQL ------------------------------------------------------------------------------


class PgCluster:
    """A PostgreSQL 15 cluster in a temporary directory.

    Roles after start(): superuser `postgres` (local socket, trust), `alice` with a SCRAM-stored
    password, `bob` with an md5-stored password, and database `app` owned by alice. Over TCP
    pg_hba says md5, which PostgreSQL upgrades to SCRAM for SCRAM-stored passwords, so one
    server exercises both backend methods.
    """

    ALICE_PASSWORD = "alice-secret"
    BOB_PASSWORD = "bob-secret"

    def __init__(self, with_default_roles: bool = True) -> None:
        self.with_default_roles = with_default_roles
        self.base: Path | None = None
        self.port = 0
        self.host = "127.0.0.1"

    # Paths inside the temporary directory. Short names keep the Unix socket path well under
    # the 107-byte limit of sun_path.
    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "sock"

    @property
    def log_file(self) -> Path:
        return self.base / "postgres.log"

    def __enter__(self) -> "PgCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        # cwd: the unprivileged user may not be allowed into our current directory (e.g. /root).
        return subprocess.run(as_test_user(argv), cwd=self.base, capture_output=True, text=True,
                              timeout=timeout, env=clean_env(LC_ALL="C"),
                              start_new_session=True)

    def start(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise HarnessError(f"{PG_BIN}/initdb not found: install postgresql-15")
        self.base = make_private_dir("sluice-pg-")
        _live.append(self)
        try:
            self._initdb()
            self._start_server()
            if self.with_default_roles:
                self._create_default_roles()
        except BaseException:
            self.destroy()
            raise

    def _initdb(self) -> None:
        self._run(["mkdir", "-m", "700", str(self.socket_dir)])
        result = self._run([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                            "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync"])
        if result.returncode != 0:
            raise HarnessError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        (self.data_dir / "pg_hba.conf").write_text(
            "# Generated by tests/support/pgcluster.py.\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 md5\n")

    def _write_settings(self) -> None:
        # postgresql.auto.conf is read last, so these win over initdb's postgresql.conf.
        settings = {
            "port": self.port,
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": 200,
            "password_encryption": "scram-sha-256",
            "logging_collector": "off",
        }
        lines = [f"{k} = '{v}'" for k, v in settings.items()]
        (self.data_dir / "postgresql.auto.conf").write_text("\n".join(lines) + "\n")

    def _start_server(self) -> None:
        # A free port can be taken between probing and binding; try a few.
        last_error = ""
        for _ in range(5):
            self.port = free_port()
            self._write_settings()
            result = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir),
                                "-l", str(self.log_file), "-w", "-t", "60", "start"], timeout=90)
            if result.returncode == 0:
                return
            last_error = f"{result.stdout}\n{result.stderr}\n{tail(self.log_file)}"
            if "in use" not in last_error:
                break
        raise HarnessError(f"PostgreSQL did not start:\n{last_error}")

    def stop(self) -> None:
        """Fast shutdown (pg_ctl stop -m fast); kills the postmaster if that does not work."""
        if self.base is None or not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            result = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                                "-w", "-t", "30", "stop"], timeout=45)
            if result.returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass

    def destroy(self) -> None:
        """Stops the server and removes the temporary directory."""
        if self.base is None:
            return
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            if self in _live:
                _live.remove(self)

    # ---- connections and SQL -----------------------------------------------------------------

    def superuser(self, dbname: str = "postgres") -> psycopg.Connection:
        """A direct autocommit superuser connection over the Unix socket (trust)."""
        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres",
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def connect(self, user: str, password: str, dbname: str = "app",
                **kwargs: Any) -> psycopg.Connection:
        """A direct TCP connection as a normal role (goes through pg_hba's md5 line)."""
        return psycopg.connect(host=self.host, port=self.port, user=user, password=password,
                               dbname=dbname, connect_timeout=10, **kwargs)

    def execute(self, sql: str, params: Any = None, dbname: str = "postgres") -> list[tuple]:
        """Runs one statement as superuser; returns its rows (empty if it returns none)."""
        with self.superuser(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def create_role(self, name: str, password: str, encryption: str = "scram-sha-256") -> None:
        """A login role whose password is stored as `encryption` (scram-sha-256 or md5)."""
        with self.superuser() as conn:
            conn.execute(f"SET password_encryption = '{encryption}'")
            conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(password)))

    def create_database(self, name: str, owner: str) -> None:
        with self.superuser() as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(owner)))

    def rolpassword(self, role: str) -> str:
        """The stored secret from pg_authid: a SCRAM verifier or md5<hex>."""
        rows = self.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
        if not rows or rows[0][0] is None:
            raise HarnessError(f"role {role} has no password")
        return rows[0][0]

    def backend_pids(self, usename: str | None = None) -> list[int]:
        """Client backends (not our own superuser connection), optionally of one role."""
        rows = self.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid() AND (%s::text IS NULL OR usename = %s) ORDER BY pid",
            (usename, usename))
        return [r[0] for r in rows]

    def wait_for_query(self, pattern: str, timeout: float = 10) -> int:
        """Waits until some backend is actively running a query LIKE `pattern`; returns its pid."""
        deadline = time.monotonic() + timeout
        with self.superuser() as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
                    " AND pid <> pg_backend_pid() LIMIT 1", (pattern,)).fetchone()
                if row:
                    return row[0]
                time.sleep(0.05)
        raise TimeoutError(f"no active query like {pattern!r} within {timeout}s")

    def _create_default_roles(self) -> None:
        self.create_role("alice", self.ALICE_PASSWORD, "scram-sha-256")
        self.create_role("bob", self.BOB_PASSWORD, "md5")
        self.create_database("app", owner="alice")


# ---- TOML and auth file ----------------------------------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes (\" \\ \n \uXXXX ...) are all valid in TOML basic strings.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table, e.g. a bulkhead's match
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items() if v is not None) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(config: Mapping[str, Any]) -> str:
    """Writes a dict as TOML: scalars and arrays at the top, then one [a.b] table per nested
    dict of dicts (e.g. servers.main, databases.app), then one [[key]] entry per element of a
    top-level list of dicts (bulkheads; a dict inside one is an inline table). Keys whose value
    is None are omitted."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays = {k: v for k, v in config.items()
              if isinstance(v, (list, tuple)) and v and all(isinstance(e, Mapping) for e in v)}
    config = {k: v for k, v in config.items() if k not in arrays}

    def walk(prefix: str, table: Mapping[str, Any]) -> None:
        for key, value in table.items():
            if isinstance(value, Mapping):
                tables.append((f"{prefix}{_toml_key(key)}", value))

    for key, value in config.items():
        if value is None or isinstance(value, Mapping):
            continue
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    walk("", config)
    while tables:
        name, table = tables.pop(0)
        scalars = {k: v for k, v in table.items() if v is not None and not isinstance(v, Mapping)}
        if scalars or not any(isinstance(v, Mapping) for v in table.values()):
            lines.append("")
            lines.append(f"[{name}]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
        walk(name + ".", table)
    for key, entries in arrays.items():
        for entry in entries:
            lines.append("")
            lines.append(f"[[{_toml_key(key)}]]")
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()
                         if v is not None)
    return "\n".join(lines) + "\n"


def auth_file_text(users: Mapping[str, str]) -> str:
    """PgBouncer's userlist format: `"user" "secret"` per line, inner double quotes doubled."""
    def quote(s: str) -> str:
        return '"' + s.replace('"', '""') + '"'
    return "".join(f"{quote(u)} {quote(s)}\n" for u, s in users.items())


def merge(base: dict, overrides: Mapping[str, Any]) -> dict:
    """Recursive dict merge; a None override deletes the key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_config(pg: PgCluster, port: int) -> dict:
    """A config for `pg` listening on 127.0.0.1:port; tests override pieces via merge()."""
    return {
        "listen": [f"127.0.0.1:{port}"],
        "auth_type": "scram-sha-256",
        "auth_file": "userlist.txt",
        "admin_users": ["sluice_admin"],
        "max_client_conn": 100,
        "client_login_timeout": "10s",
        "shutdown_timeout": "5s",
        # Short enough that a pool bug shows up as an error, not as a test stuck until ctest's
        # timeout; long enough never to trigger on a slow machine.
        "query_wait_timeout": "30s",
        "servers": {"main": {"host": "127.0.0.1", "port": pg.port, "max_connections": 100}},
        "databases": {
            "app": {"server": "main", "dbname": "app", "pool_mode": "session", "pool_size": 20},
            "postgres": {"server": "main", "dbname": "postgres", "pool_mode": "session",
                         "pool_size": 5},
        },
    }


def default_users() -> dict[str, str]:
    return {"alice": PgCluster.ALICE_PASSWORD, "bob": PgCluster.BOB_PASSWORD}


# ---- pooler processes ------------------------------------------------------------------------


# The first line of an AddressSanitizer, LeakSanitizer or ThreadSanitizer report, or of an
# UndefinedBehaviorSanitizer one ("file:line:col: runtime error: ...").
SANITIZER_REPORT = re.compile(r"(?:ERROR|WARNING): \w*Sanitizer|: runtime error: ")


def sluice_binary() -> Path:
    """$SLUICE_BIN, else build/sluice in the repository (tests/support/../../build/sluice)."""
    env = os.environ.get("SLUICE_BIN")
    return Path(env) if env else REPO_ROOT / "build" / "sluice"


class PoolerProcess:
    """Common part of SluiceProcess and PgBouncerProcess: a config dict, a work directory with
    the config and auth file, a child process whose stderr goes to a log file, and a port."""

    name = "pooler"

    def __init__(self, pg: PgCluster, config: Mapping[str, Any] | None = None,
                 users: Mapping[str, str] | None = None, port: int | None = None,
                 workdir: Path | None = None, log_to_file: bool = True,
                 defaults: bool = True) -> None:
        """config is merged into default_config() unless defaults=False (then it is the whole
        config); users are the auth file's entries (default: alice and bob, plain text)."""
        self.pg = pg
        self.port = port or free_port()
        self.host = "127.0.0.1"
        base = default_config(pg, self.port) if defaults else {}
        self.config = merge(base, config or {})
        self.users = dict(default_users() if users is None else users)
        self.own_workdir = workdir is None
        self.workdir = workdir or make_private_dir(f"{self.name}-")
        _live.append(self)
        self.log_file = self.workdir / f"{self.name}.log"
        self.log_to_file = log_to_file
        self.proc: subprocess.Popen | None = None
        self.signalled = False  # a test sent a signal, so an exit is expected
        self._log_handle = None

    # Subclasses: write config files and return argv.
    def prepare(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 10) -> "PoolerProcess":
        argv = self.prepare()
        if self.log_to_file:
            self._log_handle = open(self.log_file, "wb")
        out = self._log_handle if self.log_to_file else None
        # A new session: a Ctrl-C in the demo's terminal must reach only the demo, which then
        # stops the pooler and PostgreSQL in order.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                     cwd=self.workdir, start_new_session=True)
        if not wait_for_port(self.port, timeout, alive=lambda: self.proc.poll() is None):
            code = self.proc.poll()
            self.kill()
            state = f"exited with {code}" if code is not None else f"not ready in {timeout}s"
            raise HarnessError(f"{self.name} {state}; argv {argv}\n--- log ---\n{self.log()}")
        return self

    def log(self) -> str:
        return tail(self.log_file) if self.log_to_file else ""

    def sanitizer_report(self, limit: int = 8000) -> str:
        """The log from its first sanitizer report on (a -DSLUICE_SANITIZE build writes them to
        stderr), else "". A ThreadSanitizer race or a leak found at exit does not stop the
        process, so only the log shows it."""
        if not self.log_to_file:
            return ""
        try:
            data = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        found = SANITIZER_REPORT.search(data)
        return data[found.start():found.start() + limit] if found else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        self.signalled = True
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Exit code; raises subprocess.TimeoutExpired if still running after `timeout`."""
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> int | None:
        """Sends `sig`, waits up to `timeout`, then SIGKILLs; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        """Stops the process (SIGINT, then SIGKILL) and removes the work directory."""
        try:
            self.stop()
        finally:
            if self._log_handle:
                self._log_handle.close()
                self._log_handle = None
            if self.own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            if self in _live:
                _live.remove(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    # ---- client helpers ----------------------------------------------------------------------

    def conninfo(self, user: str = "alice", password: str | None = None, dbname: str = "app",
                 **extra: Any) -> str:
        if password is None:
            password = default_users().get(user, "")
        params = {"host": self.host, "port": self.port, "user": user, "dbname": dbname,
                  "password": password, "connect_timeout": 10, **extra}
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})

    def connect(self, user: str = "alice", password: str | None = None, dbname: str = "app",
                autocommit: bool = True, **extra: Any) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(user, password, dbname, **extra),
                               autocommit=autocommit)


class SluiceProcess(PoolerProcess):
    """sluice --config FILE with a generated TOML config and auth file."""

    name = "sluice"

    def __init__(self, pg: PgCluster, *args: Any, binary: Path | None = None,
                 **kwargs: Any) -> None:
        super().__init__(pg, *args, **kwargs)
        self.binary = Path(binary) if binary else sluice_binary()

    @property
    def config_path(self) -> Path:
        return self.workdir / "sluice.toml"

    def sanitizer(self) -> str | None:
        """"asan" or "tsan" when the running binary is a -DSLUICE_SANITIZE build (GCC maps the
        sanitizer's runtime library), else None. Their allocators and shadow memory inflate RSS,
        so memory bounds hold only without them."""
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        return next((name for name in ("asan", "tsan") if f"/lib{name}.so" in maps), None)

    def prepare(self) -> list[str]:
        if not self.binary.exists():
            raise HarnessError(f"sluice binary not found at {self.binary} (set SLUICE_BIN)")
        auth_path = self.workdir / "userlist.txt"
        auth_path.write_text(auth_file_text(self.users))
        config = dict(self.config)
        if config.get("auth_file") == "userlist.txt":
            config["auth_file"] = str(auth_path)
        self.config_path.write_text(to_toml(config))
        return [str(self.binary), "--config", str(self.config_path)]


def _seconds(duration: str) -> str:
    """Sluice duration string -> PgBouncer seconds ("250ms" -> "0.25")."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    if not m:
        raise ValueError(f"bad duration {duration!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    return f"{int(m.group(1)) * scale:g}"


class PgBouncerProcess(PoolerProcess):
    """PgBouncer (Debian's 1.18) configured from the same dict, to validate the tests' logic.

    Only the keys the tests use are translated. PgBouncer refuses to run as root, so as root it
    runs as the unprivileged test user, and its work directory belongs to that user.
    """

    name = "pgbouncer"

    def prepare(self) -> list[str]:
        c = self.config
        auth_path = self.workdir / "userlist.txt"
        auth_path.write_text(auth_file_text(self.users))
        server_lines = []
        for name, db in c["databases"].items():
            server = c["servers"][db.get("server", "main")]
            server_lines.append(
                f"{name} = host={server['host']} port={server['port']} "
                f"dbname={db.get('dbname', name)} pool_size={db.get('pool_size', 20)} "
                f"max_db_connections={server.get('max_connections', 100)}")
        first_db = next(iter(c["databases"].values()))
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": c["auth_type"],
            "auth_file": str(auth_path),
            "admin_users": ",".join(c.get("admin_users", [])),
            "pool_mode": first_db.get("pool_mode", "session"),
            "max_client_conn": c["max_client_conn"],
            "client_login_timeout": _seconds(c["client_login_timeout"]),
            "query_wait_timeout": _seconds(c["query_wait_timeout"]),
            "server_reset_query": first_db.get("server_reset_query", "DISCARD ALL"),
            "server_lifetime": _seconds(first_db.get("server_lifetime", "1h")),
            "server_idle_timeout": _seconds(first_db.get("server_idle_timeout", "10m")),
            "ignore_startup_parameters": "extra_float_digits",
        }
        ini = ["[databases]", *server_lines, "", "[pgbouncer]"]
        ini += [f"{k} = {v}" for k, v in settings.items()]
        (self.workdir / "pgbouncer.ini").write_text("\n".join(ini) + "\n")
        if is_root():
            entry = ensure_os_user()
            for path in self.workdir.iterdir():
                os.chown(path, entry.pw_uid, entry.pw_gid)
        return as_test_user(["pgbouncer", str(self.workdir / "pgbouncer.ini")])

    def send_signal(self, sig: int) -> None:
        # Under runuser the pooler is runuser's child; signal the whole new session instead.
        self.signalled = True
        if self.running():
            os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT is PgBouncer 1.18's "safe" shutdown, which waits for clients; tests want an
            # immediate stop here, which is SIGTERM there.
            self.send_signal(signal.SIGTERM if sig == signal.SIGINT else sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode if self.proc else None


class DirectTarget:
    """Stands in for a pooler when SLUICE_TEST_TARGET=direct: clients talk to PostgreSQL itself.
    Only host/port/connect helpers are meaningful; config and auth file are ignored."""

    name = "direct"
    signalled = False

    def __init__(self, pg: PgCluster, config: Mapping[str, Any] | None = None,
                 users: Mapping[str, str] | None = None, **_: Any) -> None:
        self.pg = pg
        self.host = "127.0.0.1"
        self.port = pg.port
        self.config = merge(default_config(pg, pg.port), config or {})
        self.users = dict(default_users() if users is None else users)

    def start(self, timeout: float = 10) -> "DirectTarget":
        return self

    def log(self) -> str:
        return ""

    def running(self) -> bool:
        return True

    def cleanup(self) -> None:
        pass

    conninfo = PoolerProcess.conninfo
    connect = PoolerProcess.connect
