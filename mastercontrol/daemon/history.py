"""The supervisor's record: every state transition and store write, surviving a bad database.

`History.transition` moves a workload through `next_state` and writes the change (the new
current state plus an event row); `History.save` runs any other store write. A failing database
(full disk, I/O error) is logged — once a minute at most — counted and survived: supervision
goes on with history incomplete rather than stopping. Knows nothing of processes, timers or
sockets. Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.clock import Clock
from mastercontrol.engine.states import Trigger, next_state
from mastercontrol.errors import StoreError
from mastercontrol.store.queries import Store

log = logging.getLogger(__name__)
_T = TypeVar("_T")

WARN_INTERVAL = 60.0  # seconds between two warnings about a failing database


class History:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.errors = 0  # store writes that failed since the daemon started
        self._warned = -1e9

    def save(self, write: Callable[..., _T], *args: Any) -> _T | None:
        """Run one store write; None if the database failed (logged and counted)."""
        try:
            return write(*args)
        except StoreError as exc:
            self.errors += 1
            now = self.clock.monotonic()
            if now - self._warned >= WARN_INTERVAL:
                self._warned = now
                log.error(
                    "state database write failed (%d so far), supervision continues: %s",
                    self.errors,
                    exc,
                )
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
        log.debug("%s: %s -> %s (%s%s)", w.name, old, new, trigger, f": {detail}" if detail else "")
