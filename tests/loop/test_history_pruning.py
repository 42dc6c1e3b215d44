"""The loop prunes the run history: at start and in housekeeping, one bounded chunk per pass,
coming back after a second while more is due (MasterLoop with a fake clock, a real sqlite file)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastercontrol.config.model import ConfigSet, DaemonConfig, DaemonSettings
from mastercontrol.daemon.loop import HOUSEKEEPING_INTERVAL, PRUNE_CATCH_UP, MasterLoop
from mastercontrol.engine.clock import FakeClock
from mastercontrol.store.open import open_store
from mastercontrol.store.prune import CHUNK
from mastercontrol.store.queries import Store
from tests.loop.fakes import FakeWorld

WALL = 1_800_000_000.0


def _history(store: Store, name: str, runs: int, at: float) -> None:
    """Ended runs of a workload that is no longer configured (nothing else to supervise)."""
    with store.batch():
        for i in range(runs):
            run_id = store.begin_run(name, at + i * 0.001, durable=False)
            store.end_run(run_id, at + i * 0.001, 0, None, "exit", None)


def _runs(db: Path) -> int:
    reader = sqlite3.connect(db)
    try:
        return int(reader.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
    finally:
        reader.close()


@pytest.fixture
def made(tmp_path: Path) -> Iterator[tuple[Path, Store, FakeClock]]:
    clock = FakeClock(wall=WALL)
    store, _ = open_store(tmp_path / "state.db", clock.wall())
    yield tmp_path, store, clock
    store.close()


def _loop(root: Path, store: Store, clock: FakeClock, **settings: object) -> MasterLoop:
    config = DaemonConfig(daemon=DaemonSettings(**settings))  # type: ignore[arg-type]
    loop = MasterLoop(
        config_dir=root,
        socket_path=root / "mc.sock",
        log_dir=root / "log",
        store=store,
        clock=clock,
        spawner=FakeWorld().spawn,
        daemon_config=config,
        load_config=lambda _: ConfigSet({}, config, []),
    )
    loop.start(ConfigSet({}, config, []))
    return loop


def test_history_is_pruned_at_start_and_by_housekeeping(
    made: tuple[Path, Store, FakeClock],
) -> None:
    root, store, clock = made
    _history(store, "gone", 50, WALL - 10)
    loop = _loop(root, store, clock, history_max_runs=5)
    try:
        assert _runs(root / "state.db") == 5  # a previous daemon's history, trimmed at once
        _history(store, "gone", 20, WALL)
        clock.advance(HOUSEKEEPING_INTERVAL - 1)
        loop.step(max_wait=0)
        assert _runs(root / "state.db") == 25  # not yet
        clock.advance(1)
        loop.step(max_wait=0)
        assert _runs(root / "state.db") == 5
    finally:
        loop.close()


def test_history_past_its_age_goes_at_the_next_housekeeping(
    made: tuple[Path, Store, FakeClock],
) -> None:
    root, store, clock = made
    loop = _loop(root, store, clock, history_days=1.0)
    try:
        _history(store, "agent", 10, WALL)
        clock.advance(86400 - HOUSEKEEPING_INTERVAL)  # one housekeeping short of a day
        loop.step(max_wait=0)
        assert _runs(root / "state.db") == 10
        clock.advance(HOUSEKEEPING_INTERVAL + 1)
        loop.step(max_wait=0)
        assert _runs(root / "state.db") == 0
    finally:
        loop.close()


def test_a_backlog_is_worked_off_one_chunk_a_second(made: tuple[Path, Store, FakeClock]) -> None:
    root, store, clock = made
    _history(store, "gone", 2 * CHUNK + 10, WALL - 10)
    loop = _loop(root, store, clock, history_max_runs=10)
    try:
        left = [_runs(root / "state.db")]
        for _ in range(3):
            clock.advance(PRUNE_CATCH_UP)
            loop.step(max_wait=0)
            left.append(_runs(root / "state.db"))
        assert left == [CHUNK + 10, 10, 10, 10]
    finally:
        loop.close()
