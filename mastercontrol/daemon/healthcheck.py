"""Non-blocking service health probes (tcp, http, command) and the per-workload failure count.

The master is one thread in a select() loop, so a probe never blocks: it is a small state
machine that the loop drives. The protocol, for one probe:

    probe = make_probe(health_check)
    result = probe.start(now)              # may finish at once (refused, command not found)
    while result is None:
        fd = probe.fileno()                # re-read every iteration: it may change or go away
        # select on fd: in the write list if probe.wants_write() else in the read list;
        # wake no later than probe.deadline, and no later than now + probe.poll_interval
        # when poll_interval is not None (a probe with no fd to watch).
        if fd is ready:                    result = probe.on_ready(now)
        elif probe.poll_interval is due:   result = probe.poll(now)
        if result is None and now >= probe.deadline:
                                           result = probe.on_timeout(now)
    probe.close()                          # idempotent; also call it to abandon a probe
    if tracker.record(result, now): restart the workload with reason "unhealthy"

`on_ready` and `poll` may be called spuriously (they return None when nothing is done yet).
A finished probe has already released its socket/fd; `close()` is still safe to call.

Command probes run as short-lived children via subprocess.Popen, which reaps only its own pid
(waitpid(pid), never -1), so it does not steal the master's multiprocessing children. A killed
command whose exit was not yet seen is kept in a module-level list: the master calls
`reap_orphans()` when SIGCHLD wakes it (and every new command probe does so too). Popen
returns once the command has exec'd (it waits on its error pipe for that): a fork+exec, which
is the one short wait a command probe costs the loop.

Probe sockets and pidfds are close-on-exec but a fork inherits them: the child bootstrap's
closing of the master's fds covers them.

Imports only the standard library, mastercontrol.config.model, mastercontrol.engine.health and
mastercontrol.child.group (the one killpg); no psutil, store or api.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import signal
import socket
import subprocess
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from mastercontrol.child.group import killpg
from mastercontrol.config.model import HealthCheck
from mastercontrol.engine.health import ProbeResult

# How often the loop polls a command probe when the kernel has no pidfd (Linux < 5.3).
COMMAND_POLL_INTERVAL = 0.1
_MAX_STATUS_LINE = 8192  # bytes of response read before giving up on finding a status line
_orphans: list[subprocess.Popen[bytes]] = []
_started: weakref.WeakSet[subprocess.Popen[bytes]] = weakref.WeakSet()  # every command started


class Probe(ABC):
    """One health check attempt. See the module docstring for how the loop drives it."""

    deadline: float = float("inf")  # monotonic time at which the loop calls on_timeout()
    poll_interval: float | None = None  # not None: the loop must call poll() this often

    def __init__(self, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("probe timeout must be positive")
        self.timeout = timeout
        self._started = 0.0
        self.result: ProbeResult | None = None

    def start(self, now: float) -> ProbeResult | None:
        """Begin the probe; a result when the outcome is already known, else None."""
        self._started = now
        self.deadline = now + self.timeout
        return self._begin(now)

    @abstractmethod
    def _begin(self, now: float) -> ProbeResult | None: ...

    @abstractmethod
    def fileno(self) -> int | None:
        """The fd to select on, or None (nothing to watch, or finished)."""

    def wants_write(self) -> bool:
        """True: put fileno() in select's write list; False: in the read list."""
        return False

    def on_ready(self, now: float) -> ProbeResult | None:
        """The fd is readable/writable: make progress; a result once finished."""
        return None

    def poll(self, now: float) -> ProbeResult | None:
        """Check progress without an fd event (for probes with a poll_interval)."""
        return None

    def on_timeout(self, now: float) -> ProbeResult:
        """The deadline has passed: give up (and kill what must be killed)."""
        if self.result is not None:
            return self.result
        return self._finish(False, f"timed out after {self.timeout:g}s", now)

    @abstractmethod
    def close(self) -> None:
        """Release the socket/fd/child; idempotent."""

    def _finish(self, healthy: bool, message: str, now: float) -> ProbeResult:
        self.close()
        self.result = ProbeResult(healthy, message, max(0.0, now - self._started))
        return self.result


def _literal_host(host: str | None) -> str:
    """Name resolution (getaddrinfo) blocks and cannot be made non-blocking with the stdlib,
    so a probe accepts only IP literals, and "localhost" as 127.0.0.1."""
    if not host:
        raise ValueError("health check host is empty")
    if host.lower() == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(
            f"health check host must be an IP address or localhost, got {host!r}"
        ) from None


