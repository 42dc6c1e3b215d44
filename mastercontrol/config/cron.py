"""Cron expressions: the one parser and validator, and tick arithmetic in one time zone.

Owns the rules every schedule follows, written once: 5 fields, or 6 with seconds LAST
(croniter's reading: "* * * * * */10" runs every 10 s); no seventh (year) field; the @aliases
of the one `ALIASES` table, lower case only, as Vixie cron compares them; and an expression
that never matches a date (February 30th) is invalid. Config validates `schedule:` by building a
`CronSchedule` (config/checks.py), and the tick planner (engine/schedule.py) evaluates it, so
the daemon can never meet an expression the loader let through and cannot run.

Imports only the standard library and croniter; never mastercontrol.engine, daemon or store
(the engine imports this module, not the other way round).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

# The @aliases and the fields they stand for. Lower case only: "@HOURLY" is an error, as in cron.
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELD_COUNTS = (5, 6)  # minute hour day month weekday [second]
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


def _fields(expr: str) -> list[str]:
    """The cron fields of a whitespace-normalised expression; ValueError if it has too few or
    too many, or is empty."""
    if not expr:
        raise ValueError("invalid cron expression: empty (expected 'minute hour dom month dow')")
    fields = ALIASES.get(expr, expr).split(" ")
    if len(fields) not in FIELD_COUNTS:
        raise ValueError(
            f"invalid cron expression {expr!r}: needs 5 fields (minute hour day month "
            f"weekday), or 6 with seconds last, or an @alias like @hourly; got {len(fields)}"
        )
    return fields


def _every_second(expr: str) -> bool:
    # croniter writes a seconds field that covers the whole minute ("*", "*/1", "0-59") as "*".
    seconds: list[object] = croniter(expr).expanded[5]
    return seconds == ["*"]


class CronSchedule:
    """A validated cron expression evaluated in one time zone (local time by default).

    Ticks are epoch seconds. Across DST changes this follows croniter (a tick in the skipped
    spring-forward hour runs at the first valid time after it), plus one rule from Vixie cron: an
    expression with a fixed minute and hour (e.g. "30 2 * * *") does not run a second time when
    autumn repeats that hour; expressions with `*` in the minute or hour field ("*/15 * * * *")
    keep their spacing through the repeated hour.
    """

    def __init__(self, expr: str, tz: tzinfo | str | None = None) -> None:
        if not isinstance(expr, str):
            raise ValueError(f"invalid cron expression: expected a string, got {expr!r}")
        self.expr = " ".join(expr.split())
        fields = _fields(self.expr)
        if isinstance(tz, str):
            try:
                tz = ZoneInfo(tz)
            except (ValueError, KeyError):
                raise ValueError(f"unknown time zone {tz!r}") from None
        self.tz: tzinfo = tz if tz is not None else local_timezone()
        try:
            croniter(self.expr, datetime.fromtimestamp(_VALIDATION_EPOCH, self.tz))
        except (CroniterError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"invalid cron expression {self.expr!r}: {e or type(e).__name__}"
            ) from None
        self._every_second = len(fields) == 6 and _every_second(self.expr)
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

    def warning(self) -> str | None:
        """Why this valid expression is probably not what was meant, or None.

        The one case: a 6-field expression whose seconds field (the LAST one) is every second.
        "*/5 * * * * *" reads like "every 5 minutes" but runs 60 times in each of those minutes.
        """
        if not self._every_second:
            return None
        five = " ".join(self.expr.split(" ")[:5])
        return (
            "fires every second of each matching minute: with 6 fields the last one is the "
            f"seconds; for one run per matching minute write {five!r} (or {five + ' 0'!r})"
        )

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
