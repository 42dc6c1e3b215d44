"""Each run's scope: the cgroup (or, without cgroups, the marker) that holds all it starts.

`RunScopes` wraps the spawner. With cgroups, the master itself sits in a fresh, empty cgroup
`<daemon cgroup>/mc-<start id>-<seq>` (`mastercontrol.child.cgroup`), its "nursery": a child
starts in its parent's cgroup, so the next run is born inside it, forked or posix_spawn'ed, and
everything it ever starts is inside too. Right after each spawn the master steps on into the
next fresh cgroup and the one it left is that run's.

Why not let the child join its cgroup (or move the master in just for the spawn)? Moving a
process between cgroups takes the kernel's cgroup_threadgroup_rwsem for writing, which waits
for an RCU grace period unless another migration happened just before: 10-15 ms on the bench
machine (strace: the child's one write to cgroup.procs took 14 ms of a 23 ms restart). Here
that wait is the master's, after the new run is already running, and back-to-back spawns (a
boot, a churn) share one grace period. (clone3's CLONE_INTO_CGROUP would avoid the move
altogether, but neither Python nor glibc before 2.39 offers it.)

The zygote (`mastercontrol.child.zygote`), which forks the Python runs, is the master's
`Companion`: it sits in the nursery with the master and is moved right after it at every step
on (one more write to cgroup.procs; back-to-back, the two moves share one grace period). A
zygote that cannot be moved is dropped (`lost`), so no run is ever born in a run's cgroup.

A health-check command the master forks is born in the nursery too (`after_fork`): the master
steps on, and that cgroup is removed once the check is gone, so a run's cgroup.kill never
reaches a check. Where cgroups are refused, or the master cannot step on (mkdir or the move
fails), the master goes back to the daemon's cgroup and later runs carry the marker
`MASTERCONTROL_RUN=<start id>-<seq>` in their environment instead (logged once). A master that
cannot leave a run's cgroup at all never kills that cgroup (it would kill itself); that run is
then stopped by process group only.

After the fork the lifecycle gets the child with its start time and scope, which it records in
the run's row for the restart sweep. `signal` is the master's signal sender: a process-group
signal as before (`killpg`), and for a SIGKILL, the run's whole cgroup too (`cgroup.kill`:
setsid'd grandchildren included). The cgroup of a run whose leader was reaped is removed by
`tidy()`, which the loop calls after each wake, not on the restart path.

A daemon killed together with its keeper leaves its cgroups behind: `sweep_dead` (at start,
under the state database's lock) removes those of the earlier daemons of the same state
database, which it finds by the start ids recorded in a file beside the database. Runs in the
master; imports only the standard library and `mastercontrol.child`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from mastercontrol.child import cgroup
from mastercontrol.child.execspawn import ExecChild
from mastercontrol.child.group import MARKER, kill_cgroup, killpg, start_ticks
from mastercontrol.child.spawn import ChildSpec, SpawnedChild

log = logging.getLogger(__name__)

Spawn = Callable[[ChildSpec, Iterable[int]], SpawnedChild | ExecChild]
RECORD_MAX = 65536  # bytes of the start-id record read (`sweep_dead`)


class Companion(Protocol):
    """Processes that must sit where the master sits (the zygote, child/zygote.py): the runs
    they fork must be born in the nursery too."""

    def pids(self) -> Iterable[int]: ...

    def lost(self, pid: int, why: str) -> None: ...  # could not follow: no run may come from it


class RunScopes:
    """Scopes of this daemon's runs; `base` None: no cgroups, markers only."""

    def __init__(
        self, start_id: str, base: Path | None, companion: Companion | None = None
    ) -> None:
        self.start_id = start_id
        self.base = base
        self.companion = companion
        self._seq = 0
        self._nursery: Path | None = None  # the empty cgroup the master sits in, if any
        self._cgroups: dict[int, Path] = {}  # pid of a run's leader -> its cgroup
        self._draining: list[Path] = []  # to remove once empty (killed runs, finished checks)
        if base is not None:
            self._step_on()

    @property
    def nursery(self) -> Path | None:
        """Where the next child will be born (the master's own cgroup now), or None."""
        return self._nursery

    def spawner(self, spawn: Spawn) -> Spawn:
        """`spawn`, with each run put in a scope of its own."""

        def spawn_in_scope(spec: ChildSpec, close_fds: Iterable[int]) -> SpawnedChild | ExecChild:
            path = self._nursery
            if path is None:
                self._seq += 1
                spec = dataclasses.replace(
                    spec, env={**spec.env, MARKER: f"{self.start_id}-{self._seq}"}
                )
            child = spawn(spec, close_fds)  # a failed spawn left no child: the nursery stays
            started = start_ticks(child.pid)
            if path is None:
                return dataclasses.replace(child, started=started, scope=spec.env[MARKER])
            # Out of the run's cgroup before anything can kill it (a stop in this same wake).
            if self._leave(path):
                self._cgroups[child.pid] = path
            return dataclasses.replace(child, started=started, scope=str(path))

        return spawn_in_scope

    def after_fork(self) -> None:
        """The master forked a child that is no run (a health-check command): it was born in
        the nursery, which becomes its own; the master steps on to keep runs apart from it."""
        path = self._nursery
        if path is not None and self._leave(path):
            self._draining.append(path)

    def signal(self, pgid: int, signum: int, *, unreaped: bool = False) -> None:
        """Signal a run's process group; a SIGKILL also kills its cgroup. `unreaped=False` is
        the sweep after the leader's exit: the cgroup is killed and removed at `tidy()`."""
        path = self._cgroups.get(pgid)
        if path is not None and signum == signal.SIGKILL:
            cgroup.kill(path)
        killpg(pgid, signum, unreaped=unreaped)
        if path is not None and not unreaped:
            del self._cgroups[pgid]
            self._draining.append(path)

    def tidy(self) -> None:
        """Remove the cgroups that emptied (the loop calls it after each wake). The killed die
        within moments; whatever is still busy goes at a later call, or to the keeper."""
        if self._draining:
            self._draining = [p for p in self._draining if not cgroup.remove(p)]

    def close(self) -> None:
        """At the master's exit. The nursery stays: the keeper removes it once the master is
        gone (moving out first would cost the stop a grace period, see the module docstring),
        or the next daemon does (`sweep_dead`) if the keeper died too."""
        self.tidy()

    # ------------------------------------------------------------------ the master's cgroup

    def _leave(self, path: Path) -> bool:
        """Step out of `path` (a child was just born in it); False if the master is still in
        it: then it must never be killed."""
        self._nursery = None
        if self._step_on():
            return True
        assert self.base is None  # _step_on gave up on cgroups
        log.error(
            "the master cannot leave cgroup %s: the run born in it is stopped by process "
            "group only",
            path,
        )
        return False

    def _step_on(self) -> bool:
        """Move the master into a fresh cgroup for the next child. On failure: back into the
        daemon's cgroup if possible, markers from now on (logged once); True if the master
        is out of the cgroup it was in (a fresh one, or the daemon's)."""
        base = self.base
        assert base is not None
        self._seq += 1
        path = base / f"{cgroup.PREFIX}{self.start_id}-{self._seq}"
        try:
            cgroup.create(path)
        except OSError as exc:
            return self._give_up(f"cannot create cgroup {path}: {exc.strerror}")
        try:
            cgroup.move(path, os.getpid())
        except OSError as exc:
            cgroup.remove(path)
            return self._give_up(f"cannot move the master into cgroup {path}: {exc.strerror}")
        self._move_companion(path)
        self._nursery = path
        return True

    def _move_companion(self, path: Path) -> None:
        """The zygote follows the master, right after it: back-to-back moves share one RCU
        grace period (the module docstring), so this costs the master little."""
        if self.companion is None:
            return
        for pid in list(self.companion.pids()):
            try:
                cgroup.move(path, pid)
            except OSError as exc:
                self.companion.lost(pid, f"cannot move it into cgroup {path}: {exc.strerror}")

    def _give_up(self, why: str) -> bool:
        base, self.base = self.base, None
        assert base is not None
        log.error("%s: runs are tracked by process group and marker from now on", why)
        try:
            cgroup.move(base, os.getpid())
        except OSError as exc:
            log.error("cannot return to cgroup %s: %s", base, exc.strerror)
            return False  # the zygote stays with the master, whose cgroup is never killed
        self._move_companion(base)
        return True


