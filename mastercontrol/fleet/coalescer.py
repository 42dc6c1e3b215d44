"""The latest state of every client, in memory, written to the fleet DB in one transaction per
flush interval.

Owns the coalescing rule: a heartbeat only replaces the client's entry in memory (every read of
the latest state is served from here) and marks it dirty; `flush()` writes every dirty client,
the history samples that fell due and the events found meanwhile, in one transaction. A crash
loses at most one flush interval of heartbeats. It also finds the events: a workload entering
or leaving FATAL (at ingest) and a client turning online, stale or offline (at flush, never
during the central's start-up grace). Thread-safe: Waitress threads ingest and read while one
thread flushes. Imports the standard library and the other fleet modules; never daemon/,
child/, api/ or bottle.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mastercontrol.fleet.fleetstore import ClientState, Event, FleetStore, FlushBatch, Sample
from mastercontrol.fleet.intake import FATAL, Heartbeat
from mastercontrol.fleet.liveness import Liveness, LivenessRule
from mastercontrol.fleet.roster import RosterEntry


@dataclass(frozen=True)
class FlushStats:
    clients: int
    samples: int
    events: int
    seconds: float


class Coalescer:
    """In-memory latest states over a `FleetStore`; `sample_every` bounds the history."""

    def __init__(
        self,
        store: FleetStore,
        rule: LivenessRule,
        *,
        sample_every: float = 300.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.rule = rule  # its started_at is on the `monotonic` clock
        self.sample_every = sample_every
        self.clock = clock  # wall: last_seen, event times (display and the DB)
        self.monotonic = monotonic  # liveness: silence is never measured on wall time
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time (timer thread vs shutdown)
        self._states: dict[str, ClientState] = {}
        self._last_sample: dict[str, float] = {}  # monotonic time of each client's last sample
        self._heard: dict[str, float] = {}  # monotonic time of the last heartbeat since start
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._samples: list[Sample] = []
        self._events: list[Event] = []
        self.heartbeats = 0  # accepted since start (for /metrics)
        self.last_flush: FlushStats | None = None
        self._flushing_since: float | None = None  # time.monotonic() of the running flush

    def flush_running_for(self) -> float:
        """Seconds the flush now running has taken so far (0.0 when none is running)."""
        since = self._flushing_since  # one read: the flush thread may clear it meanwhile
        return 0.0 if since is None else max(0.0, time.monotonic() - since)

    # -- start-up and inventory ----------------------------------------------------------------

    def load(self) -> None:
        """Fill memory from the store (at start, before serving)."""
        states = {c.name: c for c in self.store.load_clients()}
        with self._lock:
            self._states = states

    def set_inventory(self, entries: Iterable[RosterEntry]) -> None:
        """Apply inventory.yaml: listed clients appear (never seen until a heartbeat); a client
        that left the inventory is forgotten if it never heartbeated, else kept as unlisted."""
        listed = {e.name: e for e in entries}
        with self._lock:
            for name, e in listed.items():
                old = self._states.get(name) or ClientState(name=name)
                new = dataclasses.replace(old, host=e.host, tags=e.tags, in_inventory=True)
                if new != old or name not in self._states:
                    self._states[name] = new
                    self._dirty.add(name)
                    self._removed.discard(name)
            for name, old in list(self._states.items()):
                if name in listed or not old.in_inventory:
                    continue
                if old.last_seen is None:
                    del self._states[name]
                    self._heard.pop(name, None)
                    self._dirty.discard(name)
                    self._removed.add(name)
                else:
                    self._states[name] = dataclasses.replace(old, in_inventory=False)
                    self._dirty.add(name)

    # -- heartbeats ----------------------------------------------------------------------------

    def ingest(self, hb: Heartbeat) -> ClientState:
        """Take an authenticated, validated heartbeat; returns the client's new state."""
        now = self.clock()
        heard = self.monotonic()
        name = hb.client_name
        with self._lock:
            self._heard[name] = heard
            old = self._states.get(name) or ClientState(name=name)
            new = dataclasses.replace(
                old,
                api_url=hb.api_url,
                first_seen=old.first_seen if old.first_seen is not None else now,
                last_seen=now,
                sent_at=hb.sent_at,
                daemon_version=hb.daemon_version,
                release=hb.release,
                workloads=hb.workloads,
                system=hb.system,
            )
            self._states[name] = new
            self._dirty.add(name)
            self._removed.discard(name)
            self.heartbeats += 1
            self._events.extend(_fatal_changes(old, hb, now))
            # Spaced on the monotonic clock (a wall step back must not stop the history for
            # as long); the sample's time is wall time, like everything in the DB.
            if heard - self._last_sample.get(name, float("-inf")) >= self.sample_every:
                self._last_sample[name] = heard
                self._samples.append(Sample(name, now, self.sample_every, hb.metrics()))
        return new

    # -- reads (all from memory) ---------------------------------------------------------------

    def get(self, name: str) -> ClientState | None:
        with self._lock:
            return self._states.get(name)

    def all(self) -> list[ClientState]:
        with self._lock:
            return list(self._states.values())

    def liveness(self, state: ClientState, now: float | None = None) -> Liveness:
        """`now` on the monotonic clock (one reading for a whole page), else read here."""
        return self.rule.status(
            state.last_seen is not None,
            self._heard.get(state.name),
            self.monotonic() if now is None else now,
            was_offline=state.status == Liveness.OFFLINE,
        )

    # -- flushing ------------------------------------------------------------------------------

    def flush(self) -> FlushStats:
        """Write what changed since the last flush in one transaction.

        If the write fails, everything taken is put back, so the next flush retries it (newer
        heartbeats that arrived meanwhile win)."""
        with self._flush_lock:
            started = time.monotonic()
            self._flushing_since = started
            batch = self._take()
            try:
                self.store.write(batch)
            except BaseException:
                self._put_back(batch)
                raise
            finally:
                self._flushing_since = None
            stats = FlushStats(
                len(batch.clients), len(batch.samples), len(batch.events),
                time.monotonic() - started,
            )  # fmt: skip
            self.last_flush = stats
            return stats

    def _take(self) -> FlushBatch:
        now = self.clock()
        mono = self.monotonic()
        with self._lock:
            if not self.rule.in_grace(mono):
                self._record_status_changes(now, mono)
            batch = FlushBatch(
                clients=[self._states[n] for n in self._dirty if n in self._states],
                removed=sorted(self._removed),
                samples=self._samples,
                events=self._events,
            )
            self._dirty, self._removed, self._samples, self._events = set(), set(), [], []
        return batch

    def _put_back(self, batch: FlushBatch) -> None:
        with self._lock:
            self._dirty.update(c.name for c in batch.clients)
            self._removed.update(n for n in batch.removed if n not in self._states)
            self._samples = batch.samples + self._samples
            self._events = batch.events + self._events

    def _record_status_changes(self, now: float, mono: float) -> None:
        """Called with the lock held: a status event for every client whose liveness moved
        (`now` wall time for the event, `mono` for the liveness)."""
        for name, state in self._states.items():
            status = self.liveness(state, mono)
            if status == state.status:
                continue
            detail = f"{state.status} -> {status}"
            self._events.append(Event(at=now, kind=str(status), client=name, detail=detail))
            self._states[name] = dataclasses.replace(state, status=str(status))
            self._dirty.add(name)


def _fatal_changes(old: ClientState, hb: Heartbeat, now: float) -> list[Event]:
    before = frozenset(str(w["name"]) for w in old.workloads if w.get("state") == FATAL)
    after = hb.fatal_workloads()
    events = [
        Event(at=now, kind="fatal_entered", client=hb.client_name, workload=w)
        for w in sorted(after - before)
    ]
    events += [
        Event(at=now, kind="fatal_left", client=hb.client_name, workload=w)
        for w in sorted(before - after)
    ]
    return events
