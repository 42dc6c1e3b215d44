"""Load shedding for the central: a heartbeat it cannot take now is a cheap 503 + Retry-After.

Owns when the central refuses a heartbeat for load and for how long it asks the sender to stay
away. Without it, a central that cannot keep up lets every request wait: Waitress's task queue
fills, then its connection limit is reached and new connections wait in the kernel's backlog,
and latency grows without bound (bench/RESULTS.md, "Central API under load"). With it, each
heartbeat past a high-water mark costs one short answer and no body parsing, so the queue and
the connections drain, and the senders come back spread out (fleet/heartbeat.py honours
Retry-After with jitter).

`Shedder.verdict()` says "shed" when any signal is past its mark:
- Waitress's task queue: at least `max_queue` requests waiting for a thread;
- Waitress's connections: at least `max_connections` open (Waitress stops accepting at its
  `connection_limit`; the mark sits below it, so a shed answer can still be given);
- the flush: one has been running for longer than `max_flush_seconds` (the fleet DB is not
  keeping up, so what the central acknowledges would not be written in time).
Retry-After grows with the pressure: the heartbeats shed in the last two seconds spread over
what the central accepted meanwhile, at least MIN_RETRY_AFTER and at most MAX_RETRY_AFTER
seconds. Only heartbeats are shed: the operator's API and the dashboard are few requests and
the way to see an overloaded fleet.

`with_load_shedding(app, shedder, central)` is the outermost WSGI layer of the central service;
the signals are read from the Waitress server once it exists (`attach_waitress`). Thread-safe.
Imports the stdlib and api/; never daemon/, child/ or bottle.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from mastercontrol.api.central_app import HEARTBEAT_PATH
from mastercontrol.api.errors import error_json

MIN_RETRY_AFTER = 2  # seconds
MAX_RETRY_AFTER = 60
WINDOW = 2.0  # seconds of shed/accepted counts behind each Retry-After

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Rejects(Protocol):
    """What counts a shed heartbeat: the `Central` (api/central_app.py) or an intake worker's
    counters (api/central_intake.py)."""

    def reject(self, reason: str) -> None: ...


def _zero() -> float:
    return 0.0


class Shedder:
    """The shedding decision over three gauges (each a callable, read per heartbeat)."""

    def __init__(
        self,
        *,
        max_queue: int,
        max_connections: int,
        max_flush_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_queue = max_queue
        self.max_connections = max_connections
        self.max_flush_seconds = max_flush_seconds
        self.clock = clock
        self.queue_depth: Callable[[], float] = _zero
        self.connections: Callable[[], float] = _zero
        self.flush_running_for: Callable[[], float] = _zero
        self._lock = threading.Lock()
        self._slot = 0  # the current one-second slot of the counts
        self._shed = [0, 0, 0]  # per slot, a ring of WINDOW + 1 seconds
        self._accepted = [0, 0, 0]
        self.shed_total = 0

    def attach_waitress(self, server: Any) -> None:
        """Read the queue and the connections from a Waitress server (waitress.server).

        `len(server._map)` is Waitress's own measure against `connection_limit` (it counts the
        listening socket and the wake-up pipe too), the task queue its dispatcher's deque."""
        dispatcher = server.task_dispatcher
        self.queue_depth = lambda: float(len(dispatcher.queue))
        self.connections = lambda: float(len(server._map))

    def overloaded(self) -> str | None:
        """Which mark is passed ("queue", "connections", "flush"), or None."""
        if self.queue_depth() >= self.max_queue:
            return "queue"
        if self.connections() >= self.max_connections:
            return "connections"
        if self.flush_running_for() > self.max_flush_seconds:
            return "flush"
        return None

    def _roll(self) -> int:
        """Called with the lock held: the ring index of now, clearing slots passed since."""
        now = int(self.clock())
        size = len(self._shed)
        if now - self._slot >= size:
            self._shed = [0] * size
            self._accepted = [0] * size
        else:
            for slot in range(self._slot + 1, now + 1):
                self._shed[slot % size] = 0
                self._accepted[slot % size] = 0
        self._slot = max(self._slot, now)
        return now % size

    def verdict(self) -> int | None:
        """None: take this heartbeat. Else the Retry-After seconds of its 503."""
        if self.overloaded() is None:
            with self._lock:
                self._accepted[self._roll()] += 1
            return None
        with self._lock:
            self._shed[self._roll()] += 1
            self.shed_total += 1
            shed, accepted = sum(self._shed), sum(self._accepted)
        # The senders told to wait now should come back no faster than the central took
        # heartbeats lately: spread them over shed / accepted-per-second.
        rate = max(accepted / WINDOW, 1.0)
        return max(MIN_RETRY_AFTER, min(MAX_RETRY_AFTER, math.ceil(shed / rate)))


def overloaded_body(retry_after: int) -> bytes:
    message = f"the central is overloaded: send this heartbeat again in {retry_after} s"
    return error_json("overloaded", message, retry_after=retry_after).encode()


def with_load_shedding(app: WSGIApp, shedder: Shedder, central: Rejects) -> WSGIApp:
    """`app`, with heartbeats answered 503 + Retry-After while `shedder` says so."""

    def shed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEARTBEAT_PATH or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        retry_after = shedder.verdict()
        if retry_after is None:
            return app(environ, start_response)
        central.reject("overloaded")
        return overloaded(start_response, retry_after)

    return shed


def overloaded(start_response: Callable[..., Any], retry_after: int) -> list[bytes]:
    """Answer 503 `overloaded` with this Retry-After."""
    body = overloaded_body(retry_after)
    start_response(
        "503 Service Unavailable",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(retry_after)),
        ],
    )
    return [body]