def sweep_dead(record: Path, start_id: str, base: Path | None) -> list[str]:
    """At start, holding the state database's lock: remove the cgroups that earlier daemons of
    this state database left (their keeper was killed with them), then record this daemon's
    start id and cgroup base in `record` for the next start. Only start ids recorded there are
    touched, so a live daemon of another state database under the same parent cgroup never is;
    a populated leftover (a dead daemon's run that outlived it) is killed first. Returns the
    cgroups removed."""
    removed: list[str] = []
    keep: list[str] = []
    for line in _read_lines(record):
        sid, _, where = line.partition(" ")
        if not sid or "-" in sid or "/" in sid or not where.startswith("/"):
            continue  # not a line this module wrote
        left = cgroup.daemon_runs(Path(where), sid)
        for path in left:
            kill_cgroup(path)
            if not path.exists():
                removed.append(str(path))
        if any(p.exists() for p in left):
            keep.append(line)  # still busy: try again at the next start
    mine = [f"{start_id} {base}"] if base is not None else []
    _write_lines(record, keep + mine)
    if removed:
        log.warning(
            "removed %d cgroup(s) an earlier daemon of this state database left: %s",
            len(removed),
            ", ".join(removed),
        )
    return removed


def _read_lines(path: Path) -> list[str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "r", errors="replace") as f:
        return f.read(RECORD_MAX).splitlines()


def _write_lines(path: Path, lines: list[str]) -> None:
    """Replace `path` atomically (a temporary file renamed over it); errors are logged."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot record this daemon's cgroups in %s: %s", path, exc.strerror)
        with contextlib.suppress(OSError):
            tmp.unlink()
