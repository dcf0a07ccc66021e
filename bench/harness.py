"""Processes for the benchmark: a throwaway PostgreSQL 15 cluster, PgBouncer, Sluice, the clients
we start, and the bookkeeping that lets everything be cleaned up on exit.

Everything listens on 127.0.0.1 only. When run as root, PostgreSQL and PgBouncer (which both
refuse to run as root) run as an unprivileged system user created on first use. Every child
process and temporary directory is recorded in out/state.json while it exists, so that
`runner.py --cleanup` (run by run.sh's trap) can remove what a killed harness left behind.

Standard library plus psycopg 3 (Debian's python3-psycopg).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
STATE_FILE = OUT_DIR / "state.json"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
OS_USER = "sluicebench"
DB_NAME = "bench"
DB_USER = "bench"
DB_PASSWORD = "sluice-bench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class HarnessError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- state for cleanup -----------------------------------------------------------------------


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _load_state() -> dict:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {"pids": [], "dirs": [], "clusters": []}


def _save_state(state: dict) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(STATE_FILE)


def state_add(kind: str, item) -> None:
    state = _load_state()
    state.setdefault(kind, []).append(item)
    _save_state(state)


def state_remove(kind: str, match) -> None:
    state = _load_state()
    state[kind] = [x for x in state.get(kind, []) if not match(x)]
    _save_state(state)


def register_pid(pid: int, group: bool) -> None:
    state_add("pids", {"pid": pid, "start": _proc_start_time(pid), "group": group})


def unregister_pid(pid: int) -> None:
    state_remove("pids", lambda x: x["pid"] == pid)


def cleanup_from_state() -> None:
    """Stops whatever a previous harness process recorded and did not remove (idempotent)."""
    state = _load_state()
    for item in state.get("pids", []):
        pid = item["pid"]
        if item.get("start") is None or _proc_start_time(pid) != item["start"]:
            continue  # gone, or the pid was reused by something else
        try:
            if item.get("group"):
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for data_dir in state.get("clusters", []):
        stop_postgres(Path(data_dir))
    for d in state.get("dirs", []):
        shutil.rmtree(d, ignore_errors=True)
    try:
        STATE_FILE.unlink()
    except OSError:
        pass


# ---- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, timeout: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(port):
            return True
        if not alive():
            return False
        time.sleep(0.05)
    return False


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_os_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(OS_USER)
    except KeyError:
        pass
    r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", OS_USER],
                       capture_output=True, text=True, timeout=30)
    if r.returncode not in (0, 9):
        raise HarnessError(f"useradd {OS_USER} failed: {r.stderr.strip()}")
    return pwd.getpwnam(OS_USER)


def unprivileged() -> dict:
    """Popen keyword arguments that run a child as the unprivileged user when we are root.
    (setuid in the child, without PAM, so the raised file-descriptor limit is inherited.)"""
    if not is_root():
        return {}
    entry = ensure_os_user()
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def chown_to_user(path: Path) -> None:
    if is_root():
        entry = ensure_os_user()
        os.chown(path, entry.pw_uid, entry.pw_gid)


def make_temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    state_add("dirs", str(path))
    path.chmod(0o755)
    return path


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


# ---- /proc accounting ------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces): state is index 0 here, so
    # field N of proc(5) (1-based) is index N-3.
    return stat.rsplit(")", 1)[1].split()


def proc_cpu(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    f = _stat_fields(pid)
    if f is None:
        return None
    return (int(f[11]) + int(f[12])) / CLK_TCK


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        f = _stat_fields(int(entry.name))
        if f is not None and int(f[1]) == pid:
            kids.append(int(entry.name))
    return kids


def tree_cpu(pid: int) -> float | None:
    """CPU seconds of a process and all its children, living (utime+stime) and reaped
    (cutime+cstime): for the postmaster, all the database's work so far."""
    f = _stat_fields(pid)
    if f is None:
        return None
    total = (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
    for kid in children_of(pid):
        c = proc_cpu(kid)
        total += c or 0.0
    return total


def vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_kb(pid: int) -> int:
    return pss_kb(pid) + sum(pss_kb(k) for k in children_of(pid))


def fd_limit(pid: int) -> str | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return line.split()[3]
    except OSError:
        return None
    return None


# ---- child processes -------------------------------------------------------------------------


class Child:
    """A child in its own session (so a Ctrl-C on the terminal reaches only the harness, which
    then stops children in order), recorded in the state file while it runs."""

    def __init__(self, argv: list[str], *, log_path: Path | None = None, stdin=subprocess.DEVNULL,
                 stdout=None, stderr=None, env: dict | None = None, cwd: Path | None = None,
                 as_user: bool = False, text: bool = False) -> None:
        self.argv = argv
        self._log = open(log_path, "wb") if log_path else None
        out = stdout if stdout is not None else (self._log or subprocess.DEVNULL)
        err = stderr if stderr is not None else (self._log or subprocess.DEVNULL)
        kwargs = unprivileged() if as_user else {}
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, env=env,
                                     cwd=cwd, start_new_session=True, text=text, **kwargs)
        self.pid = self.proc.pid
        register_pid(self.pid, group=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, sig)
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except OSError:
                    pass
                self.proc.wait(timeout=10)
        unregister_pid(self.pid)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode


def run_bounded(argv: list[str], timeout: float, env: dict | None = None,
                cwd: Path | None = None) -> tuple[int, str, str]:
    """Runs a command to completion in its own session, killed (with its group) after `timeout`
    seconds. Returns (exit code, stdout, stderr); exit code -9 when it was killed."""
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    child = Child(argv, stdout=out_f, stderr=err_f, env=env, cwd=cwd)
    try:
        code = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.stop(signal.SIGKILL)
        code = -9
    finally:
        child.stop()
    out_f.seek(0)
    err_f.seek(0)
    return code, out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")


def stop_postgres(data_dir: Path) -> None:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w",
                        "-t", "20", "stop"], capture_output=True, timeout=30, cwd="/",
                       **unprivileged())
    except (subprocess.TimeoutExpired, OSError):
        pass
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


# ---- PostgreSQL ------------------------------------------------------------------------------


class PgCluster:
    """PostgreSQL 15 as in the baseline: fsync off, max_connections 400, shared_buffers 256MB,
    SCRAM-SHA-256 for TCP clients, `pgbench -i -s SCALE` in database `bench` owned by role
    `bench`, on 127.0.0.1 at a free port. The superuser `postgres` connects over the Unix socket
    (trust) for setup and monitoring; that uses one of the 3 superuser-reserved connections."""

    def __init__(self, base: Path, scale: int = 10) -> None:
        self.base = base
        self.scale = scale
        self.port = 0
        self.data_dir = base / "pgdata"
        self.sock_dir = base / "pgsock"
        self.log_file = base / "postgres.log"

    def _run(self, argv: list[str], timeout: float = 300, env: dict | None = None):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.base,
                           env=env or clean_env(LC_ALL="C"), **unprivileged())
        return r

    def start(self) -> None:
        chown_to_user(self.base)
        self.sock_dir.mkdir(mode=0o700)
        chown_to_user(self.sock_dir)
        r = self._run([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                       "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale",
                       "--encoding=UTF8", "--no-sync"])
        if r.returncode != 0:
            raise HarnessError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        (self.data_dir / "pg_hba.conf").write_text(
            "# generated by bench/harness.py\n"
            "local all postgres trust\n"
            "host  all all 127.0.0.1/32 scram-sha-256\n")
        state_add("clusters", str(self.data_dir))
        last = ""
        for _ in range(5):
            self.port = free_port()
            settings = {
                "port": self.port, "listen_addresses": "127.0.0.1",
                "unix_socket_directories": str(self.sock_dir),
                "fsync": "off", "max_connections": 400, "shared_buffers": "256MB",
                "password_encryption": "scram-sha-256", "logging_collector": "off",
                "log_min_messages": "warning", "log_connections": "off",
            }
            (self.data_dir / "postgresql.auto.conf").write_text(
                "".join(f"{k} = '{v}'\n" for k, v in settings.items()))
            r = self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l",
                           str(self.log_file), "-w", "-t", "60", "start"], timeout=90)
            if r.returncode == 0:
                break
            last = f"{r.stdout}\n{r.stderr}\n{tail(self.log_file)}"
            if "in use" not in last:
                raise HarnessError(f"PostgreSQL did not start:\n{last}")
        else:
            raise HarnessError(f"PostgreSQL did not start:\n{last}")
        self.execute(f"CREATE ROLE {DB_USER} LOGIN PASSWORD '{DB_PASSWORD}'")
        self.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")

    def init_pgbench(self) -> None:
        r = subprocess.run(["pgbench", "-i", "-q", "-s", str(self.scale), "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", DB_USER, DB_NAME],
                           capture_output=True, text=True, timeout=600,
                           env=clean_env(PGPASSWORD=DB_PASSWORD))
        if r.returncode != 0:
            raise HarnessError(f"pgbench -i failed:\n{r.stdout}\n{r.stderr}")
        with psycopg.connect(host="127.0.0.1", port=self.port, user=DB_USER,
                             password=DB_PASSWORD, dbname=DB_NAME, autocommit=True) as c:
            c.execute("CREATE TABLE bench_control (delay double precision NOT NULL)")
            c.execute("INSERT INTO bench_control VALUES (0.001)")
            c.execute("CREATE SEQUENCE bench_work")
            c.execute("VACUUM ANALYZE")

    def connect_admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host=str(self.sock_dir), port=self.port, user="postgres",
                               dbname=dbname, autocommit=True, connect_timeout=10)

    def execute(self, sql: str, params=None, dbname: str = "postgres") -> list[tuple]:
        with self.connect_admin(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def verifier(self) -> str:
        if getattr(self, "_verifier", None) is None:
            rows = self.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                (DB_USER,))
            if not rows or not rows[0][0] or not rows[0][0].startswith("SCRAM-SHA-256$"):
                raise HarnessError("role bench has no SCRAM verifier")
            self._verifier = rows[0][0]
        return self._verifier

    def settle(self, max_backends: int = 60, timeout: float = 15.0) -> int | None:
        """Waits until the previous run's direct connections have gone (at most `max_backends`
        client backends left, e.g. the poolers' idle pools); returns the count, or None if the
        database stayed busy (or full) until the timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                n = self.execute("SELECT count(*) FROM pg_stat_activity"
                                 " WHERE backend_type = 'client backend'"
                                 " AND pid <> pg_backend_pid()")[0][0]
                if n <= max_backends:
                    return n
            except psycopg.OperationalError:
                pass  # full: wait for backends to exit
            time.sleep(0.2)
        return None

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def version(self) -> str:
        return self.execute("SHOW server_version")[0][0]

    def stop(self) -> None:
        stop_postgres(self.data_dir)
        state_remove("clusters", lambda x: x == str(self.data_dir))


# ---- poolers ---------------------------------------------------------------------------------


def auth_file_line(user: str, secret: str) -> str:
    return f'"{user}" "{secret}"\n'


class Pooler:
    name = "pooler"

    def __init__(self, base: Path, pg: PgCluster, tag: str = "") -> None:
        self.base = base
        self.pg = pg
        self.port = free_port()
        self.tag = tag
        self.workdir = base / (self.name + (f"-{tag}" if tag else ""))
        self.workdir.mkdir(exist_ok=True)
        self.log_file = self.workdir / f"{self.name}.log"
        self.child: Child | None = None
        self.restarts = 0

    @property
    def pid(self) -> int:
        return self.child.pid

    def argv(self) -> list[str]:
        raise NotImplementedError

    def as_user(self) -> bool:
        return False

    def start(self) -> None:
        argv = self.argv()
        self.child = Child(argv, log_path=self.log_file, cwd=self.workdir, as_user=self.as_user())
        if not wait_for_port(self.port, 20, alive=self.child.running):
            code = self.child.proc.poll()
            self.child.stop()
            raise HarnessError(f"{self.name} did not start (exit {code}); argv {argv}\n"
                               f"{tail(self.log_file)}")

    def ensure_running(self) -> bool:
        """Restarts the pooler if it died (recorded); True if it was running."""
        if self.child and self.child.running():
            return True
        log(f"{self.name} is not running (exit {self.child.proc.poll() if self.child else None});"
            f" restarting. Log tail:\n{tail(self.log_file, 1500)}")
        self.restarts += 1
        self.port = free_port()
        self.write_config()
        self.start()
        return False

    def restart_fresh(self) -> None:
        """Stops the pooler and starts a new process (on a new port): memory it then grows is
        all new, whereas a process that has served load reuses its freed heap without growing
        its RSS."""
        self.stop()
        self.port = free_port()
        self.write_config()
        self.start()

    def write_config(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.child:
            self.child.stop(signal.SIGTERM, timeout=10)


class PgBouncer(Pooler):
    """PgBouncer 1.18 (Debian's): transaction mode, default_pool_size 20, max_client_conn 12000,
    SCRAM with the verifier from pg_authid in its auth_file (so it passes SCRAM through)."""

    name = "pgbouncer"

    def __init__(self, base: Path, pg: PgCluster, pool_mode: str = "transaction",
                 pool_size: int = 20, max_client_conn: int = 12000, tag: str = "") -> None:
        super().__init__(base, pg, tag)
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        chown_to_user(self.workdir)
        self.write_config()

    def write_config(self) -> None:
        auth = self.workdir / "userlist.txt"
        auth.write_text(auth_file_line(DB_USER, self.pg.verifier()))
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{DB_NAME} = host=127.0.0.1 port={self.pg.port} dbname={DB_NAME}\n\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {auth}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n")
        for p in (auth, ini):
            chown_to_user(p)

    def argv(self) -> list[str]:
        return ["pgbouncer", str(self.workdir / "pgbouncer.ini")]

    def as_user(self) -> bool:
        return True

    @staticmethod
    def version() -> str:
        r = subprocess.run(["pgbouncer", "--version"], capture_output=True, text=True, timeout=10)
        return r.stdout.splitlines()[0] if r.stdout else "unknown"


class Sluice(Pooler):
    """Sluice with the settings equivalent to PgBouncer's: pool_size 20, max_client_conn 12000,
    SCRAM passthrough from the same verifier. `extra` is TOML appended to the generated config
    (e.g. a bulkhead definition from bench/configs/)."""

    name = "sluice"

    def __init__(self, base: Path, pg: PgCluster, binary: Path, pool_mode: str = "transaction",
                 pool_size: int = 20, max_client_conn: int = 12000, threads: int | None = None,
                 server_max_connections: int = 200, extra: str = "", tag: str = "") -> None:
        super().__init__(base, pg, tag)
        self.binary = binary
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.threads = threads
        self.server_max_connections = server_max_connections
        self.extra = extra
        self.write_config()

    @property
    def config_path(self) -> Path:
        return self.workdir / "sluice.toml"

    def config_text(self) -> str:
        threads = f"threads = {self.threads}\n" if self.threads is not None else ""
        return (
            "# generated by bench/harness.py\n"
            f'listen = ["127.0.0.1:{self.port}"]\n'
            'auth_type = "scram-sha-256"\n'
            'auth_file = "userlist.txt"\n'
            f"max_client_conn = {self.max_client_conn}\n"
            'log_level = "warn"\n'
            f"{threads}"
            "\n[servers.main]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.pg.port}\n"
            f"max_connections = {self.server_max_connections}\n"
            f"\n[databases.{DB_NAME}]\n"
            'server = "main"\n'
            f'dbname = "{DB_NAME}"\n'
            f'pool_mode = "{self.pool_mode}"\n'
            f"pool_size = {self.pool_size}\n"
            + (("\n" + self.extra.strip() + "\n") if self.extra.strip() else ""))

    def write_config(self) -> None:
        (self.workdir / "userlist.txt").write_text(auth_file_line(DB_USER, self.pg.verifier()))
        self.config_path.write_text(self.config_text())

    def check_config(self) -> tuple[bool, str]:
        """`sluice --check-config` on the generated config: (accepted, its output)."""
        self.write_config()
        r = subprocess.run([str(self.binary), "--check-config", str(self.config_path)],
                           capture_output=True, text=True, timeout=30)
        return r.returncode == 0, (r.stdout + r.stderr).strip()

    def argv(self) -> list[str]:
        return [str(self.binary), "--config", str(self.config_path)]

    def version(self) -> str:
        r = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.strip() or "unknown"


def pgbench_version() -> str:
    r = subprocess.run(["pgbench", "--version"], capture_output=True, text=True, timeout=10)
    return r.stdout.strip()


def machine_info() -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    os_name = ""
    try:
        m = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text())
        os_name = m.group(1) if m else ""
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "memory": mem, "os": os_name,
            "kernel": os.uname().release}


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "-C", str(REPO_DIR), "status", "--porcelain",
                                "--untracked-files=no", "--", "src", "protocol", "pools", "config",
                                "CMakeLists.txt"], capture_output=True, text=True, timeout=10)
        suffix = " + uncommitted changes in the sources" if dirty.stdout.strip() else ""
        return rev.stdout.strip() + suffix
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
