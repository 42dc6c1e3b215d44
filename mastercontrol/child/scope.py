"""Each run's scope: the cgroup (or, without cgroups, the marker) that holds all it starts.

`RunScopes` wraps the spawner: before each fork it makes the run's cgroup
`<daemon cgroup>/mc-<start id>-<seq>` (`mastercontrol.child.cgroup`; the child joins it in
its bootstrap) or, where cgroups are refused, puts the marker `MASTERCONTROL_RUN=<start id>-<seq>`
into the run's environment; after the fork it hands back the child with its start time and
scope, which the lifecycle records in the run's row for the restart sweep. Its `signal` is the
master's signal sender: a process-group signal as before (`killpg`), and for a SIGKILL, the
run's whole cgroup too (`cgroup.kill`: setsid'd grandchildren included). The cgroup of a run
whose leader was reaped is removed. Runs in the master; imports only the standard library and
`mastercontrol.child`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from mastercontrol.child import cgroup
from mastercontrol.child.execspawn import ExecChild, fast_path_applies
from mastercontrol.child.group import MARKER, killpg, start_ticks
from mastercontrol.child.spawn import ChildSpec, SpawnedChild

log = logging.getLogger(__name__)

Spawn = Callable[[ChildSpec, Iterable[int]], SpawnedChild | ExecChild]


class RunScopes:
    """Scopes of this daemon's runs; `base` None: no cgroups, markers only."""

    def __init__(self, start_id: str, base: Path | None) -> None:
        self.start_id = start_id
        self.base = base
        self._seq = 0
        self._cgroups: dict[int, Path] = {}  # pid of a run's leader -> its cgroup
        self._draining: list[Path] = []  # killed, rmdir refused (EBUSY) so far

    def spawner(self, spawn: Spawn) -> Spawn:
        """`spawn`, with each run put in a scope of its own."""

        def spawn_in_scope(spec: ChildSpec, close_fds: Iterable[int]) -> SpawnedChild | ExecChild:
            spec = self._prepare(spec)
            path = Path(spec.cgroup) if spec.cgroup else None
            # A run the fast path takes is posix_spawn'ed (child/execspawn.py): it cannot join
            # by itself, and moving it in afterwards loses the race with its first fork. A child
            # starts in its parent's cgroup, so the master steps into the run's cgroup for the
            # spawn and back out (no controllers: moving costs two small writes). A forked run
            # joins in its own bootstrap.
            inside = path is not None and fast_path_applies(spec) and self._enter(path)
            try:
                child = spawn(spec, close_fds)
            except BaseException:
                if path is not None:
                    if inside:
                        self._leave()
                        inside = False
                    cgroup.remove(path)
                raise
            finally:
                if inside:
                    self._leave()
            if path is not None:
                self._cgroups[child.pid] = path
            scope = spec.cgroup or spec.env.get(MARKER)
            return dataclasses.replace(child, started=start_ticks(child.pid), scope=scope)

        return spawn_in_scope

    def _enter(self, path: Path) -> bool:
        try:
            cgroup.move(path, os.getpid())
            return True
        except OSError as exc:
            log.warning("cannot enter %s for a spawn: %s", path, exc.strerror)
            return False

    def _leave(self) -> None:
        assert self.base is not None
        try:
            cgroup.move(self.base, os.getpid())
        except OSError as exc:
            log.error("cannot return to cgroup %s: %s", self.base, exc.strerror)

    def _prepare(self, spec: ChildSpec) -> ChildSpec:
        self._seq += 1
        tag = f"{self.start_id}-{self._seq}"
        if self.base is not None:
            path = self.base / f"{cgroup.PREFIX}{tag}"
            try:
                cgroup.create(path)
                return dataclasses.replace(spec, cgroup=str(path))
            except OSError as exc:
                log.warning("%s: cannot create cgroup %s: %s", spec.name, path, exc.strerror)
        return dataclasses.replace(spec, env={**spec.env, MARKER: tag})

    def signal(self, pgid: int, signum: int, *, unreaped: bool = False) -> None:
        """Signal a run's process group; a SIGKILL also kills its cgroup. `unreaped=False` is
        the sweep after the leader's exit: the cgroup is killed and removed."""
        path = self._cgroups.get(pgid)
        if path is not None and signum == signal.SIGKILL:
            cgroup.kill(path)
        killpg(pgid, signum, unreaped=unreaped)
        if path is not None and not unreaped:
            del self._cgroups[pgid]
            self._draining.append(path)
        if self._draining:
            # The killed die within moments; whatever is still busy goes at a later call
            # (or to the keeper at exit).
            self._draining = [p for p in self._draining if not cgroup.remove(p)]