class TcpProbe(Probe):
    """Healthy when a TCP connection to host:port is accepted."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        super().__init__(timeout)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        self.host = _literal_host(host)
        self.port = port
        self._sock: socket.socket | None = None

    def describe(self) -> str:
        return f"tcp {self.host}:{self.port}"

    def _begin(self, now: float) -> ProbeResult | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setblocking(False)
        err = self._sock.connect_ex((self.host, self.port))
        if err == 0:
            return self._connected(now)
        if err not in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
            return self._finish(False, f"connect: {os.strerror(err)}", now)
        return None

    def fileno(self) -> int | None:
        return self._sock.fileno() if self._sock is not None else None

    def wants_write(self) -> bool:
        return True

    def on_ready(self, now: float) -> ProbeResult | None:
        if self._sock is None:
            return self.result
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return self._finish(False, f"connect: {os.strerror(err)}", now)
        try:
            # SO_ERROR is 0 while the connect is still in progress too; only a peer name
            # tells that it has completed (ENOTCONN otherwise: a spurious call).
            self._sock.getpeername()
        except OSError:
            return None
        return self._connected(now)

    def _connected(self, now: float) -> ProbeResult | None:
        return self._finish(True, f"connected to {self.host}:{self.port}", now)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class HttpProbe(TcpProbe):
    """Healthy when `GET path` over plain http answers 2xx or 3xx (only the status line is read)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(f"health check URL must be http://, got {url!r}")
        port = parts.port or 80  # ValueError for a bad port comes from urlsplit
        super().__init__(port, parts.hostname or "", timeout)
        self.url = url
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        host_header = host if port == 80 else f"{host}:{port}"
        self._request = (
            f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\n"
            "User-Agent: mastercontrol-healthcheck\r\nConnection: close\r\n\r\n"
        ).encode("latin-1")
        self._to_send = b""
        self._received = b""
        self._sending = True

    def describe(self) -> str:
        return f"http {self.url}"

    def wants_write(self) -> bool:
        return self._sending

    def _connected(self, now: float) -> ProbeResult | None:
        self._to_send = self._request
        self._sending = True
        return self._send(now)

    def on_ready(self, now: float) -> ProbeResult | None:
        if self._sock is None:
            return self.result
        if self._sending and not self._to_send:
            return super().on_ready(now)  # still connecting
        if self._sending:
            return self._send(now)
        return self._recv(now)

    def _send(self, now: float) -> ProbeResult | None:
        assert self._sock is not None
        try:
            sent = self._sock.send(self._to_send)
        except BlockingIOError:
            return None
        except OSError as exc:
            return self._finish(False, f"send: {exc.strerror or exc}", now)
        self._to_send = self._to_send[sent:]
        if not self._to_send:
            self._sending = False  # now wait for the answer
        return None

    def _recv(self, now: float) -> ProbeResult | None:
        assert self._sock is not None
        try:
            chunk = self._sock.recv(4096)
        except BlockingIOError:
            return None
        except OSError as exc:
            return self._finish(False, f"recv: {exc.strerror or exc}", now)
        self._received += chunk
        line, newline, _ = self._received.partition(b"\n")
        if not newline:
            if not chunk:
                return self._finish(False, "connection closed before a status line", now)
            if len(self._received) > _MAX_STATUS_LINE:
                return self._finish(False, "no HTTP status line in the answer", now)
            return None
        fields = line.decode("latin-1").split(None, 2)
        if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
            return self._finish(False, f"not an HTTP status line: {line[:80]!r}", now)
        status = int(fields[1])
        text = line.decode("latin-1").strip()
        return self._finish(200 <= status < 400, text, now)


