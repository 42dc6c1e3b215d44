"""Heartbeats as pure logic: the JSON body a client POSTs to the central, and when to send it.

- `build_payload()` turns the master's `list` reply, the system metrics and this device's
  identity into the heartbeat body (schema in docs/api-reference.md, section "Heartbeat").
  Every heartbeat is built right before it is sent: after an outage the central gets the latest
  state only, never a backlog.
- `HeartbeatPolicy` decides the delay before the next try and which tries deserve a log line:
  every `interval` seconds ±10 % jitter while the central answers; after a failure an
  exponential backoff that starts at the interval and is capped at min(10 * interval, 300 s);
  one log line when an outage starts and one when it ends, never one per try. A central that
  sheds load answers 503 (or 429) with Retry-After: that wait replaces the backoff, bounded by
  the same cap and stretched by up to +50 % jitter, so the senders it turned away do not come
  back in step. `retry_after_seconds()` reads the header (seconds or an HTTP date).

Clock and random source are injected, so tests drive it without sleeping. No I/O here; imports
only the standard library (never daemon/, child/, api/, bottle or waitress).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HEARTBEAT_PATH = "/api/v1/heartbeat"
JITTER = 0.10  # ±10 % of each delay, so a fleet booted together does not beat in step
MAX_BACKOFF_SECONDS = 300.0
BACKOFF_INTERVALS = 10  # the backoff cap is also at most this many intervals
RETRY_AFTER_JITTER = 0.5  # a Retry-After wait is stretched by 0 to +50 %, never shortened

# The keys of a workload in a heartbeat (a subset of a `list --json` view).
WORKLOAD_KEYS = ("name", "state", "pid", "version", "runs", "restarts", "last_exit", "started_at")


def heartbeat_url(central_api_url: str) -> str:
    """`<central_api_url>/api/v1/heartbeat`, whether or not the base URL ends in a slash."""
    return central_api_url.rstrip("/") + HEARTBEAT_PATH


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """A Retry-After header as seconds from `now` (wall clock, for the HTTP-date form);
    None when absent or unreadable (then the ordinary backoff applies)."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; a zone-less one is not one
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def workload_entry(view: Mapping[str, Any]) -> dict[str, Any]:
    """One workload of a `list` reply as a heartbeat carries it; missing keys are null."""
    entry = {key: view.get(key) for key in WORKLOAD_KEYS}
    entry["internal"] = bool(view.get("internal", False))
    return entry


def build_payload(
    *,
    client_name: str,
    sent_at: float,
    daemon_version: str | None,
    release: str | None,
    workloads: Iterable[Mapping[str, Any]],
    system: Mapping[str, Any],
    api_url: str | None,
    master: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The heartbeat body. `master` is the master's `ping`/`list` daemon view, or None when the
    master did not answer (the heartbeat still goes out: the device is up, its master is not)."""
    return {
        "client_name": client_name,
        "sent_at": round(sent_at, 3),
        "daemon_version": daemon_version,
        "release": release,
        "api_url": api_url,
        "master": {
            "reachable": master is not None,
            "pid": master.get("pid") if master else None,
            "uptime_seconds": master.get("uptime_seconds") if master else None,
        },
        "workloads": [workload_entry(w) for w in workloads],
        "system": dict(system),
    }


@dataclass(frozen=True)
class Next:
    """What to do after a try: wait `delay` seconds, and log `log` if it is not None."""

    delay: float
    log: str | None = None


class HeartbeatPolicy:
    """Delays between heartbeats and the log lines of outages, for one central URL.

    `rand()` returns a float in [0, 1) (random.random); `clock()` is monotonic seconds.
    """

    def __init__(
        self,
        interval: float,
        *,
        target: str = "central",
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if interval <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self.interval = interval
        self.target = target
        self.clock = clock
        self.rand = rand
        self.failures = 0  # consecutive failed tries; 0 while the central answers
        self._outage_since: float | None = None

    @property
    def cap(self) -> float:
        """The longest backoff: min(10 * interval, 300 s)."""
        return min(BACKOFF_INTERVALS * self.interval, MAX_BACKOFF_SECONDS)

    @property
    def in_outage(self) -> bool:
        return self.failures > 0

    def _jittered(self, base: float) -> float:
        return base * (1.0 + JITTER * (2.0 * self.rand() - 1.0))

    def succeeded(self) -> Next:
        """The central took the heartbeat: next one in one interval ±10 %."""
        log = None
        if self.failures:
            since = self._outage_since if self._outage_since is not None else self.clock()
            tries = "try" if self.failures == 1 else "tries"
            log = (
                f"heartbeats to {self.target} delivered again after {self.failures} failed "
                f"{tries} over {self.clock() - since:.0f}s"
            )
        self.failures = 0
        self._outage_since = None
        return Next(self._jittered(self.interval), log)

    def failed(self, reason: str, retry_after: float | None = None) -> Next:
        """A try failed: back off (interval, 2x, 4x, ... up to the cap), ±10 %, never above it.
        With the central's `retry_after` (seconds), wait that long instead (at most the cap),
        plus 0 to 50 % jitter.

        Only the first failure of an outage returns a log line.
        """
        self.failures += 1
        log = None
        if self.failures == 1:
            self._outage_since = self.clock()
            if retry_after is not None:
                reason = f"{reason} (retry after {retry_after:g}s)"
            log = (
                f"heartbeat to {self.target} failed: {reason}; retrying with backoff "
                f"(from {self.interval:g}s up to {self.cap:g}s), logged again when it recovers"
            )
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.cap)
            return Next(wait * (1.0 + RETRY_AFTER_JITTER * self.rand()), log)
        # 2 ** (failures - 1) grows without bound; stop doubling once the cap is reached.
        exponent = min(self.failures - 1, 32)
        base = min(self.interval * 2.0**exponent, self.cap)
        return Next(min(self._jittered(base), self.cap), log)
