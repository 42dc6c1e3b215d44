"""Store queries against real sqlite files: transitions, runs, counting, orphans, pruning."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mastercontrol.engine.states import ProcState, Trigger
from mastercontrol.errors import StoreError
from mastercontrol.store.db import Database, connect
from mastercontrol.store.migrations import migrate
from mastercontrol.store.open import open_store
from mastercontrol.store.queries import RunRow, Store

T0 = 1_700_000_000.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s, message = open_store(db_path, T0)
    assert message is None
    yield s
    s.close()


def _reader(db_path: Path) -> sqlite3.Connection:
    """A second, independent connection: sees only what has been committed."""
    return sqlite3.connect(db_path)


@dataclass(frozen=True)
class Event:
    old_state: str | None
    new_state: str | None
    trigger: str
    detail: str | None


def _events(db_path: Path, name: str, limit: int = 100) -> list[Event]:
    """The workload's committed events, newest first (the daemon itself never reads them)."""
    reader = _reader(db_path)
    try:
        rows = reader.execute(
            "SELECT old_state, new_state, trigger, detail FROM events WHERE workload = ? "
            "ORDER BY id DESC LIMIT ?",
            (name, limit),
        ).fetchall()
    finally:
        reader.close()
    return [Event(*r) for r in rows]


def _integrity(db_path: Path) -> list[str]:
    reader = _reader(db_path)
    try:
        return [str(r[0]) for r in reader.execute("PRAGMA integrity_check")]
    finally:
        reader.close()


# -- transitions and events --------------------------------------------------------------------


def test_transition_sets_state_and_pid_and_appends_an_event(store: Store, db_path: Path) -> None:
    store.record_transition("web", None, "STARTING", "start", T0, "operator", pid=1234)
    # Enum members from the engine are stored as their plain values.
    store.record_transition("web", ProcState.STARTING, ProcState.RUNNING, Trigger.UP, T0 + 1)

    row = store.workload_rows()["web"]
    assert (row.state, row.pid, row.updated_at) == ("RUNNING", None, T0 + 1)
    assert type(row.state) is str
    events = _events(db_path, "web", 10)
    assert [(e.old_state, e.new_state, e.trigger, e.detail) for e in events] == [
        ("STARTING", "RUNNING", "up", None),
        (None, "STARTING", "start", "operator"),
    ]


def test_failure_inside_transaction_rolls_back_state_and_event_together(
    store: Store, db_path: Path
) -> None:
    store.record_transition("web", None, "STOPPED", "start", T0)
    with pytest.raises(RuntimeError), store.transaction():
        store.record_transition("web", "STOPPED", "STARTING", "start", T0 + 1)
        raise RuntimeError("spawn blew up")

    reader = _reader(db_path)
    assert reader.execute("SELECT state FROM workloads").fetchall() == [("STOPPED",)]
    assert reader.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)
    reader.close()


def test_transition_whose_event_insert_fails_leaves_no_state_change(
    store: Store, db_path: Path
) -> None:
    store.record_transition("web", None, "STOPPED", "start", T0)
    with pytest.raises(StoreError):
        # trigger is NOT NULL: the event insert fails after the state update ran.
        store.record_transition("web", "STOPPED", "RUNNING", None, T0 + 1)  # type: ignore[arg-type]
    assert store.workload_rows()["web"].state == "STOPPED"
    assert len(_events(db_path, "web", 10)) == 1


def test_writes_in_one_transaction_commit_together(store: Store, db_path: Path) -> None:
    reader = _reader(db_path)
    with store.transaction():
        store.record_transition("a", None, "RUNNING", "start", T0)
        store.set_last_tick("b", T0)
        assert reader.execute("SELECT COUNT(*) FROM workloads").fetchone() == (0,)
    assert reader.execute("SELECT COUNT(*) FROM workloads").fetchone() == (2,)
    reader.close()


def test_write_outside_a_transaction_commits_on_its_own(store: Store, db_path: Path) -> None:
    store.record_event("a", "tick_skipped", T0, "tick 12:05: previous run still going")
    assert not store.in_transaction
    reader = _reader(db_path)
    assert reader.execute("SELECT trigger, detail FROM events").fetchall() == [
        ("tick_skipped", "tick 12:05: previous run still going")
    ]
    reader.close()


def test_event_without_state_change_keeps_the_state(store: Store, db_path: Path) -> None:
    store.record_transition("agent", None, "RUNNING", "tick", T0)
    store.record_event("agent", "tick_skipped", T0 + 60, "previous run still going")
    assert store.workload_rows()["agent"].state == "RUNNING"
    skipped = _events(db_path, "agent", 1)[0]
    assert (skipped.trigger, skipped.old_state, skipped.new_state) == ("tick_skipped", None, None)


# -- runs --------------------------------------------------------------------------------------


