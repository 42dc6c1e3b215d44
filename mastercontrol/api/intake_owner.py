"""The central process's side of its intake workers: their sockets, their lives, their hand-over.

Owns, for `central.intake_workers` N > 0: the public listening socket (made here and inherited
by every worker: see `listen_public`), the private directory and unix socket the workers
forward to (`private_dir`, `bind_private`), and `IntakeWorkers`, which starts the N workers
(api/central_intake.py) with subprocess (fork+exec: this process has threads, a bare fork is
unsafe), restarts one that dies (logged, with backoff), SIGTERMs them on stop and waits. One
receiver thread per worker ingests what it hands over into the coalescer, so every read of the
latest state is still served from this process's memory and the one flush stays the only
writer. A supervising thread spawns and reaps the workers and is the parent thread their
PR_SET_PDEATHSIG names, so it lives until they are stopped.

Why one inherited socket rather than SO_REUSEPORT: with SO_REUSEPORT any process of the same
uid may bind the port too and take a share of the connections; and each socket has its own
accept queue, so the connections queued at a worker that dies are reset. One socket made here
is only this process's and its workers'; a worker's death loses no queued connection, the
others accept them. Must not import daemon/ or child/.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mastercontrol
from mastercontrol.api.central_app import Central
from mastercontrol.api.intake_forward import open_dir, socket_path
from mastercontrol.api.intake_link import Hello, WorkerCounts, encode, messages, pair, send
from mastercontrol.errors import MasterControlError

log = logging.getLogger("mastercontrol.central")

TICK = 0.25  # seconds between the supervisor's looks at its workers
MIN_DELAY = 0.5  # restart backoff: doubled per quick death, up to MAX_DELAY
MAX_DELAY = 30.0
STEADY_AFTER = 30.0  # a worker up this long has its backoff reset
STOP_TIMEOUT = 10.0  # after SIGTERM, then SIGKILL
SOCKET_NAME = "central.sock"


class IntakeSetupError(MasterControlError):
    """The private directory or a socket could not be made safely."""


def private_dir(path: Path) -> int:
    """An fd of `path`, a directory only this uid may enter (made 0700 if absent). A symlink,
    a non-directory or a directory of another user is refused."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        fd = open_dir(str(path))
    except OSError as exc:
        raise IntakeSetupError(f"{path}: {exc.strerror or exc} (a symlink is refused)") from None
    st = os.fstat(fd)
    if st.st_uid != os.getuid():
        os.close(fd)
        raise IntakeSetupError(f"{path}: belongs to uid {st.st_uid}, not to this user")
    os.fchmod(fd, 0o700)
    return fd


