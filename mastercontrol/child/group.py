"""Killing what a workload run started: the package's one killpg, cgroup kill and /proc sweep.

Every workload child calls `setsid()` first thing in its bootstrap (`mastercontrol.child.spawn`),
so its pid is its process group id and a signal to the group reaches its grandchildren too. The
master (stops, the sweep after an exit, health-check commands) and `mastercontrol-ctl run` signal
their children only through `killpg` here. A run that has a cgroup (`mastercontrol.child.cgroup`)
is killed whole through it, setsid'd descendants included; a run without one carries the marker
`MASTERCONTROL_RUN=<daemon start id>-<seq>` in its environment, which every descendant inherits,
so the keeper (`mastercontrol.daemon.keeper`) can find them in /proc after the master died.

The restart sweep (`sweep_interrupted`) checks identity before it signals a recorded pid: the
process start time from /proc/<pid>/stat must still be the one recorded at spawn, so a process
that reused the pid of a dead run is never signalled. Imports only the standard library and
`mastercontrol.child.cgroup`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from mastercontrol.child import cgroup

log = logging.getLogger(__name__)

MARKER = "MASTERCONTROL_RUN"
_MARKER_BYTES = MARKER.encode() + b"="
DRAIN_SECONDS = 2.0  # how long a cgroup.kill'ed cgroup gets to empty before rmdir gives up


class SignalSender(Protocol):
    """How a run's process group is signalled (`killpg`, the scopes' `signal`, or a fake)."""

    def __call__(self, pgid: int, signum: int, *, unreaped: bool = False) -> None: ...


def killpg(pgid: int, signum: int, *, unreaped: bool = False) -> None:
    """Signal the process group `pgid`; a group that is already gone is not an error.

    `unreaped=True` promises that the group's leader is the caller's own child, not reaped yet,
    so its pid cannot have been reused: if it has no group yet (a signal right after the fork,
    before its `setsid()`), the signal goes to the leader itself, which has its signals blocked
    until the bootstrap resets them and then acts on it. Never pass it for a child that may be
    reaped: by then the pid may be a stranger's.
    """
    try:
        os.killpg(pgid, signum)
        return
    except ProcessLookupError:
        if not unreaped:
            return
    except PermissionError as exc:  # the id was reused by someone else's process: leave it
        log.warning("cannot signal process group %d: %s", pgid, exc)
        return
    try:
        os.kill(pgid, signum)
    except ProcessLookupError:  # already gone: its exit is on the way
        pass


# ---------------------------------------------------------------------- identity in /proc


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, process group, start time in clock ticks since boot) of `pid`, None if gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)  # one read: the kernel writes the line whole (~350 bytes)
    except OSError:
        return None
    finally:
        os.close(fd)
    # Field 2 (comm) is in parentheses and may hold anything: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[2]), int(fields[19])  # fields 4, 5 and 22
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """The process's start time (/proc/<pid>/stat field 22): with the pid, its identity."""
    st = _stat(pid)
    return None if st is None else st[2]


def describe(pid: int) -> str:
    """'1234 (sleep 2001)' for the log."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read(200).replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        cmd = ""
    return f"{pid} ({cmd or '?'})"


def _marker(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return None
    at = env.find(_MARKER_BYTES)
    if at < 0 or (at > 0 and env[at - 1] != 0):
        return None
    end = env.find(b"\0", at)
    return env[at + len(_MARKER_BYTES) : end if end >= 0 else None].decode(errors="replace")


def _proc_pids() -> list[int]:
    try:
        return [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []


def kill_marked(wanted: Callable[[str], bool]) -> list[str]:
    """SIGKILL every process whose run marker `wanted` accepts, the rest of their process
    groups, and their descendants; returns what was killed, described for the log."""
    me = os.getpid()
    table: dict[int, tuple[int, int]] = {}  # pid -> (ppid, pgid)
    doomed: set[int] = set()
    for pid in _proc_pids():
        st = _stat(pid)
        if st is None or pid in (me, 1):
            continue
        table[pid] = st[0], st[1]
        value = _marker(pid)
        if value is not None and wanted(value):
            doomed.add(pid)
    groups = {table[p][1] for p in doomed} - {0, 1, os.getpgid(0)}
    doomed |= {p for p, (_, pgid) in table.items() if pgid in groups}
    for _ in range(len(table)):  # descendants, however deep: bounded by the process count
        more = {p for p, (ppid, _) in table.items() if ppid in doomed} - doomed - {me}
        if not more:
            break
        doomed |= more
    killed = []
    for pid in sorted(doomed):
        what = describe(pid)
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(what)
        except OSError:
            pass
    return killed


def kill_cgroup(path: Path) -> list[str]:
    """cgroup.kill the run's cgroup, wait (bounded) for it to empty and remove it; returns
    what was in it, described for the log."""
    inside = [describe(pid) for pid in cgroup.pids(path)]
    if cgroup.kill(path):
        end = time.monotonic() + DRAIN_SECONDS
        while cgroup.populated(path) and time.monotonic() < end:
            time.sleep(0.01)
    cgroup.remove(path)
    return inside


# ---------------------------------------------------------------------- the restart sweep


def sweep_interrupted(
    runs: Iterable[tuple[int | None, int | None, str | None]], send: SignalSender = killpg
) -> list[str]:
    """Kill what runs a dead daemon left open still have alive; returns what was killed.

    `runs`: (pid, start ticks recorded at spawn, scope: the run's cgroup path or marker). A
    recorded pid is signalled (as a process group) only when /proc shows the same start time,
    or no process at all (the leader is gone, and while its group lives on the kernel never
    hands that id out as a new pid): a stranger that reused the pid is left alone.
    """
    killed: list[str] = []
    markers: set[str] = set()
    for pid, started, scope in runs:
        if scope and scope.startswith("/"):
            killed += kill_cgroup(Path(scope))
        elif scope:
            markers.add(scope)
        if pid is None:
            continue
        now = start_ticks(pid)
        if now is not None and now != started:
            log.warning(
                "pid %d of an interrupted run is now another process, %s: not signalled",
                pid,
                describe(pid),
            )
            continue
        send(pid, signal.SIGKILL)
    if markers:
        killed += kill_marked(markers.__contains__)
    if killed:
        log.warning("killed what interrupted runs left behind: %s", ", ".join(killed))
    return killed
