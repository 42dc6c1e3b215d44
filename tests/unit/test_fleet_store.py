"""The sqlite fleet store on real files: schema, round trips, history bounds, deployments."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastercontrol.errors import StoreError
from mastercontrol.fleet.fleetstore import (
    FLEET_MIGRATIONS,
    ClientState,
    Event,
    FleetStore,
    FlushBatch,
    Sample,
    SqliteFleetStore,
)

NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteFleetStore]:
    s = SqliteFleetStore(tmp_path / "fleet.db")
    yield s
    s.close()


def sample(client: str, at: float, cpu: float, span: float = 300) -> Sample:
    return Sample(client, at, span, {"cpu_percent": cpu, "temperature_c": None})


def test_the_sqlite_store_satisfies_the_interface(store: SqliteFleetStore) -> None:
    typed: FleetStore = store  # mypy checks the Protocol; this keeps the test honest
    assert typed.load_clients() == []


def test_the_file_is_wal_and_versioned(store: SqliteFleetStore, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "fleet.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(FLEET_MIGRATIONS)
    conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "fleet.db")
    conn.execute(f"PRAGMA user_version = {len(FLEET_MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteFleetStore(tmp_path / "fleet.db")


def test_clients_round_trip_and_upsert(store: SqliteFleetStore, tmp_path: Path) -> None:
    a = ClientState(
        name="pi-01", host="10.0.0.1", tags=("lab",), in_inventory=True, first_seen=NOW,
        last_seen=NOW, sent_at=NOW - 1, daemon_version="1", release="r1",
        workloads=({"name": "w", "state": "RUNNING", "pid": 3},), system={"cpu_percent": 1.0},
        status="online",
    )  # fmt: skip
    store.write(FlushBatch(clients=[a, ClientState(name="pi-02")]))
    b = ClientState(name="pi-01", release="r2", status="stale")
    store.write(FlushBatch(clients=[b], removed=["pi-02"]))
    store.close()
    again = SqliteFleetStore(tmp_path / "fleet.db")
    assert again.load_clients() == [b]
    again.close()


def test_events_are_newest_first_and_filterable(store: SqliteFleetStore) -> None:
    store.write(
        FlushBatch(
            events=[
                Event(at=NOW, kind="online", client="a"),
                Event(at=NOW + 1, kind="fatal_entered", client="a", workload="w"),
                Event(at=NOW + 2, kind="offline", client="b"),
            ]
        )
    )
    new_id = store.add_event(
        Event(at=NOW + 3, kind="action", client="a", workload="w", actor="operator",
              action="restart", result="ok")
    )  # fmt: skip
    events = store.events()
    assert [e["id"] for e in events] == [new_id, 3, 2, 1]
    assert events[0]["actor"] == "operator" and events[0]["result"] == "ok"
    assert [e["kind"] for e in store.events(client="a", limit=2)] == ["action", "fatal_entered"]
    assert [e["id"] for e in store.events(before_id=3)] == [2, 1]
    assert [e["id"] for e in store.events(kind="offline")] == [3]
    assert [e["id"] for e in store.events(since=NOW + 2)] == [new_id, 3]


def test_history_is_per_metric_and_oldest_first(store: SqliteFleetStore) -> None:
    store.write(FlushBatch(samples=[sample("a", NOW + i * 300, float(i)) for i in range(5)]))
    store.write(FlushBatch(samples=[sample("b", NOW, 99.0)]))
    points = store.history("a", "cpu_percent", since=NOW + 600)
    assert [p["value"] for p in points] == [2.0, 3.0, 4.0]
    assert store.history("a", "temperature_c", since=0)[0]["value"] is None
    with pytest.raises(ValueError, match="unknown metric"):
        store.history("a", "cpu_percent; DROP TABLE history", since=0)


def test_prune_drops_old_rows_and_averages_hours(store: SqliteFleetStore) -> None:
    hour0 = (NOW // 3600) * 3600 - 10 * 3600
    rows = [sample("a", hour0 + i * 300, float(i)) for i in range(24)]  # two full hours
    rows.append(sample("a", hour0 - 30 * 86400, 1.0))  # past retention
    rows.append(sample("a", NOW - 60, 50.0))  # recent: kept as is
    store.write(FlushBatch(samples=rows))
    store.prune(NOW, retention=7 * 86400, full_resolution=3600)
    points = store.history("a", "cpu_percent", since=0)
    assert [(p["at"], p["span"], p["value"]) for p in points] == [
        (hour0, 3600, sum(range(12)) / 12),
        (hour0 + 3600, 3600, sum(range(12, 24)) / 12),
        (NOW - 60, 300, 50.0),
    ]
    store.prune(NOW, retention=7 * 86400, full_resolution=3600)  # idempotent
    assert len(store.history("a", "cpu_percent", since=0)) == 3


def test_deployments_are_created_patched_and_listed(store: SqliteFleetStore) -> None:
    d = store.create_deployment({"release": "r1", "actor": "fab", "status": "running"}, NOW)
    assert d["id"] == 1 and d["batches"] == [] and d["status"] == "running"
    batches = [{"index": 0, "status": "ok", "clients": [{"name": "a", "status": "ok"}]}]
    patched = store.update_deployment(1, {"batches": batches, "status": "succeeded"}, NOW + 5)
    assert patched is not None
    assert patched["batches"] == batches and patched["updated_at"] == NOW + 5
    assert patched["release"] == "r1"
    assert store.update_deployment(99, {"status": "x"}, NOW) is None
    store.create_deployment({}, NOW + 10)
    assert [x["id"] for x in store.deployments()] == [2, 1]
    assert store.deployments()[0]["status"] == "pending"
    assert store.deployment(42) is None


def test_each_thread_gets_its_own_connection(store: SqliteFleetStore) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                store.add_event(Event(at=NOW + i, kind="action", client=f"c{n}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(store.events(limit=1000)) == 80


def test_size_counts_the_file_and_its_wal(store: SqliteFleetStore) -> None:
    before = store.size_bytes()
    store.write(FlushBatch(samples=[sample("a", NOW + i, 1.0) for i in range(2000)]))
    assert store.size_bytes() > before > 0


WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


def test_every_write_goes_through_the_one_transaction_door(store: SqliteFleetStore) -> None:
    """sqlite's own trace of every statement: no write outside BEGIN IMMEDIATE ... COMMIT."""
    trace: list[str] = []
    store._conn().set_trace_callback(trace.append)
    state = ClientState(name="pi-01", host="h", last_seen=NOW)
    store.write(FlushBatch(clients=[state], samples=[sample("pi-01", NOW, 1.0)],
                           events=[Event(at=NOW, kind="online", client="pi-01")]))  # fmt: skip
    store.write(FlushBatch(removed=["pi-01"]))
    store.add_event(Event(at=NOW, kind="action", client="pi-01", action="restart"))
    dep = store.create_deployment({"release": "r1"}, NOW)
    store.update_deployment(dep["id"], {"status": "ok"}, NOW + 1)
    store.prune(NOW + 10 * 86400, retention=7 * 86400, full_resolution=86400)
    open_tx = False
    writes = 0
    for statement in trace:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if verb == "BEGIN":
            assert "IMMEDIATE" in statement.upper() and not open_tx, statement
            open_tx = True
        elif verb in ("COMMIT", "ROLLBACK"):
            open_tx = False
        elif verb in WRITES:
            assert open_tx, f"a write outside transaction(): {statement}"
            writes += 1
    assert writes >= 7 and not open_tx
