"""Injectable clocks: monotonic time for deadlines and durations, wall time for cron and display;
and `JumpWatch`, which notices when the wall clock is stepped.

The daemon passes a `Clock` into everything that needs the time, so tests drive time with
`FakeClock` instead of sleeping. Imports only the standard library; nothing here sleeps, and
nothing here knows of schedules (the loop re-plans them when `JumpWatch` reports a step).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """The two clocks the daemon reads. Deadlines use `monotonic`; cron and records use `wall`."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never jumps, never goes back."""
        ...

    def wall(self) -> float:
        """Epoch seconds (UTC); may jump either way when the system clock is set."""
        ...


# A step smaller than this is not reported: a cron timer that is off by less than a second is
# simply re-armed when it fires (TickPlanner.due reads the wall clock again). NTP's slew (at most
# 500 ppm) never adds up to it between two looks a second apart.
JUMP_THRESHOLD = 1.0
# While any schedule is armed the loop looks at least this often (seconds), so a step is noticed
# within a second even when nothing else wakes the master. Measured cost: bench/RESULTS.md.
JUMP_CHECK_INTERVAL = 1.0


class JumpWatch:
    """Notices wall clock steps: the wall clock moved by a different amount than the monotonic.

    `check()` compares `wall - monotonic` with its value at the previous look. The difference
    is the step (positive: set forward); smaller than `threshold` it counts as none. Each look
    takes the new offset as the reference, so slow drift never accumulates into a false step.
    Pure: it only reads the injected clock.
    """

    def __init__(self, clock: Clock, threshold: float = JUMP_THRESHOLD) -> None:
        self.clock = clock
        self.threshold = threshold
        self._offset = clock.wall() - clock.monotonic()

    def check(self) -> float:
        """Seconds the wall clock was stepped since the last look (0.0 if below threshold)."""
        offset = self.clock.wall() - self.clock.monotonic()
        step, self._offset = offset - self._offset, offset
        return step if abs(step) >= self.threshold else 0.0


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class FakeClock:
    """A clock for tests: time moves only when the test says so.

    `advance(sec)` moves both clocks (real time passing); `jump_wall(sec)` moves only the wall
    clock, the way `date -s` or an NTP step does, and may be negative.
    """

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = float(wall)
        self._mono = float(monotonic)

    def monotonic(self) -> float:
        return self._mono

    def wall(self) -> float:
        return self._wall

    def advance(self, sec: float) -> None:
        if sec < 0:
            raise ValueError(f"time cannot advance by a negative amount ({sec})")
        self._mono += sec
        self._wall += sec

    def jump_wall(self, sec: float) -> None:
        self._wall += sec
