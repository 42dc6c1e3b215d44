"""Injectable clocks: monotonic time for deadlines, wall time for cron and display.

The daemon passes a `Clock` into everything that needs the time, so tests drive time with
`FakeClock` instead of sleeping. Imports only the standard library; nothing here sleeps.
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
