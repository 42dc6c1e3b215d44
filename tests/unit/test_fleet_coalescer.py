"""Coalesced heartbeats over a real sqlite fleet store, with an injected wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.errors import StoreError
from mastercontrol.fleet.coalescer import Coalescer
from mastercontrol.fleet.fleetstore import FlushBatch, SqliteFleetStore
from mastercontrol.fleet.intake import Heartbeat, parse_heartbeat
from mastercontrol.fleet.liveness import LivenessRule
from mastercontrol.fleet.roster import RosterEntry

START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteFleetStore]:
    s = SqliteFleetStore(tmp_path / "fleet.db")
    yield s
    s.close()


def make(store: SqliteFleetStore, clock: Clock, started_at: float = START) -> Coalescer:
    rule = LivenessRule(stale_after=90, offline_after=300, started_at=started_at)
    c = Coalescer(store, rule, sample_every=300, clock=clock, monotonic=clock)
    c.load()
    return c


def hb(name: str, **over: Any) -> Heartbeat:
    body: dict[str, Any] = {"client_name": name, "sent_at": START, "release": "r1",
                            "system": {"cpu_percent": 5.0}}  # fmt: skip
    body.update(over)
    return parse_heartbeat(body)


def kinds(store: SqliteFleetStore) -> list[tuple[str | None, str]]:
    return [(e["client"], e["kind"]) for e in reversed(store.events(limit=1000))]


def test_heartbeats_are_served_from_memory_and_written_once_per_flush(
    store: SqliteFleetStore, clock: Clock
) -> None:
    c = make(store, clock)
    for i in range(50):
        c.ingest(hb("pi-01", release=f"r{i}"))
    state = c.get("pi-01")
    assert state is not None and state.release == "r49"
    assert store.load_clients() == []  # nothing written yet
    stats = c.flush()
    assert stats.clients == 1 and stats.samples == 1
    assert [s.release for s in store.load_clients()] == ["r49"]
    assert c.flush().clients == 0  # nothing new, nothing written


def test_a_restarted_central_starts_from_the_last_flush(
    store: SqliteFleetStore, clock: Clock
) -> None:
    c = make(store, clock)
    c.ingest(hb("pi-01"))
    c.flush()
    c.ingest(hb("pi-01", release="lost-in-the-crash"))
    # a crash here: the second heartbeat was never flushed
    again = make(store, clock)
    state = again.get("pi-01")
    assert state is not None and state.release == "r1" and state.last_seen == START


def test_inventory_clients_appear_before_their_first_heartbeat(
    store: SqliteFleetStore, clock: Clock
) -> None:
    c = make(store, clock)
    c.set_inventory([RosterEntry("pi-01", "10.0.0.1", tags=("lab",)), RosterEntry("pi-02", "h")])
    state = c.get("pi-01")
    assert state is not None and state.in_inventory and state.tags == ("lab",)
    assert str(c.liveness(state)) == "never_seen"
    c.ingest(hb("pi-01"))
    c.flush()
    # pi-02 (never seen) leaves the inventory and is forgotten; pi-01 (seen) stays, unlisted
    c.set_inventory([])
    assert c.get("pi-02") is None
    pi01 = c.get("pi-01")
    assert pi01 is not None and not pi01.in_inventory
    c.flush()
    assert [(s.name, s.in_inventory) for s in store.load_clients()] == [("pi-01", False)]


def test_status_changes_become_events_but_not_during_the_grace(
    store: SqliteFleetStore, clock: Clock
) -> None:
    c = make(store, clock)
    c.ingest(hb("pi-01"))
    c.flush()  # in grace: no status recorded yet
    assert kinds(store) == []
    clock.now = START + 100  # grace over, 100 s silent
    c.flush()
    assert kinds(store) == [("pi-01", "stale")]
    clock.now = START + 400
    c.flush()
    c.ingest(hb("pi-01"))
    c.flush()
    assert kinds(store) == [("pi-01", "stale"), ("pi-01", "offline"), ("pi-01", "online")]
    c.flush()
    assert len(kinds(store)) == 3  # no repeats


def test_after_a_restart_an_offline_client_is_not_reported_online_then_offline_again(
    store: SqliteFleetStore, clock: Clock
) -> None:
    c = make(store, clock)
    c.ingest(hb("pi-01"))
    clock.now = START + 400
    c.flush()
    assert kinds(store) == [("pi-01", "offline")]
    clock.now = START + 10_000
    again = make(store, clock, started_at=clock.now)
    state = again.get("pi-01")
    assert state is not None and str(again.liveness(state)) == "offline"
    clock.now += 1000
    again.flush()
    assert kinds(store) == [("pi-01", "offline")]


def test_fatal_entered_and_left_are_events(store: SqliteFleetStore, clock: Clock) -> None:
    c = make(store, clock)
    running = [{"name": "w", "state": "RUNNING"}]
    fatal = [{"name": "w", "state": "FATAL"}]
    c.ingest(hb("pi-01", workloads=running))
    c.ingest(hb("pi-01", workloads=fatal))
    c.ingest(hb("pi-01", workloads=fatal))
    c.ingest(hb("pi-01", workloads=running))
    c.flush()
    assert kinds(store) == [("pi-01", "fatal_entered"), ("pi-01", "fatal_left")]


def test_history_keeps_one_sample_per_interval(store: SqliteFleetStore, clock: Clock) -> None:
    c = make(store, clock)
    for i in range(60):  # 30 minutes of heartbeats every 30 s
        clock.now = START + 30 * i
        c.ingest(hb("pi-01", system={"cpu_percent": float(i)}))
    c.flush()
    values = [p["value"] for p in store.history("pi-01", "cpu_percent", since=0)]
    assert values == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]


def test_a_wall_clock_step_back_does_not_stop_the_history(store: SqliteFleetStore) -> None:
    wall, mono = Clock(), Clock()
    rule = LivenessRule(stale_after=90, offline_after=300, started_at=START)
    c = Coalescer(store, rule, sample_every=300, clock=wall, monotonic=mono)
    c.ingest(hb("pi-01", system={"cpu_percent": 1.0}))
    wall.now -= 3600  # the control host's clock steps an hour back
    mono.now += 300  # while five minutes really pass
    c.ingest(hb("pi-01", system={"cpu_percent": 2.0}))
    c.flush()
    # The spacing is real time; `at` stays wall time (so the second sorts first).
    values = [p["value"] for p in store.history("pi-01", "cpu_percent", since=0)]
    assert values == [2.0, 1.0]


def test_a_failed_flush_keeps_everything_for_the_next(
    store: SqliteFleetStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = make(store, clock)
    c.ingest(hb("pi-01", workloads=[{"name": "w", "state": "FATAL"}]))
    real_write = store.write

    def failing(batch: FlushBatch) -> None:
        raise StoreError("disk full")

    monkeypatch.setattr(store, "write", failing)
    with pytest.raises(StoreError):
        c.flush()
    c.ingest(hb("pi-02"))
    monkeypatch.setattr(store, "write", real_write)
    stats = c.flush()
    assert stats.clients == 2 and stats.events == 1 and stats.samples == 2
    assert {s.name for s in store.load_clients()} == {"pi-01", "pi-02"}
