"""Cron schedules on wall-clock local time, planned for a daemon whose timers are monotonic.

`CronSchedule` answers "when is the next tick after this wall time" (croniter, DST-aware).
`TickPlanner` decides, each time the loop wakes, whether a scheduled workload runs now: one run
per tick, at most one run per wake whatever the clock did, and a defined answer to clock jumps
and to ticks missed while the daemon was down. Imports only the standard library, croniter and
mastercontrol.config.model; it never reads a clock: callers pass the wall time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from mastercontrol.config.model import CatchUp

# Counting missed ticks walks croniter (~50 us a tick on a PC): count exactly up to this many and
# estimate the rest from the average spacing, so a clock set forward by years (a board booting
# at 1970 before NTP) cannot stall the loop.
MAX_COUNTED_TICKS = 1000

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Any fixed point works for checking that an expression ever matches.
_VALIDATION_EPOCH = 946_684_800.0  # 2000-01-01T00:00:00Z


def local_timezone() -> tzinfo:
    """The zone local time is in: $TZ if set (name or file path), else /etc/localtime.

    Resolved when called (a CronSchedule resolves it once, when built). A POSIX rule string in
    $TZ that zoneinfo cannot read falls back to the current fixed UTC offset, which is right
    except across a DST change.
    """
    tz_env = os.environ.get("TZ")
    try:
        if tz_env:
            name = tz_env.removeprefix(":")
            if name.startswith("/"):
                with open(name, "rb") as f:
                    return ZoneInfo.from_file(f, key=name)
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, KeyError):  # KeyError: ZoneInfoNotFoundError
        fixed = datetime.now().astimezone().tzinfo
        assert fixed is not None  # astimezone() always sets one
        return fixed


class CronSchedule:
    """A validated cron expression evaluated in one time zone (local time by default).

    Ticks are epoch seconds. Across DST changes this follows croniter (a tick in the skipped
    spring-forward hour runs at the first valid time after it), plus one rule from Vixie cron: an
    expression with a fixed minute and hour (e.g. "30 2 * * *") does not run a second time when
    autumn repeats that hour; expressions with `*` in the minute or hour field ("*/15 * * * *")
    keep their spacing through the repeated hour.
    """

    def __init__(self, expr: str, tz: tzinfo | str | None = None) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError(
                "invalid cron expression: empty (expected 'minute hour dom month dow')"
            )
        self.expr = " ".join(expr.split())
        if isinstance(tz, str):
            try:
                tz = ZoneInfo(tz)
            except (ValueError, KeyError):
                raise ValueError(f"unknown time zone {tz!r}") from None
        self.tz: tzinfo = tz if tz is not None else local_timezone()
        try:
            croniter(self.expr, datetime.fromtimestamp(_VALIDATION_EPOCH, self.tz))
            valid = croniter.is_valid(self.expr)
            problem = "bad field value"
        except (CroniterError, ValueError, KeyError, TypeError) as e:
            valid, problem = False, str(e) or type(e).__name__
        if not valid:
            raise ValueError(
                f"invalid cron expression {self.expr!r}: {problem} (expected 5 fields "
                "'minute hour day-of-month month day-of-week', or an @alias like @hourly)"
            )
        fields = _ALIASES.get(self.expr.lower(), self.expr).split()
        # Vixie cron's test for a "fixed-time" job: neither minute nor hour starts with '*'.
        self._fixed_time = not (fields[0].startswith("*") or fields[1].startswith("*"))
        try:
            self.next_after(_VALIDATION_EPOCH)
        except CroniterError:
            raise ValueError(
                f"invalid cron expression {self.expr!r}: it never matches a date"
            ) from None

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r}, tz={self.tz!s})"

    def next_after(self, wall: float) -> float:
        """Epoch of the first tick strictly after `wall`."""
        return next(self.iter_after(wall))

    def iter_after(self, wall: float) -> Iterator[float]:
        """The ticks strictly after `wall`, in order (an endless iterator)."""
        it = croniter(self.expr, datetime.fromtimestamp(wall, self.tz))
        while True:
            tick = float(it.get_next(float))
            if not self._repeated_hour(tick):
                yield tick

    def prev_before(self, wall: float) -> float:
        """Epoch of the last tick strictly before `wall`."""
        it = croniter(self.expr, datetime.fromtimestamp(wall, self.tz))
        while True:
            tick = float(it.get_prev(float))
            if not self._repeated_hour(tick):
                return tick

    def latest_at_or_before(self, wall: float) -> float:
        """Epoch of the last tick <= `wall`."""
        return self.prev_before(self.next_after(wall))

    def _repeated_hour(self, tick: float) -> bool:
        if not self._fixed_time:
            return False
        local = datetime.fromtimestamp(tick, self.tz)
        # fold=1 marks the second pass through an ambiguous local time (PEP 495); it is a real
        # repeat only when the offset differs from the first pass.
        return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


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

    Use: at startup build it with the persisted `last_tick` and call `due(now)`; then after
    every wake (timer or not) call `due(now)` again; wait for `next_tick`, converted with
    `wall_to_monotonic_deadline`. Persist `last_tick` after each decision that handled a tick.

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
    between costs at most one early or late wake, never a wrong run.
    """
    return now_mono + max(0.0, tick_wall - now_wall)
