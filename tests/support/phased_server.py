"""A fake PostgreSQL server that goes through phases, for the circuit-breaker tests.

Every connection is handled by the phase in force when it was accepted:
  garbage  reads the startup packet and answers with bytes that are no PostgreSQL message, then
           closes (a login fails at once with a protocol error);
  hang     reads the startup packet and never answers; the connection stays open until the
           client gives up or the server stops (a login hangs until connect_timeout);
  healthy  relays bytes both ways to a real PostgreSQL (`upstream`), so logins and queries work;
  slow     as healthy, but waits `slow_delay` seconds after the startup packet before it connects
           upstream (a login that takes that much longer than usual).

Each accepted connection is recorded with its phase and time.monotonic(), so that a test can see
when the pooler tried to connect. Standard library only; threads, every one a daemon and every
wait bounded. Listens on 127.0.0.1, on a port below 32768 (outside Linux's ephemeral range).

Usable alone, for a look by hand:
  python3 tests/support/phased_server.py UPSTREAM_PORT   (then type a phase name per line)
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
import time

PHASES = ("garbage", "hang", "healthy", "slow")
# A type byte no backend sends, then a length far beyond any message limit: framing fails on the
# first five bytes, whatever the reader's limit.
GARBAGE = b"\xa7\xff\xff\xff\xf0" + bytes(range(64))
MAX_CONNECTIONS = 2000  # accepted over the server's life; beyond it connections are closed


def _bind_low_port(attempts: int = 50) -> socket.socket:
    rng = random.Random()
    for _ in range(attempts):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", rng.randrange(20000, 32000)))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return sock
    raise RuntimeError("no free port below 32768")


def _read_startup(conn: socket.socket, timeout: float) -> bytes | None:
    """The startup packet (after an SSLRequest, which is declined); None if the peer left."""
    conn.settimeout(timeout)
    try:
        for _ in range(2):
            head = _recv_exact(conn, 4)
            if head is None:
                return None
            (length,) = struct.unpack("!I", head)
            if length < 8 or length > 10000:
                return None
            body = _recv_exact(conn, length - 4)
            if body is None:
                return None
            if struct.unpack("!I", body[:4])[0] == 80877103:  # SSLRequest
                conn.sendall(b"N")
                continue
            return head + body
    except OSError:
        return None
    return None


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


class PhasedServer:
    """The fake server; `phase` may be changed at any time (it applies to later connections)."""

    def __init__(self, upstream_port: int, phase: str = "healthy",
                 upstream_host: str = "127.0.0.1", slow_delay: float = 3.0) -> None:
        assert phase in PHASES
        assert 0 <= slow_delay <= 60
        self.upstream = (upstream_host, upstream_port)
        self.slow_delay = slow_delay
        self._phase = phase
        self._lock = threading.Lock()
        self._accepted: list[tuple[float, str]] = []
        self._open: list[socket.socket] = []
        self._stopped = threading.Event()
        self._listener = _bind_low_port()
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def phase(self) -> str:
        with self._lock:
            return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        assert value in PHASES
        with self._lock:
            self._phase = value

    def accepted(self, phase: str | None = None, since: float = 0.0) -> list[float]:
        """Times (time.monotonic()) of the connections accepted in `phase` (any) at or after
        `since`."""
        with self._lock:
            return [t for t, p in self._accepted if (phase is None or p == phase) and t >= since]

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            conns, self._open = self._open, []
        for c in conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> "PhasedServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- connections ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                phase = self._phase
                full = len(self._accepted) >= MAX_CONNECTIONS
                if not full:
                    self._accepted.append((time.monotonic(), phase))
                    self._open.append(conn)
            if full:
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, phase), daemon=True).start()

    def _forget(self, *conns: socket.socket) -> None:
        with self._lock:
            for c in conns:
                if c in self._open:
                    self._open.remove(c)
                try:
                    c.close()
                except OSError:
                    pass

    def _serve(self, conn: socket.socket, phase: str) -> None:
        try:
            startup = _read_startup(conn, timeout=10)
            if startup is None:
                return
            if phase == "garbage":
                conn.sendall(GARBAGE)
            elif phase == "hang":
                self._hang(conn)  # until the client gives up or we stop
            else:
                if phase == "slow" and self._stopped.wait(self.slow_delay):
                    return  # stopped meanwhile
                self._relay(conn, startup)
        except OSError:
            pass
        finally:
            self._forget(conn)

    def _hang(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        deadline = time.monotonic() + 300
        while not self._stopped.is_set() and time.monotonic() < deadline:
            try:
                if not conn.recv(4096):
                    return
            except socket.timeout:
                continue

    def _relay(self, conn: socket.socket, startup: bytes) -> None:
        up = socket.create_connection(self.upstream, timeout=10)
        with self._lock:
            self._open.append(up)
        try:
            up.sendall(startup)
            conn.settimeout(None)
            up.settimeout(None)
            other = threading.Thread(target=_pump, args=(up, conn), daemon=True)
            other.start()
            _pump(conn, up)
            other.join(timeout=10)
        finally:
            self._forget(up)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


if __name__ == "__main__":
    server = PhasedServer(int(sys.argv[1]), phase="healthy")
    print(f"listening on 127.0.0.1:{server.port}; type one of {', '.join(PHASES)}", flush=True)
    for line in sys.stdin:
        if line.strip() in PHASES:
            server.phase = line.strip()
            print(f"phase {server.phase}", flush=True)
    server.stop()
