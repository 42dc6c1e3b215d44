"""A monotonic deadline heap and the typed keys of the master's timers.

Every delayed action of the daemon (cron tick, restart backoff, run timeout, stop deadline,
health probe) is a `TimerKey` — a `TimerKind` and, for per-workload timers, the workload's
name — in one `TimerHeap`; `select()` sleeps for `timeout(now)`. `TimerTable` is the one
dispatcher: it maps every kind to its handler, refuses a table that misses a kind, and raises
on a key of no known kind. Deadlines are monotonic seconds, never wall time. Imports only the
standard library; it never reads a clock itself: callers pass `now`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Hashable, Mapping
from enum import StrEnum
from typing import Generic, NamedTuple, TypeVar


class TimerKind(StrEnum):
    """What a timer is for. Per-workload kinds carry the workload's name in their key."""

    TICK = "tick"  # an agent's next cron tick
    UP = "up"  # start_seconds passed: STARTING -> RUNNING
    RETRY = "retry"  # backoff (or the slow FATAL retry) over
    TIMEOUT = "timeout"  # the run exceeded `timeout`
    KILL = "kill"  # stop_timeout passed: SIGKILL
    HEALTH = "health"  # the next health probe, or a probe in flight to poll or give up on
    SAMPLE = "sample"  # metrics and max_rss_mb
    WATCHDOG = "watchdog"  # sd_notify WATCHDOG=1
    HOUSEKEEPING = "housekeeping"  # reap check, history pruning
    IPC_IDLE = "ipc_idle"  # the first IPC connection to reach its idle timeout
    SHUTDOWN = "shutdown"  # the shutdown deadline: kill what is left


# The timers of one run of a workload, all cancelled when it exits or is removed.
RUN_TIMERS = (TimerKind.UP, TimerKind.TIMEOUT, TimerKind.KILL)
WORKLOAD_TIMERS = (TimerKind.TICK, TimerKind.RETRY, *RUN_TIMERS)


class TimerKey(NamedTuple):
    """One timer: its kind and the workload it belongs to ("" for the daemon's own)."""

    kind: TimerKind
    name: str = ""


class UnknownTimer(LookupError):
    """A timer key of a kind no handler is registered for: a bug, never silently dropped."""


TimerHandler = Callable[[str], None]  # called with the key's name


class TimerTable:
    """The one timer dispatcher: every TimerKind has exactly one handler."""

    def __init__(self, handlers: Mapping[TimerKind, TimerHandler]) -> None:
        missing = [k.value for k in TimerKind if k not in handlers]
        if missing:
            raise ValueError(f"no handler for timer kinds: {', '.join(missing)}")
        self._handlers = dict(handlers)

    def dispatch(self, key: TimerKey) -> None:
        handler = self._handlers.get(key[0])
        if handler is None:
            raise UnknownTimer(f"timer {key!r} has no handler (known kinds: {list(TimerKind)})")
        handler(key[1])


K = TypeVar("K", bound=Hashable)

# Rebuild the heap when stale entries outnumber live ones by this factor (and there are enough
# of them to matter), so that churn (reschedule/cancel) keeps memory proportional to live timers.
_COMPACT_FACTOR = 2
_COMPACT_MIN = 64


class TimerHeap(Generic[K]):
    """Timers keyed by a hashable key, e.g. `TimerKey(TimerKind.RETRY, "svc1")`; one per key.

    Cancel and reschedule use lazy deletion: the heap keeps (deadline, seq, key) entries and a
    dict maps each live key to the seq (generation) of its current entry; an entry whose seq is
    not the live one is stale and is dropped when it reaches the top. Both are O(log n).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._live: dict[K, tuple[float, int]] = {}
        self._seq = 0  # generation counter; also orders equal deadlines by scheduling order

    def schedule(self, key: K, deadline: float) -> None:
        """Set the timer of `key` to `deadline`, replacing any timer it already had."""
        if not math.isfinite(deadline):
            raise ValueError(f"timer deadline must be a finite number, got {deadline!r}")
        self._seq += 1
        self._live[key] = (deadline, self._seq)
        heapq.heappush(self._heap, (deadline, self._seq, key))
        self._maybe_compact()

    def cancel(self, key: K) -> bool:
        """Remove the timer of `key`; True if there was one. Cancelling twice is harmless."""
        if self._live.pop(key, None) is None:
            return False
        self._maybe_compact()
        return True

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is <= now, earliest deadline first."""
        due: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, key = heapq.heappop(heap)
            live = self._live.get(key)
            if live is not None and live[1] == seq:
                del self._live[key]
                due.append(key)
        return due

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is set."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def timeout(self, now: float) -> float | None:
        """Seconds from `now` to the next deadline (0 if already due); None when empty.

        This is the `select()` timeout: None means sleep until another event source wakes us.
        """
        deadline = self.next_deadline()
        if deadline is None:
            return None
        return max(0.0, deadline - now)

    def deadline(self, key: K) -> float | None:
        """The deadline of `key`, or None when it has no timer."""
        live = self._live.get(key)
        return None if live is None else live[0]

    def keys(self) -> list[K]:
        """The keys with a timer, earliest deadline first (for status display and tests)."""
        return sorted(self._live, key=lambda k: self._live[k])

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap:
            _, seq, key = heap[0]
            live = self._live.get(key)
            if live is not None and live[1] == seq:
                return
            heapq.heappop(heap)

    def _maybe_compact(self) -> None:
        stale = len(self._heap) - len(self._live)
        if stale > _COMPACT_MIN and stale > _COMPACT_FACTOR * len(self._live):
            self._heap = [(d, seq, k) for k, (d, seq) in self._live.items()]
            heapq.heapify(self._heap)

    @property
    def heap_size(self) -> int:
        """Entries held, live and stale: bounded by ~3x live + 64 (tests check compaction)."""
        return len(self._heap)
