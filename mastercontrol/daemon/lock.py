"""The one-daemon-per-socket lock and the IPC socket file itself.

A daemon holds an exclusive `flock` on `<socket>.lock` for its whole life; the kernel drops it
when the process dies, even by SIGKILL, so a stale lock never blocks a restart. The lock file
also records the owner's pid for `mastercontrol-ctl` and for humans. A socket file left by a dead
daemon is removed before binding; a live daemon's socket is never touched. Stdlib only.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from mastercontrol.errors import DaemonLocked


class DaemonLock:
    """Exclusive lock next to the IPC socket; `acquire()` raises DaemonLocked when taken."""

    def __init__(self, socket_path: Path) -> None:
        self.path = socket_path.with_name(socket_path.name + ".lock")
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = read_owner_pid(self.path)
            os.close(fd)
            who = f"pid {owner}" if owner else "another process"
            raise DaemonLocked(
                f"another mastercontrold ({who}) is already running on {self.path.parent} "
                f"(lock {self.path}); stop it first with 'mastercontrol-ctl down'"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


def read_owner_pid(lock_path: Path) -> int | None:
    """The pid written by the daemon holding `lock_path`, if any."""
    try:
        text = lock_path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_path_for(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")