def _child_begins_run_then_dies(db_path: Path, how: str) -> int:
    """Fork a child that opens its own Store, calls begin_run and dies without cleanup."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        try:
            child_store, _ = open_store(db_path, T0)
            child_store.begin_run("script", T0)
            if how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(0)
        finally:
            os._exit(70)
    _, status = os.waitpid(pid, 0)
    return status


@pytest.mark.parametrize("how", ["sigkill", "os_exit"])
def test_begin_run_is_committed_before_it_returns(db_path: Path, how: str) -> None:
    open_store(db_path, T0)[0].close()
    status = _child_begins_run_then_dies(db_path, how)
    if how == "sigkill":
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0

    store, message = open_store(db_path, T0 + 5)
    assert message is None  # an un-checkpointed WAL is not damage
    assert store.runs_started("script") == 1
    (run,) = store.recent_runs("script")
    assert (run.started_at, run.ended_at, run.pid) == (T0, None, None)
    store.close()


def test_begin_run_inside_an_open_transaction_is_refused(store: Store) -> None:
    with store.transaction(), pytest.raises(StoreError, match="inside an open transaction"):
        store.begin_run("script", T0)
    assert store.runs_started("script") == 0
    assert store.recent_runs("script") == []


def test_run_lifecycle_is_recorded(store: Store) -> None:
    run_id = store.begin_run("svc", T0)
    store.set_run_pid(run_id, 4321)
    store.end_run(run_id, T0 + 3, None, 9, "timeout", "killed", duration=2.75)
    assert store.recent_runs("svc") == [
        RunRow(run_id, "svc", 0, 4321, T0, T0 + 3, None, 9, "timeout", "killed", 2.75)
    ]


def test_ending_an_unknown_run_is_an_error(store: Store) -> None:
    with pytest.raises(StoreError, match="no run with id 99"):
        store.end_run(99, T0, 0, None, "exit", None)
    with pytest.raises(StoreError, match="no run with id 99"):
        store.set_run_pid(99, 1)


def test_runs_started_counts_only_the_current_generation(store: Store) -> None:
    for i in range(3):
        store.begin_run("script", T0 + i)
    store.begin_run("other", T0)
    assert store.runs_started("script") == 3

    store.reset_runs("script")  # operator starts the COMPLETED script again
    assert store.runs_started("script") == 0
    run_id = store.begin_run("script", T0 + 10)

    assert store.runs_started("script") == 1
    assert store.runs_started("other") == 1
    assert store.runs_started("never_seen") == 0
    assert store.recent_runs("script", 1)[0].id == run_id
    assert [r.generation for r in store.recent_runs("script")] == [1, 0, 0, 0]


def test_run_count_is_not_lowered_by_pruning(store: Store) -> None:
    for i in range(5):
        run_id = store.begin_run("script", T0 + i)
        store.end_run(run_id, T0 + i, 0, None, "exit", None)
    store.prune(T0 + 10, max_age=3600, max_runs=2)
    assert len(store.recent_runs("script")) == 2
    assert store.runs_started("script") == 5  # n_times must not run again


def test_orphan_runs_are_closed_as_daemon_lost(store: Store) -> None:
    done = store.begin_run("a", T0)
    store.end_run(done, T0 + 1, 0, None, "exit", "exit status 0")
    open_a = store.begin_run("a", T0 + 2)
    open_b = store.begin_run("b", T0 + 2)
    store.set_run_pid(open_b, 4242)

    assert store.close_orphan_runs(T0 + 100) == [
        ("a", open_a, None, None, None),
        ("b", open_b, 4242, None, None),
    ]

    runs = {r.id: r for r in store.recent_runs("a") + store.recent_runs("b")}
    assert (runs[open_a].ended_at, runs[open_a].reason) == (T0 + 100, "daemon_lost")
    assert (runs[open_b].ended_at, runs[open_b].reason) == (T0 + 100, "daemon_lost")
    assert (runs[done].ended_at, runs[done].reason) == (T0 + 1, "exit")
    assert store.close_orphan_runs(T0 + 200) == []


# -- workload flags ----------------------------------------------------------------------------


def test_operator_stops_survive_a_reopen(store: Store, db_path: Path) -> None:
    store.set_operator_stopped("a", True)
    store.set_operator_stopped("b", True)
    store.set_operator_stopped("b", False)
    store.close()
    reopened, _ = open_store(db_path, T0)
    assert reopened.operator_stopped_names() == {"a"}
    assert reopened.workload_rows()["a"].state == "STOPPED"  # row created by the flag
    reopened.close()


def test_last_tick_round_trips(store: Store) -> None:
    assert store.get_last_tick("agent") is None
    store.set_last_tick("agent", T0 + 300)
    assert store.get_last_tick("agent") == T0 + 300


def test_forgotten_workload_keeps_its_history_and_comes_back_in_a_new_generation(
    store: Store,
    db_path: Path,
) -> None:
    store.record_transition("old", None, "RUNNING", "start", T0)
    store.begin_run("old", T0)
    store.forget_workload("old")
    assert "old" not in store.workload_rows()
    assert len(_events(db_path, "old", 10)) == 1
    assert len(store.recent_runs("old")) == 1

    store.begin_run("old", T0 + 10)  # re-added to the config
    assert store.runs_started("old") == 1
    assert [r.generation for r in store.recent_runs("old")] == [1, 0]


# -- integrity ---------------------------------------------------------------------------------


def test_database_is_sound_after_many_writes(store: Store, db_path: Path) -> None:
    for step in range(200):
        with store.transaction():
            name = f"w{step % 7}"
            store.record_transition(name, "STOPPED", "STARTING", "start", T0 + step, pid=step)
            store.set_last_tick(name, T0 + step)
        run_id = store.begin_run(name, T0 + step)
        store.end_run(run_id, T0 + step + 1, step % 3, None, "exit", None)
        if step % 50 == 0:
            store.prune(T0 + step, max_age=100, max_runs=10)
    assert _integrity(db_path) == ["ok"]
    reader = _reader(db_path)
    assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert reader.execute("PRAGMA foreign_key_check").fetchall() == []
    reader.close()
    assert sum(r.runs_total for r in store.workload_rows().values()) == 200


def test_batch_commits_once_but_begin_run_is_durable_at_once(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "batch.db", T0)
    reader = sqlite3.connect(tmp_path / "batch.db")
    try:
        with store.batch():
            store.record_transition("svc", None, "STARTING", "start", T0)
            run_id = store.begin_run("svc", T0)
            # The run, and what came before it, are committed before the fork would happen.
            assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
            assert reader.execute("SELECT state FROM workloads").fetchone()[0] == "STARTING"
            store.record_transition("svc", "STARTING", "RUNNING", "up", T0 + 1)
            assert reader.execute("SELECT state FROM workloads").fetchone()[0] == "STARTING"
        assert reader.execute("SELECT state FROM workloads").fetchone()[0] == "RUNNING"
        assert store.runs_started("svc") == 1 and run_id > 0
    finally:
        reader.close()
        store.close()


def test_a_non_durable_run_in_a_batch_waits_for_the_batch_commit(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "lazy.db", T0)
    reader = sqlite3.connect(tmp_path / "lazy.db")
    try:
        with store.batch():
            store.begin_run("svc", T0, durable=False)
            assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
        assert reader.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        reader.close()
        store.close()


# -- the batch against a locked database -------------------------------------------------------


def _store_with_conn(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Store, sqlite3.Connection]:
    monkeypatch.setattr("mastercontrol.store.db.BUSY_TIMEOUT_MS", 50)  # keep the test fast
    conn = connect(path)
    migrate(conn)
    return Store(Database(conn)), conn


def test_begin_run_whose_batch_cannot_reopen_is_durable_and_raises_nothing_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process takes the write lock in the instant between begin_run's commit and the
    batch's reopening: the run stays recorded, the batch goes on write by write, and every
    failure is a StoreError (a raw sqlite3 error here once took the whole daemon down)."""
    path = tmp_path / "locked.db"
    store, conn = _store_with_conn(path, monkeypatch)
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    committed = False

    def grab_the_lock_after_the_commit(statement: str) -> None:
        nonlocal committed
        if statement == "COMMIT":
            committed = True
        elif statement == "BEGIN IMMEDIATE" and committed and not other.in_transaction:
            other.execute("BEGIN IMMEDIATE")  # the lock is free for this one instant

    try:
        with store.batch():
            store.record_transition("script", None, "STARTING", "start", T0)
            conn.set_trace_callback(grab_the_lock_after_the_commit)
            run_id = store.begin_run("script", T0)
            conn.set_trace_callback(None)
            assert other.in_transaction  # the race really happened
            with pytest.raises(StoreError, match="locked"):
                store.set_run_pid(run_id, 4242)  # on its own now, and the lock is taken
            other.execute("ROLLBACK")
            store.set_run_pid(run_id, 4242)  # the lock is back: writes go through again
        assert store.runs_started("script") == 1
        assert store.recent_runs("script")[0].pid == 4242
        assert _events(path, "script") == [Event(None, "STARTING", "start", None)]
    finally:
        other.close()
        store.close()


def test_sqlite_error_of_a_write_in_a_batch_is_a_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = _store_with_conn(tmp_path / "batch.db", monkeypatch)
    try:
        with store.batch():
            store.record_transition("web", None, "STOPPED", "loaded", T0)
            with pytest.raises(StoreError):
                # trigger is NOT NULL: the event insert fails inside the open batch.
                store.record_transition("web", "STOPPED", "RUNNING", None, T0)  # type: ignore[arg-type]
        assert store.workload_rows()["web"].state in ("STOPPED", "RUNNING")
    finally:
        store.close()
