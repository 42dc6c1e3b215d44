"""cgroup v2 for workload runs: find the hierarchy, make a run's cgroup, join, kill, remove.

Each run gets a cgroup of its own, a child of the daemon's cgroup, named
`mc-<daemon start id>-<seq>`: the daemon start id is new at every start, so a later daemon never
reuses a name and a keeper (`mastercontrol.daemon.keeper`) touches only its own daemon's runs.
The run is born inside it (the master sits in it for the spawn, `mastercontrol.child.scope`),
so everything the workload forks, setsid'd or not, is inside, and one write to `cgroup.kill`
(Linux 5.14+) kills the lot.

No controller is enabled anywhere: cgroup v2's "no internal processes" rule concerns
controllers only, so run cgroups can sit beside the daemon in its own cgroup (a controller
such as pids.max would need the daemon moved into a leaf first). Anything refused (no cgroup2
mount, EACCES, EROFS, EBUSY, an old kernel without cgroup.kill) makes `usable_base()` say why,
and the caller falls back to process groups and the run marker (`mastercontrol.child.group`).
Used by the master and the keeper: imports only the standard library.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "mc-"
MOUNTINFO = Path("/proc/self/mountinfo")
SELF_CGROUP = Path("/proc/self/cgroup")


def cgroup2_mount(mountinfo: str) -> Path | None:
    """The cgroup2 mount point in /proc/self/mountinfo text (hybrid systems: .../unified)."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            # Octal escapes (\040 for a space) as the kernel writes them.
            return Path(fields[4].encode().decode("unicode_escape"))
    return None


def own_cgroup(proc_cgroup: str) -> str | None:
    """This process's cgroup v2 path from /proc/self/cgroup text (the `0::` line)."""
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or "/"
    return None


def usable_base() -> tuple[Path | None, str]:
    """The directory to create run cgroups in, or None and the reason it cannot be used."""
    if os.environ.get("MCTL_NO_CGROUP") == "1":
        return None, "MCTL_NO_CGROUP=1"
    try:
        mount = cgroup2_mount(MOUNTINFO.read_text())
        own = own_cgroup(SELF_CGROUP.read_text())
    except OSError as exc:
        return None, f"cannot read /proc: {exc.strerror}"
    if mount is None or own is None:
        return None, "no cgroup2 hierarchy mounted"
    base = mount / own.lstrip("/")
    probe = base / f"{PREFIX}probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return None, f"cannot create a cgroup in {base}: {exc.strerror}"
    try:
        if not (probe / "cgroup.kill").exists():
            return None, "the kernel has no cgroup.kill (Linux 5.14+)"
        if not os.access(probe / "cgroup.procs", os.W_OK):
            return None, f"cannot move processes into cgroups under {base}"
    finally:
        remove(probe)
    return base, ""


def create(path: Path) -> None:
    """Make a run's cgroup; raises OSError (the caller runs that one without)."""
    path.mkdir()


def move(path: str | Path, pid: int) -> None:
    """Move `pid` (0: the caller) into `path`. Slow after a quiet spell: the kernel waits for an
    RCU grace period (10-15 ms here) unless another move happened just before (child/scope.py)."""
    fd = os.open(f"{os.fspath(path)}/cgroup.procs", os.O_WRONLY)
    try:
        os.write(fd, b"%d" % pid)
    finally:
        os.close(fd)


def pids(path: Path) -> list[int]:
    """The processes in the cgroup now ([] if it is gone)."""
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def populated(path: Path) -> bool:
    try:
        return "populated 1" in (path / "cgroup.events").read_text()
    except OSError:
        return False


def kill(path: Path) -> bool:
    """SIGKILL everything in the cgroup and below, setsid'd or not; False if it is gone."""
    try:
        fd = os.open(path / "cgroup.kill", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"1")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove(path: Path) -> bool:
    """rmdir the cgroup; True when it is gone. EBUSY while killed processes are still dying."""
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def daemon_runs(base: Path, start_id: str) -> list[Path]:
    """The run cgroups of the daemon whose start id is `start_id` (none of anyone else's)."""
    prefix = f"{PREFIX}{start_id}-"
    try:
        return sorted(p for p in base.iterdir() if p.name.startswith(prefix) and p.is_dir())
    except OSError:
        return []
