"""Signal plumbing of the master: handlers that only record, and the wakeup pipe.

Handlers store the signal number and nothing else; `signal.set_wakeup_fd` makes select() return
at once (without it, PEP 475 retries select() and sleeps out its whole timeout). SIGCHLD gets a
handler too, because SIG_DFL would not wake the loop. An event source of the loop
(`mastercontrol.daemon.events`): the pipe's read end is its one registration, `on_ready`
empties it and `take()` hands over the signals recorded. Children undo all of this first thing
in their bootstrap (`mastercontrol.child.spawn`). Imports the standard library and
`mastercontrol.daemon.events` only.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from mastercontrol.daemon.events import READ, Registration

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1)


class SignalPipe:
    """Owns the wakeup pipe and the set of signals received since the last drain."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._pending: list[int] = []
        self._old_wakeup = -1

    def install(self) -> None:
        self._old_wakeup = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for signum in HANDLED:
            signal.signal(signum, self._record)
        # A client that goes away mid-reply must give EPIPE, not kill the master.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        # Restart interrupted syscalls where the kernel can; select() is woken by the pipe anyway.
        for signum in HANDLED:
            signal.siginterrupt(signum, False)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self._pending.append(signum)

    def registrations(self) -> dict[int, Registration]:
        return {self.read_fd: Registration(self, READ)}

    def on_ready(self, owner: object, events: int, now: float) -> None:
        """Empty the wakeup pipe (its bytes only wake the loop; the handler kept the numbers)."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def take(self) -> list[int]:
        """Signals received since the last call, in order, each at most once per batch."""
        pending, self._pending = self._pending, []
        seen: list[int] = []
        for signum in pending:
            if signum not in seen:
                seen.append(signum)
        return seen

    def uninstall(self, stop_signals: signal.Handlers = signal.SIG_DFL) -> None:
        """Back to the default dispositions; SIGTERM, SIGINT and SIGHUP to `stop_signals`."""
        for signum in HANDLED:
            stop = signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
            signal.signal(signum, stop_signals if stop else signal.SIG_DFL)
        signal.set_wakeup_fd(self._old_wakeup)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def fds(self) -> tuple[int, int]:
        return self.read_fd, self.write_fd