class CommandProbe(Probe):
    """Healthy when the command exits 0 within the timeout.

    The command runs in its own session (so its whole process group can be killed), with
    stdin/stdout/stderr on /dev/null. Where the kernel has pidfds (Linux >= 5.3) fileno() is a
    pidfd that turns readable when the command exits; otherwise fileno() is None and
    `poll_interval` tells the loop to call poll() on a short timer. Once the command exits its
    process group is SIGKILLed: a health command must not leave background processes behind.
    """

    def __init__(
        self,
        argv: Sequence[str],
        timeout: float = 5.0,
        *,
        use_pidfd: bool | None = None,
        after_fork: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(timeout)
        if not argv:
            raise ValueError("health check command is empty")
        self.argv = tuple(argv)
        self._after_fork = after_fork  # the master's run scopes step on (child/scope.py)
        self._use_pidfd = hasattr(os, "pidfd_open") if use_pidfd is None else use_pidfd
        self._popen: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self.pid: int | None = None  # of the command, once started (kept for messages)

    def describe(self) -> str:
        return "command " + " ".join(self.argv)

    def _begin(self, now: float) -> ProbeResult | None:
        reap_orphans()
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return self._finish(False, f"cannot run {self.argv[0]}: {exc.strerror or exc}", now)
        _started.add(self._popen)
        self._after_fork()
        self.pid = self._popen.pid
        if self._use_pidfd:
            try:
                self._pidfd = os.pidfd_open(self._popen.pid)
            except OSError:  # ENOSYS on old kernels, or a seccomp filter: fall back to polling
                self._pidfd = None
        if self._pidfd is None:
            self.poll_interval = COMMAND_POLL_INTERVAL
        return None

    def fileno(self) -> int | None:
        return self._pidfd

    def on_ready(self, now: float) -> ProbeResult | None:
        return self.poll(now)

    def poll(self, now: float) -> ProbeResult | None:
        if self._popen is None:
            return self.result
        popen = self._popen
        try:
            # WNOWAIT: see the exit without reaping it, so that the pgid cannot be reused by
            # another process before the killpg below.
            info = os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            # Reaped by someone else (a waitpid(-1) the design forbids): status unknowable.
            popen.returncode = -1
            killpg(popen.pid, signal.SIGKILL)
            return self._finish(False, "exit status lost (reaped elsewhere)", now)
        if info is None:
            return None
        killpg(popen.pid, signal.SIGKILL)  # background leftovers of the command
        code = popen.poll()
        if code is None:  # waitid saw the exit, so this does not happen; stay safe anyway
            return None
        if code == 0:
            return self._finish(True, "exit status 0", now)
        if code < 0:
            return self._finish(False, f"killed by signal {-code}", now)
        return self._finish(False, f"exit status {code}", now)

    def on_timeout(self, now: float) -> ProbeResult:
        if self.result is not None:
            return self.result
        return self._finish(False, f"timed out after {self.timeout:g}s (killed)", now)

    def close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        popen, self._popen = self._popen, None
        if popen is not None and popen.returncode is None:
            killpg(popen.pid, signal.SIGKILL)
            if popen.poll() is None:
                _orphans.append(popen)  # dying; reaped by reap_orphans() on the next SIGCHLD


def command_pids() -> set[int]:
    """Pids of the command probes not reaped yet: the master's children that their Popen
    reaps, which the master's reaper must leave alone (child/zygote.py, `owned_elsewhere`)."""
    return {p.pid for p in (*_started, *_orphans) if p.returncode is None}


def reap_orphans() -> int:
    """Reap killed command probes that have exited since; returns how many are left."""
    _orphans[:] = [p for p in _orphans if p.poll() is None]
    return len(_orphans)


def make_probe(check: HealthCheck, after_fork: Callable[[], None] = lambda: None) -> Probe:
    """The probe for a workload's `health_check:` (exactly one of tcp, http, command);
    `after_fork` is called once a command probe's process is started."""
    kinds = [k for k in (check.tcp, check.http, check.command) if k is not None]
    if len(kinds) != 1:
        raise ValueError("a health check needs exactly one of tcp, http, command")
    if check.tcp is not None:
        return TcpProbe(check.tcp, timeout=check.timeout)
    if check.http is not None:
        return HttpProbe(check.http, timeout=check.timeout)
    assert check.command is not None
    return CommandProbe(check.command, timeout=check.timeout, after_fork=after_fork)


def wait_for(probe: Probe, clock: Callable[[], float] = time.monotonic) -> ProbeResult:
    """Drive one probe to its result, blocking. For tools and tests, never the master loop."""
    result = probe.start(clock())
    try:
        while result is None:
            now = clock()
            wake = probe.deadline
            if probe.poll_interval is not None:
                wake = min(wake, now + probe.poll_interval)
            fd = probe.fileno()
            rlist = [fd] if fd is not None and not probe.wants_write() else []
            wlist = [fd] if fd is not None and probe.wants_write() else []
            ready_r, ready_w, _ = select.select(rlist, wlist, [], max(0.0, wake - now))
            now = clock()
            if ready_r or ready_w:
                result = probe.on_ready(now)
            elif probe.poll_interval is not None:
                result = probe.poll(now)
            if result is None and now >= probe.deadline:
                result = probe.on_timeout(now)
    finally:
        probe.close()
    return result
