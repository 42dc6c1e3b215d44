"""Cron ticks of scheduled agents: planners, tick timers, catch-up and skipped ticks.

For each agent a TickPlanner (`mastercontrol.engine.schedule`) turns wall-clock cron times into
decisions; this module arms the monotonic timer for the next tick, persists every handled tick
(so a restart's catch-up counts only real downtime), records missed and skipped ticks, and asks
the lifecycle to launch a run — at most one per tick, never while the previous run is going —
and re-plans every armed schedule at once when the loop sees the wall clock step.
Imports the stdlib and the package's own modules only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mastercontrol.daemon.history import History
from mastercontrol.daemon.workload import Workload
from mastercontrol.engine.clock import Clock
from mastercontrol.engine.schedule import TickPlanner, wall_to_monotonic_deadline
from mastercontrol.engine.states import ACTIVE, ProcState, Trigger
from mastercontrol.engine.timers import TimerHeap, TimerKey, TimerKind
from mastercontrol.store.queries import Store

log = logging.getLogger(__name__)


class Ticks:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        timers: TimerHeap[TimerKey],
        history: History,
        launch: Callable[[Workload, Trigger], None],
    ) -> None:
        self.store = store
        self.clock = clock
        self.timers = timers
        self.save = history.save  # a store write that survives a failing database
        self.launch = launch

    def arm(self, w: Workload, catch_up: bool = False) -> None:
        """Put an agent on its schedule; with `catch_up`, first settle ticks missed while down."""
        cfg = w.cfg
        assert cfg.schedule is not None
        if w.planner is None or w.planner.expr != cfg.schedule:
            last = self.store.get_last_tick(w.name) if catch_up else None
            w.planner = TickPlanner(cfg.schedule, last, cfg.catch_up)
        if catch_up:
            self._handle_due(w, "while the daemon was down")
        self.rearm(w)

    def rearm(self, w: Workload) -> None:
        """Arm the timer for the planner's next tick (wall time converted to monotonic)."""
        assert w.planner is not None
        now_wall, now_mono = self.clock.wall(), self.clock.monotonic()
        tick = w.planner.arm(now_wall)
        w.next_tick_wall = tick
        deadline = wall_to_monotonic_deadline(tick, now_wall, now_mono)
        self.timers.schedule(TimerKey(TimerKind.TICK, w.name), deadline)

    def on_timer(self, w: Workload) -> None:
        if w.planner is None or w.operator_stopped or not w.cfg.enabled:
            return
        self._handle_due(w, "")
        self.rearm(w)

    def armed(self, w: Workload) -> bool:
        """The agent is on its schedule (a tick timer is set)."""
        return TimerKey(TimerKind.TICK, w.name) in self.timers

    def replan(self, w: Workload, step: float) -> None:
        """The wall clock was stepped by `step` seconds: decide now, not when the old timer fires.

        The planner applies the documented jump rules to the new time (forward: the latest due
        tick runs once, the rest are missed; back by a period or more: re-anchored so the next
        tick after the new time fires) and the timer is re-armed for the new next tick, so
        `next_run_at` shows it at once. Only an armed agent is touched.
        """
        if not self.armed(w) or w.planner is None or w.operator_stopped or not w.cfg.enabled:
            return
        self._handle_due(w, f"when the wall clock was set {'forward' if step > 0 else 'back'}")
        self.rearm(w)

    def _handle_due(self, w: Workload, why: str) -> None:
        """Ask the planner what is due now: record missed ticks, run at most once."""
        assert w.planner is not None
        now = self.clock.wall()
        decision = w.planner.due(now)
        if decision.tick is not None:
            # Persisted for every handled tick (run or missed), so a restart's catch-up only
            # counts what really came due while the daemon was down.
            self.save(self.store.set_last_tick, w.name, decision.tick)
        if decision.missed:
            detail = f"{decision.missed} ticks missed" + (f" {why}" if why else "")
            self.save(self.store.record_event, w.name, "ticks_missed", now, detail)
        if decision.reanchored:
            log.warning("%s: wall clock went back; schedule re-anchored", w.name)
        if decision.run:
            self._tick(w)

    def _tick(self, w: Workload) -> None:
        if w.state in ACTIVE:
            w.skipped_ticks += 1
            detail = f"previous run (pid {w.pid}) still {w.state}"
            self.save(self.store.record_event, w.name, "tick_skipped", self.clock.wall(), detail)
            log.warning("%s: tick skipped, previous run still going", w.name)
            return
        self.launch(w, Trigger.TICK if w.state is ProcState.SCHEDULED else Trigger.START)
