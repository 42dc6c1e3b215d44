"""The guard of the durable record: the daemon's *degraded* state when it is lost.

When the state database was lost (deleted, corrupt and moved aside, replaced: see
`mastercontrol.store.identity`), or vanished while running and could not be written back, the
daemon is degraded: `list`, `status` and sd_notify's STATUS say so with the reason, the daemon
log says so (ERROR, once), and every counted workload (run_mode n_times, whose correctness
depends on its durable count) is *held*: not started until the operator decides, with
`mastercontrol-ctl reset NAME` (its count starts from 0) or `--accept-lost-state` (all of
them). Services and agents keep running normally. While running, `check_file()` notices the
file vanishing or being replaced and writes the open database back (`restore_in_place`), so
nothing is lost then. Knows nothing of processes, timers or sockets beyond the Lifecycle's
verbs. Imports the stdlib and the package's own modules only (never api/, fleet/, deploy/).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mastercontrol.config.model import RunMode, WorkloadConfig
from mastercontrol.daemon.lifecycle import Lifecycle
from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.states import ACTIVE
from mastercontrol.errors import StoreError
from mastercontrol.store import identity
from mastercontrol.store.identity import FileWatch, LostState
from mastercontrol.store.open import restore_in_place
from mastercontrol.store.queries import ACCEPTED_PREFIX

log = logging.getLogger(__name__)


def counted(cfg: WorkloadConfig) -> bool:
    """Whether the workload's correctness depends on its durable run count."""
    return cfg.run_mode is RunMode.N_TIMES


class StateGuard:
    def __init__(self, lifecycle: Lifecycle, db_path: Path, lost: LostState | None) -> None:
        self.lifecycle = lifecycle
        self.db_path = db_path
        self.lost = lost
        self.watch = FileWatch(db_path)
        self._accepted: set[str] = set()
        if lost is not None:
            self._accepted = lifecycle.store.accepted_names()
            log.error(
                "DEGRADED: %s. Counted workloads are held until the operator decides: "
                "'mastercontrol-ctl reset NAME' (its count starts from 0) or "
                "'mastercontrol-ctl up --accept-lost-state' (all)",
                lost.reason,
            )
        lifecycle.hold = self.holds

    # ------------------------------------------------------------------ reading

    def holds(self, cfg: WorkloadConfig) -> bool:
        """Whether a workload taken on now must wait for the operator."""
        return self.lost is not None and counted(cfg) and cfg.name not in self._accepted

    def held(self) -> list[str]:
        return sorted(n for n, w in self.lifecycle.workloads.items() if w.held)

    def view(self) -> dict[str, Any] | None:
        """What `list`/`ping` show under "degraded" (None when the record is whole)."""
        if self.lost is None:
            return None
        return {"reason": self.lost.reason, "since": self.lost.since, "held": self.held()}

    def status_prefix(self) -> str:
        return "" if self.lost is None else "DEGRADED (state database lost), "

    # ------------------------------------------------------------------ operator decisions

    def reset(self, w: Workload) -> dict[str, Any]:
        """`reset NAME`: the workload's run count starts from 0 and it goes on; a held one is
        released. When the last held one is released, the loss is accepted as a whole."""
        life = self.lifecycle
        life.reset_runs(w)
        was_held = w.held
        if self.lost is not None:
            life.history.save(life.store.set_meta, ACCEPTED_PREFIX + w.name, "1")
            self._accepted.add(w.name)
        w.held = False
        log.warning(
            "%s: run count reset to 0 by the operator%s", w.name, " (released)" if was_held else ""
        )
        if self.lost is not None and not self.held():
            self.accept_all()
        if w.state not in ACTIVE:
            life.activate(w)  # COMPLETED/STOPPED -> STARTING: its runs again
        return {"name": w.name, "state": w.state, "pid": w.pid, "message": "run count reset to 0"}

    def accept_all(self) -> dict[str, Any]:
        """The operator accepts the database as it is: nothing is held any more."""
        life = self.lifecycle
        released = self.held()
        try:
            identity.accept(life.store, self.db_path)
        except StoreError as exc:
            life.history.failed("accepting the lost state failed", exc)
        if self.lost is not None:
            log.warning("lost state accepted by the operator; released: %s", released or "none")
        self.lost = None
        self._accepted.clear()
        for name in released:
            w = life.workloads[name]
            w.held = False
            if w.state not in ACTIVE:
                life.activate(w)
        return {"degraded": False, "released": released}

    # ------------------------------------------------------------------ while running

    def check_file(self, now_wall: float) -> None:
        """The database file vanished or was replaced under the open connection: write the
        open database back; if that fails, enter degraded and hold counted workloads."""
        problem = self.watch.problem()
        if problem is None:
            return
        life = self.lifecycle
        try:
            message = restore_in_place(life.store, self.db_path, problem, now_wall)
            self.watch.rearm()
            if identity.read_marker(self.db_path) is None:
                key = life.store.meta(identity.IDENTITY)
                if key is not None:
                    identity.write_marker(self.db_path, key)
        except StoreError as exc:
            self.watch.rearm()
            reason = f"state database {self.db_path} was {problem} while running: {exc}"
            log.error("DEGRADED: %s; counted workloads are held", reason)
            self.lost = LostState(reason, now_wall)
            for w in life.workloads.values():
                if counted(w.cfg) and w.name not in self._accepted:
                    w.held = True
            return
        log.error("%s", message)
