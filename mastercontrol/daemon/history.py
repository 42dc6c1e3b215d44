"""The supervisor's record: every state transition and store write, surviving a bad database.

`History.transition` moves a workload through `next_state` and writes the change (the new
current state plus an event row); `History.save` runs any other store write. A failing database
(full disk, I/O error) is logged — once a minute at most, with the count of failures left
unlogged since — counted and survived: supervision goes on with history incomplete rather than
stopping. Every state-database failure of the daemon is reported through `failed()`. FATAL is
kept across daemon restarts here too (`kept_fatal`, with the config digest it was reached
under). Knows nothing of processes, timers or sockets. Imports the stdlib and the package's
own modules only.
"""

from __future__ import annotations

import logging

# Not hashlib: it loads OpenSSL's libcrypto into the master (see config/internal.py).
from _blake2 import blake2b
from collections.abc import Callable
from typing import Any, TypeVar

from mastercontrol.config.model import WorkloadConfig
from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.clock import Clock
from mastercontrol.engine.states import ProcState, Trigger, next_state
from mastercontrol.errors import StoreError
from mastercontrol.release import current_code
from mastercontrol.store.queries import Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")

WARN_INTERVAL = 60.0  # seconds between two warnings about a failing database


def config_digest(cfg: WorkloadConfig, code: str | None = None) -> str:
    """A stable digest of everything in the config that changes what runs (not its file's
    location), and of the code the daemon runs (mastercontrol/release.py `current_code`): FATAL
    is kept across a daemon restart only while both are unchanged, so a deploy or rollback that
    brings other code, or another config of this workload, tries it again; a release that
    changed only other workloads' files does not."""
    if code is None:
        code = current_code() or ""
    return blake2b(repr((cfg.comparable(), code)).encode(), digest_size=16).hexdigest()


class History:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.errors = 0  # state database failures since the daemon started
        self._warned = -1e9
        self._suppressed = 0  # failures not logged since the last ERROR line

    def failed(self, what: str, exc: Exception) -> None:
        """Count one state database failure; log it unless one was logged in the last minute."""
        self.errors += 1
        now = self.clock.monotonic()
        if now - self._warned < WARN_INTERVAL:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more not logged in the last minute)" * bool(self._suppressed)
        self._warned, self._suppressed = now, 0
        log.error("%s (%d so far), supervision continues: %s%s", what, self.errors, exc, more)

    def save(self, write: Callable[..., _T], *args: Any) -> _T | None:
        """Run one store write; None if the database failed (logged and counted)."""
        try:
            return write(*args)
        except StoreError as exc:
            self.failed("state database write failed", exc)
            return None

    def transition(self, w: Workload, trigger: Trigger, detail: str | None = None) -> None:
        """Apply `trigger` to the workload's state (IllegalTransition if not in the table)."""
        old = w.state
        new = next_state(old, trigger)
        self.save(
            self.store.record_transition,
            w.name,
            old,
            new,
            trigger,
            self.clock.wall(),
            detail,
            w.pid,
        )
        w.state = new
        if new is ProcState.FATAL:
            self.save(self.store.keep_fatal, w.name, config_digest(w.cfg), w.restarts)
        if log.isEnabledFor(logging.DEBUG):  # three transitions per restart: no work unless shown
            log.debug(
                "%s: %s -> %s (%s%s)", w.name, old, new, trigger, f": {detail}" * bool(detail)
            )

    def kept_fatal(self, w: Workload) -> bool:
        """At load: put the workload back in FATAL (with its restart count) if it was FATAL
        when the daemon stopped and its config has not changed since; recorded if so."""
        row = self.save(self.store.workload_row, w.name)
        if row is None or row.state != ProcState.FATAL or row.config_digest != config_digest(w.cfg):
            return False
        w.state, w.restarts = ProcState.FATAL, row.restarts
        detail = "FATAL kept across a daemon restart (config unchanged)"
        self.save(
            self.store.record_transition, w.name, None, w.state, "loaded", self.clock.wall(), detail
        )
        log.warning("%s: %s; 'mastercontrol-ctl start %s' to try again", w.name, detail, w.name)
        return True