def bind_private(dir_fd: int, backlog: int) -> socket.socket:
    """The unix socket the workers forward to, in the private directory."""
    try:
        os.unlink(SOCKET_NAME, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(socket_path(dir_fd, SOCKET_NAME))
    os.chmod(SOCKET_NAME, 0o600, dir_fd=dir_fd)
    sock.listen(backlog)
    return sock


def listen_public(host: str, port: int, backlog: int) -> socket.socket:
    """The central's public listening socket, bound and listening, for the workers to share."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


@dataclass
class _Run:
    """One process of a worker slot: its pid, its link, what it handed over and shed."""

    proc: subprocess.Popen[bytes]
    link: socket.socket
    started: float
    heartbeats: int = 0
    shed: int = 0
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Slot:
    index: int
    run: _Run | None = None
    due: float = 0.0  # monotonic time of the next start while `run` is None
    delay: float = MIN_DELAY
    restarts: int = 0
    past_heartbeats: int = 0  # of the slot's earlier processes
    past_shed: int = 0


class IntakeWorkers:
    """N intake workers on `listen`, handing heartbeats to `central`'s coalescer."""

    def __init__(
        self,
        count: int,
        listen: socket.socket,
        central: Central,
        hello: Callable[[int], Hello],
        flush_running_for: Callable[[], float],
    ) -> None:
        self.listen = listen
        self.central = central
        self.hello = hello
        self.flush_running_for = flush_running_for
        self.slots = [_Slot(i) for i in range(count)]
        self.reload_requested = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # the counts of the slots
        self._thread = threading.Thread(target=self._supervise, name="central-intake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """SIGTERM every worker, wait (then SIGKILL), and take what they handed over last."""
        self._stopping.set()
        self._thread.join(STOP_TIMEOUT + 10)

    def counts(self) -> list[WorkerCounts]:
        with self._lock:
            return [
                WorkerCounts(
                    worker=s.index,
                    alive=s.run is not None and s.run.proc.poll() is None,
                    heartbeats=s.past_heartbeats + (s.run.heartbeats if s.run else 0),
                    shed=s.past_shed + (s.run.shed if s.run else 0),
                    restarts=s.restarts,
                )
                for s in self.slots
            ]

    # -- the supervising thread ---------------------------------------------------------------

    def _supervise(self) -> None:
        for slot in self.slots:
            self._spawn(slot)
        while not self._stopping.wait(TICK):
            now = time.monotonic()
            hup = self.reload_requested.is_set()
            self.reload_requested.clear()
            note = encode(("flush", float(self.flush_running_for())))
            for slot in self.slots:
                run = slot.run
                if run is None:
                    if now >= slot.due:
                        self._spawn(slot)
                    continue
                code = run.proc.poll()
                if code is not None:
                    self._died(slot, run, code, now)
                    continue
                if now - run.started >= STEADY_AFTER:
                    slot.delay = MIN_DELAY
                if hup:
                    _signal(run.proc, signal.SIGHUP)
                if note is not None:
                    try:
                        send(run.link, note, block=False)
                    except OSError:
                        pass  # the worker is going: the next tick reaps it
        self._stop_all()

    def _spawn(self, slot: _Slot) -> None:
        mine, theirs = pair()
        argv = [
            sys.executable, "-m", "mastercontrol.api.central_intake",
            "--listen-fd", str(self.listen.fileno()), "--link-fd", str(theirs.fileno()),
            "--central-pid", str(os.getpid()),
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                argv, pass_fds=(self.listen.fileno(), theirs.fileno()),
                stdin=subprocess.DEVNULL, env=_environment(),
            )  # fmt: skip
        except OSError as exc:
            mine.close()
            slot.due = time.monotonic() + slot.delay
            log.error("intake worker %d could not start: %s; again in %.1f s",
                      slot.index, exc, slot.delay)  # fmt: skip
            slot.delay = min(MAX_DELAY, slot.delay * 2)
            return
        finally:
            theirs.close()
        hello = encode(("hello", self.hello(slot.index)))
        assert hello is not None  # a few settings: far under MAX_MESSAGE
        try:
            send(mine, hello)
        except OSError:
            pass  # it died at once: the next tick reaps it
        run = _Run(proc, mine, time.monotonic())
        with self._lock:
            slot.run = run
        threading.Thread(
            target=self._receive, args=(slot, run), name=f"intake-{slot.index}", daemon=True
        ).start()

    def _died(self, slot: _Slot, run: _Run, code: int, now: float) -> None:
        how = f"signal {-code}" if code < 0 else f"code {code}"
        log.warning("intake worker %d (pid %d) exited with %s; restarting in %.1f s",
                    slot.index, run.proc.pid, how, slot.delay)  # fmt: skip
        run.done.wait(5.0)  # its receiver has taken what it handed over before it died
        with self._lock:
            slot.past_heartbeats += run.heartbeats
            slot.past_shed += run.shed
            slot.run = None
            slot.restarts += 1
        slot.due = now + slot.delay
        slot.delay = min(MAX_DELAY, slot.delay * 2)

    def _stop_all(self) -> None:
        runs = [s.run for s in self.slots if s.run is not None]
        for run in runs:
            _signal(run.proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for run in runs:
            try:
                run.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("intake worker pid %d did not stop: SIGKILL", run.proc.pid)
                _signal(run.proc, signal.SIGKILL)
                run.proc.wait()
        for run in runs:
            run.done.wait(5.0)  # every heartbeat they handed over is in the coalescer

    # -- one receiver thread per worker process -------------------------------------------------

    def _receive(self, slot: _Slot, run: _Run) -> None:
        ingest = self.central.coalescer.ingest
        try:
            for message in messages(run.link):
                kind = message[0]
                if kind == "heartbeat":
                    ingest(message[1])
                    run.heartbeats += 1  # only this thread writes it
                elif kind == "shed" and isinstance(message[1], int):
                    more = message[1] - run.shed
                    if more > 0:
                        run.shed = message[1]
                        self.central.reject("overloaded", more)
        finally:
            run.link.close()
            run.done.set()


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:
        pass


def _environment() -> dict[str, str]:
    """The worker's environment: this one, with this package importable as it is here."""
    env = dict(os.environ)
    root = str(Path(mastercontrol.__file__).resolve().parents[1])
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = root if not path else f"{root}{os.pathsep}{path}"
    return env
