"""The tick planner: cron ticks on the wall clock, for a daemon whose timers are monotonic.

`CronSchedule` (config/cron.py) answers "when is the next tick after this wall time".
`TickPlanner` decides, each time the loop wakes, whether a scheduled workload runs now: one run
per tick, at most one run per wake whatever the clock did, and a defined answer to clock jumps
and to ticks missed while the daemon was down. Imports only the standard library and
mastercontrol.config (cron, model), never croniter itself; it never reads a clock: callers pass
the wall time.
"""

from __future__ import annotations

from dataclasses import dataclass

from mastercontrol.config.cron import CronSchedule
from mastercontrol.config.model import CatchUp

# Counting missed ticks walks croniter (~50 us a tick on a PC): count exactly up to this many and
# estimate the rest from the average spacing, so a clock set forward by years (a board booting
# at 1970 before NTP) cannot stall the loop.
MAX_COUNTED_TICKS = 1000


@dataclass(frozen=True)
class TickDecision:
    """What to do after a wake: run now or not, and what to wait for next."""

    run: bool  # start one run now (never more than one)
    tick: float | None  # the tick handled by this wake (run or missed); None if nothing was due
    missed: int  # ticks that came due and will not run (record them as skipped)
    next_tick: float  # wall epoch of the next tick to wait for
    reanchored: bool = False  # the wall clock went back a schedule period or more (log it)


class TickPlanner:
    """One scheduled workload's tick bookkeeping. Pure: every call takes the wall time.

    Use: at startup build it with the persisted `last_tick` and call `due(now)`; then when its
    timer fires, and at once when the wall clock is seen to step (daemon/ticks.py `replan`),
    call `due(now)` again; wait for `next_tick`, converted with `wall_to_monotonic_deadline`.
    Persist `last_tick` after each decision that handled a tick.

    Rules:
    - One run per tick, at most one run per `due()`. A timer that fires early (monotonic and wall
      clocks drift apart) gets run=False and the same tick as `next_tick`, so it is re-armed,
      neither skipped nor run twice.
    - Wall clock jumps forward (or the loop was stalled): every tick up to now is due at once;
      only the most recent one runs, the others are `missed`. Never a burst.
    - Startup catch-up: ticks after the persisted `last_tick` and up to the first call are the
      ones missed while the daemon was down. "skip": all counted as missed, none run; "once":
      the most recent runs, the rest are missed. A tick that falls due after startup is live.
    - Wall clock jumps backward by J seconds (measured against the latest wall time seen), and
      G is the schedule's period around the awaited tick:
        * J < G: absorbed. The awaited tick stays; a tick <= last_tick never runs again. This is
          the common case (an NTP step of seconds) and the one where re-running the tick just
          served would be a real duplicate. The silence is at most G + J < 2G.
        * J >= G: treated as a clock correction (cron does the same past 3 h): the planner
          re-anchors on the new time and waits for the first tick after it, so a minute job
          resumes within a minute instead of going silent for the length of the jump, and a
          daily job is only re-anchored by a jump of a day or more. Tick epochs at or before
          the old last_tick then happen again; in real time these are new occurrences.
      We chose the period as the threshold because it is where the two failures trade places:
      below it, following the new clock could re-run the tick just served; above it, holding
      to last_tick means missing at least one whole real period.
    """

    def __init__(
        self,
        schedule: CronSchedule | str,
        last_tick: float | None = None,
        catch_up: CatchUp | str = CatchUp.SKIP,
    ) -> None:
        self.schedule = schedule if isinstance(schedule, CronSchedule) else CronSchedule(schedule)
        try:
            self.catch_up = CatchUp(catch_up)
        except ValueError:
            raise ValueError(f"catch_up must be 'skip' or 'once', got {catch_up!r}") from None
        self._last_tick = last_tick
        self._pending: float | None = None  # the first tick not handled yet
        self._high_water = last_tick  # the latest wall time seen (or tick handled)
        # Ticks <= this wall time were missed while the daemon was down (catch-up policy).
        self._startup_until: float | None = None
        self._started = False

    @property
    def expr(self) -> str:
        """The cron expression (normalised whitespace), to tell whether a reload changed it."""
        return self.schedule.expr

    @property
    def last_tick(self) -> float | None:
        """Wall epoch of the last tick handled (run or missed); persist it."""
        return self._last_tick

    def arm(self, now_wall: float) -> float:
        """Wall epoch of the next tick to wait for (in the past if one is already due)."""
        self._sync(now_wall)
        assert self._pending is not None
        return self._pending

    def due(self, now_wall: float) -> TickDecision:
        """Decide after a wake: run now (0 or 1 runs), what was missed, and the next tick."""
        reanchored = self._sync(now_wall)
        pending = self._pending
        assert pending is not None
        startup_until, self._startup_until = self._startup_until, None
        if now_wall < pending:
            return TickDecision(False, None, 0, pending, reanchored)

        sched = self.schedule
        latest = sched.latest_at_or_before(now_wall)
        next_tick = sched.next_after(latest)
        self._last_tick = latest
        self._pending = next_tick
        if startup_until is not None and latest > startup_until:
            # Downtime ticks and live ticks in one wake: the live one runs, the rest are missed.
            total = self._count(pending, latest)
            return TickDecision(True, latest, total - 1, next_tick, reanchored)
        total = self._count(pending, latest)
        if startup_until is not None and self.catch_up is CatchUp.SKIP:
            return TickDecision(False, latest, total, next_tick, reanchored)
        return TickDecision(True, latest, total - 1, next_tick, reanchored)

    def _sync(self, now: float) -> bool:
        """Bring `_pending` up to date with `now`; True if a backward jump re-anchored it."""
        sched = self.schedule
        if not self._started:
            self._started = True
            if self._last_tick is not None:
                self._startup_until = now
        if self._pending is None:
            base = self._last_tick if self._last_tick is not None else now
            self._pending = sched.next_after(base)
        high = self._high_water
        if high is not None and now < high:
            period = self._pending - sched.prev_before(self._pending)
            if high - now >= period:
                self._pending = sched.next_after(now)
                self._high_water = now
                self._startup_until = None
                return True
            return False
        self._high_water = now
        return False

    def _count(self, first: float, last: float) -> int:
        """Number of ticks in [first, last], both ticks; estimated past MAX_COUNTED_TICKS."""
        if last <= first:
            return 1
        count = 1
        tick = first
        for tick in self.schedule.iter_after(first):
            if tick > last:
                return count
            count += 1
            if count >= MAX_COUNTED_TICKS:
                break
        average = (tick - first) / (count - 1)
        return count + round((last - tick) / average)


def wall_to_monotonic_deadline(tick_wall: float, now_wall: float, now_mono: float) -> float:
    """The monotonic time at which `tick_wall` is due, never earlier than `now_mono`.

    The wall clock is read again when the timer fires (`TickPlanner.due`), so a clock change in
    between costs at most one early wake, never a wrong run; a late one is prevented by the
    loop, which re-plans within a second of a step (engine/clock.py `JumpWatch`).
    """
    return now_mono + max(0.0, tick_wall - now_wall)
