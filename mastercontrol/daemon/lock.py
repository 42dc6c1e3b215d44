"""The daemon's exclusive locks: one daemon per IPC socket AND one daemon per state database.

A daemon holds an exclusive `flock` on `<socket>.lock` and on `<state.db>.lock` for its whole
life; the kernel drops them when the process dies, even by SIGKILL, so a stale lock never
blocks a restart. The socket lock alone is not enough: a second daemon started on the same
state DB with another socket path would declare the first one's runs dead and repeat counted
runs. Each lock file records the owner's pid for `mastercontrol-ctl` and for humans. Lock files
are opened with O_NOFOLLOW: a symlink planted in their place is refused, never followed (a root
daemon would otherwise truncate the symlink's target). Stdlib only.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from mastercontrol.errors import DaemonLocked


def lock_path_for(path: Path) -> Path:
    """The lock file beside `path` (the socket or the state DB)."""
    return path.with_name(path.name + ".lock")


class DaemonLock:
    """Exclusive lock beside `guarded`; `acquire()` raises DaemonLocked when taken."""

    def __init__(self, guarded: Path, what: str = "socket") -> None:
        self.guarded = guarded
        self.what = what  # "socket" or "state database": names the clash in the message
        self.path = lock_path_for(guarded)
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock. DaemonLocked when another daemon holds it; OSError when the file
        cannot be created (a planted symlink gives ELOOP, turned into a clear OSError)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(
                    exc.errno, f"{self.path} is a symlink; refusing to follow it (remove it)"
                ) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = read_owner_pid(self.path)
            os.close(fd)
            who = f"pid {owner}" if owner else "another process"
            raise DaemonLocked(
                f"another mastercontrold ({who}) is already running on the {self.what} "
                f"{self.guarded} (lock {self.path}); stop it first with 'mastercontrol-ctl down'"
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
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)
    return int(text) if text.isdigit() else None
