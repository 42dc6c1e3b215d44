"""The daemon's own directories and the mode of everything it creates in them.

Before anything is opened: the socket, state and log directories are created private (0700;
0750 and group-owned by `daemon.socket_group` when one is configured, the log and state dirs
setgid so their files (the DB, its WAL, the logs) take that group too; the socket dir also o+x
with a `daemon.read_group`), and a state or
log directory that anyone may write into is refused (a local user could plant symlinks or swap
files there). The daemon's umask becomes 077 (027
with a group), so the state DB, its WAL, the daemon log and workload logs are 0600 (0640);
workload children get back `child.spawn.WORKLOAD_UMASK` (022) in their bootstrap. Existing
directories keep the mode their owner gave them. Stdlib only.
"""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path


class UnsafeDirectory(Exception):
    """A directory the daemon must not use, with the reason."""


def daemon_umask(group: str | None) -> int:
    return 0o027 if group else 0o077


def group_id(group: str | None, setting: str = "daemon.socket_group") -> int | None:
    """The gid of `group`; UnsafeDirectory when no such group exists."""
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise UnsafeDirectory(f"{setting} {group!r} names no group") from None


def prepare(
    path: Path, what: str, gid: int | None, setgid: bool = False, traversable: bool = False
) -> None:
    """Create `path` (and missing parents) private, or check an existing one is not
    world-writable. `traversable` adds o+x (not o+r): the socket dir with a daemon.read_group,
    whose members must reach the socket. Raises UnsafeDirectory or OSError."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True)
        mode = 0o750 if gid is not None else 0o700
        if traversable:
            mode |= 0o001
        if gid is not None:
            os.chown(path, -1, gid)
            if setgid:
                mode |= stat.S_ISGID
        os.chmod(path, mode)  # mkdir's mode is filtered by the umask; chmod states it exactly
        return
    st = os.stat(path)  # follows a symlink: what matters is the directory really written to
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"the {what} {path} is not a directory")
    if st.st_mode & stat.S_IWOTH:
        raise UnsafeDirectory(
            f"the {what} {path} is world-writable (mode {stat.S_IMODE(st.st_mode):04o}): any "
            f"local user could plant files there; use a private directory or chmod o-w it"
        )
