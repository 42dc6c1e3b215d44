"""History pruning against real sqlite files: age, counts per workload, bounded chunks, turns."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastercontrol.config.schema import DAEMON, by_name
from mastercontrol.store.open import open_store
from mastercontrol.store.prune import EVENTS_PER_RUN, WORKLOADS_PER_CALL
from mastercontrol.store.queries import Store

T0 = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s, _ = open_store(db_path, T0)
    yield s
    s.close()


def _ended_runs(store: Store, name: str, count: int, start: float, step: float = 1.0) -> None:
    with store.batch():
        for i in range(count):
            run_id = store.begin_run(name, start + i * step, durable=False)
            store.end_run(run_id, start + i * step, 0, None, "exit", f"#{i}")


def _events(store: Store, name: str, count: int, start: float) -> None:
    with store.transaction():
        for i in range(count):
            store.record_event(name, "tick_skipped", start + i, f"#{i}")


def _count(db_path: Path, table: str, name: str) -> int:
    reader = sqlite3.connect(db_path)
    try:
        sql = f"SELECT COUNT(*) FROM {table} WHERE workload = ?"
        return int(reader.execute(sql, (name,)).fetchone()[0])
    finally:
        reader.close()


def test_keeps_the_newest_runs_and_events_of_each_workload_and_every_open_run(
    store: Store, db_path: Path
) -> None:
    open_run = store.begin_run("a", T0)  # the oldest run, still going
    _ended_runs(store, "a", 10, T0 + 1)
    _ended_runs(store, "b", 3, T0 + 1)
    _events(store, "a", 5 * EVENTS_PER_RUN, T0)

    pruned = store.prune(T0 + 100, max_age=DAY, max_runs=4)

    runs = store.recent_runs("a", 100)
    # The 4 newest, and the open run however old it is.
    assert [r.text for r in runs] == ["#9", "#8", "#7", "#6", None]
    assert runs[-1].id == open_run
    assert len(store.recent_runs("b", 100)) == 3
    assert _count(db_path, "events", "a") == 4 * EVENTS_PER_RUN
    assert (pruned.runs, pruned.events, pruned.more) == (6, EVENTS_PER_RUN, False)
    assert store.runs_started("a") == 11  # counts never go down with the history
    again = store.prune(T0 + 100, max_age=DAY, max_runs=4)
    assert (again.runs, again.events) == (0, 0)


def test_history_older_than_max_age_goes_but_a_run_still_going_stays(
    store: Store, db_path: Path
) -> None:
    still_going = store.begin_run("svc", T0)
    _ended_runs(store, "svc", 10, T0, step=10.0)  # ended at T0 .. T0 + 90
    _events(store, "svc", 10, T0)  # at T0 .. T0 + 9

    pruned = store.prune(T0 + 100, max_age=45, max_runs=1000)  # cutoff T0 + 55

    assert [r.text for r in store.recent_runs("svc", 100)] == ["#9", "#8", "#7", "#6", None]
    assert store.recent_runs("svc", 100)[-1].id == still_going
    assert _count(db_path, "events", "svc") == 0
    assert (pruned.runs, pruned.events) == (6, 10)


def test_one_call_deletes_at_most_its_limit_and_says_more_is_due(
    store: Store, db_path: Path
) -> None:
    _ended_runs(store, "agent", 50, T0)
    calls = []
    for _ in range(20):  # bounded: 45 rows at 7 per call take 7 calls
        pruned = store.prune(T0 + 100, max_age=DAY, max_runs=5, limit=7)
        calls.append(pruned.runs)
        assert pruned.runs <= 7
        if not pruned.more:
            break
    assert calls == [7, 7, 7, 7, 7, 7, 3]
    assert len(store.recent_runs("agent", 100)) == 5


def test_workloads_take_turns_for_the_count_check(store: Store) -> None:
    names = [f"w{i:02d}" for i in range(WORKLOADS_PER_CALL + 4)]
    for name in names:
        _ended_runs(store, name, 3, T0)

    store.prune(T0 + 10, max_age=DAY, max_runs=1)
    trimmed = [n for n in names if len(store.recent_runs(n, 10)) == 1]
    assert trimmed == names[:WORKLOADS_PER_CALL]

    store.prune(T0 + 10, max_age=DAY, max_runs=1)  # the next call goes on where this one ended
    assert all(len(store.recent_runs(n, 10)) == 1 for n in names)


def test_history_of_a_workload_that_left_the_config_is_pruned_too(store: Store) -> None:
    _ended_runs(store, "gone", 5, T0)
    store.forget_workload("gone")
    store.prune(T0 + 10, max_age=DAY, max_runs=2)
    assert len(store.recent_runs("gone", 10)) == 2


def test_pruning_inside_a_batch_joins_its_commit(store: Store, db_path: Path) -> None:
    _ended_runs(store, "svc", 5, T0)
    reader = sqlite3.connect(db_path)
    try:
        with store.batch():
            store.prune(T0 + 10, max_age=DAY, max_runs=1)
            assert reader.execute("SELECT COUNT(*) FROM runs").fetchone() == (5,)
        assert reader.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("max_age", "max_runs", "limit"), [(0, 10, 10), (DAY, 0, 10), (DAY, 10, 0), (-1, 10, 10)]
)
def test_retention_must_be_positive(
    store: Store, max_age: float, max_runs: int, limit: int
) -> None:
    with pytest.raises(ValueError):
        store.prune(T0, max_age, max_runs, limit)


def test_the_documented_event_allowance_is_the_one_pruning_uses() -> None:
    setting = by_name(DAEMON)["history_max_runs"]
    assert f"up to {EVENTS_PER_RUN} times as many" in setting.help
