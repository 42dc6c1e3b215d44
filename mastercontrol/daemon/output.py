"""Workload output in the master: each workload's log writer and the pipes its runs write to.

Owns the read ends of the children's stdout/stderr pipes and the LogWriter of each workload.
An event source of the loop (`mastercontrol.daemon.events`): each open pipe is a registration,
and `on_ready` moves what is in it into the log. A pipe is read until EOF, which can come
after its run was reaped (buffered data, or a grandchild still holding it), so pipes and runs
have separate lifetimes here. Never blocks: the pipes are non-blocking and the writers swallow
file errors; each writer reports the start and end of a log incident (a full disk, a deleted
log dir, which it recreates) once to the daemon log, and counts what it dropped. Imports only
the standard library and the package's own modules.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
from dataclasses import dataclass
from pathlib import Path

from mastercontrol.daemon.events import READ, Registration, Unwatch, no_unwatch
from mastercontrol.logfile import LogWriter

log = logging.getLogger("mastercontrol.output")

READ_CHUNK = 65536
READS_PER_WAKE = 16  # bounded, so one chatty child cannot starve the loop


@dataclass(eq=False)
class OutputPipe:
    """The read end of one run's output pipe. A new object per run: fd numbers get reused, and
    the loop's selector must tell a new pipe from an old one that had the same number."""

    fd: int
    writer: LogWriter


class Outputs:
    def __init__(self, log_dir: Path, unwatch: Unwatch = no_unwatch) -> None:
        self.log_dir = log_dir
        self.unwatch = unwatch  # before each close of a pipe (daemon/events.py says why)
        self.writers: dict[str, LogWriter] = {}
        self.pipes: dict[int, OutputPipe] = {}  # child output fd -> where it goes

    def add_workload(self, name: str, max_bytes: int, backups: int) -> None:
        self.writers[name] = LogWriter(
            self.log_dir / f"{name}.log", max_bytes, backups, report=_report
        )

    def writer(self, name: str) -> LogWriter | None:
        return self.writers.get(name)

    def attach(self, name: str, fd: int) -> None:
        """A new run of `name` writes into `fd` (the non-blocking read end)."""
        self.pipes[fd] = OutputPipe(fd, self.writers[name])

    def remove_workload(self, name: str) -> None:
        """Forget a workload; its writer closes once no pipe of its runs is left."""
        writer = self.writers.pop(name, None)
        if writer is not None and not self._in_use(writer):
            writer.close()

    def _in_use(self, writer: LogWriter) -> bool:
        return any(p.writer is writer for p in self.pipes.values())

    def fds(self) -> list[int]:
        """Every pipe fd held (children close them)."""
        return list(self.pipes)

    def registrations(self) -> dict[int, Registration]:
        return {fd: Registration(pipe, READ) for fd, pipe in self.pipes.items()}

    def on_ready(self, owner: object, events: int, now: float) -> None:
        if isinstance(owner, OutputPipe) and self.pipes.get(owner.fd) is owner:
            self._read(owner.fd)

    def _read(self, fd: int) -> None:
        """Move what a child wrote into its log; EOF closes the pipe."""
        pipe = self.pipes.get(fd)
        if pipe is None:
            return
        writer = pipe.writer
        for _ in range(READS_PER_WAKE):
            try:
                data = os.read(fd, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                writer.flush_partial()
                del self.pipes[fd]
                self.unwatch(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
                if writer not in self.writers.values() and not self._in_use(writer):
                    writer.close()
                return
            writer.feed(data)
            if len(data) < READ_CHUNK:
                return

    def close(self) -> None:
        """At shutdown: keep what the children wrote last, then close every pipe and log."""
        for fd in list(self.pipes):
            for _ in range(64):
                if fd not in self.pipes:
                    break
                self._read(fd)
                if fd in self.pipes and not select.select([fd], [], [], 0)[0]:
                    break
            if fd in self.pipes:  # not closed at EOF above (never close a number twice)
                del self.pipes[fd]
                with contextlib.suppress(OSError):
                    os.close(fd)
        for writer in self.writers.values():
            writer.flush_partial()
            writer.close()


def _report(level: int, message: str) -> None:
    log.log(level, "%s", message)
