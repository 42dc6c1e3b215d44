"""Health-check bookkeeping: a probe's result and the consecutive-failure count of one workload.

Pure logic over monotonic times passed in; the probes themselves (sockets, child commands) live
in `mastercontrol.daemon.healthcheck`. Imports only the standard library and the config model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mastercontrol.config.model import HealthCheck


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    message: str
    duration: float  # seconds from start() to the result

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "message": self.message, "duration": self.duration}


@dataclass
class HealthTracker:
    """Consecutive-failure bookkeeping for one workload's health check. Pure logic.

    The first probe is due `start_period` after the (re)start, the next ones `interval` after
    the previous result; the loop runs at most one probe per workload at a time. After
    `failures` consecutive unhealthy results `record` returns True (restart it, reason
    "unhealthy") and the count starts over. Each run gets a new tracker.
    """

    check: HealthCheck
    started_at: float  # monotonic time the current run started
    consecutive_failures: int = 0
    last_result: ProbeResult | None = None
    last_time: float | None = None  # monotonic time of last_result
    checks_since_start: int = 0

    def next_probe_due(self) -> float:
        """The monotonic time the next probe should start (<= now: start it now)."""
        if self.checks_since_start == 0 or self.last_time is None:
            return self.started_at + self.check.start_period
        return self.last_time + self.check.interval

    def record(self, result: ProbeResult, now: float) -> bool:
        self.last_result = result
        self.last_time = now
        self.checks_since_start += 1
        if result.healthy:
            self.consecutive_failures = 0
            return False
        self.consecutive_failures += 1
        if self.consecutive_failures >= self.check.failures:
            self.consecutive_failures = 0
            return True
        return False

    @property
    def status(self) -> str:
        """ "starting" (no result since the start), "healthy" or "unhealthy" (the last result)."""
        if self.checks_since_start == 0 or self.last_result is None:
            return "starting"
        return "healthy" if self.last_result.healthy else "unhealthy"

    def to_dict(self) -> dict[str, Any]:
        last = self.last_result
        return {
            "status": self.status,
            "consecutive_failures": self.consecutive_failures,
            "failures_threshold": self.check.failures,
            "last_message": last.message if last is not None else None,
            "last_duration": round(last.duration, 3) if last is not None else None,
        }
