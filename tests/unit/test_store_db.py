"""Opening the state database: pragmas, migrations, transactions and corrupt-file recovery."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from mastercontrol.errors import StoreError
from mastercontrol.store.db import connect, transaction
from mastercontrol.store.migrations import LATEST_VERSION, MIGRATIONS, migrate, user_version
from mastercontrol.store.open import open_store

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
STAMP = "20231114T221320Z"


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows}


def _populated_db(path: Path, rows: int = 2000) -> None:
    store, message = open_store(path, NOW)
    assert message is None
    with store.transaction():
        for i in range(rows):
            store.record_transition(f"w{i % 5}", "STOPPED", "RUNNING", "start", NOW + i, "x" * 100)
    store.close()  # checkpoints: everything is in the main file


# -- connect -----------------------------------------------------------------------------------


def test_connection_uses_wal_full_sync_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
        assert conn.isolation_level is None
    finally:
        conn.close()


def test_missing_parent_directory_is_created_private(tmp_path: Path) -> None:
    parent = tmp_path / "var" / "lib" / "mc"
    conn = connect(parent / "state.db")
    conn.close()
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700


def test_existing_parent_directory_mode_is_left_alone(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    connect(tmp_path / "state.db").close()
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755


# -- migrations --------------------------------------------------------------------------------


def test_empty_file_is_migrated_to_the_latest_version(tmp_path: Path) -> None:
    store, message = open_store(tmp_path / "state.db", NOW)
    store.close()
    assert message is None
    conn = sqlite3.connect(tmp_path / "state.db")
    assert user_version(conn) == LATEST_VERSION == len(MIGRATIONS)
    assert {"workloads", "runs", "events"} <= _tables(conn)
    conn.close()


def test_reopening_keeps_data_and_version(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store, _ = open_store(path, NOW)
    store.record_transition("a", None, "RUNNING", "start", NOW, pid=42)
    store.close()
    store, message = open_store(path, NOW)
    assert message is None
    assert store.workload_rows()["a"].pid == 42
    store.close()


def test_migrate_applies_only_the_steps_the_database_has_not_seen(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    assert migrate(conn) == LATEST_VERSION
    conn.execute("INSERT INTO workloads (name, state, updated_at) VALUES ('a', 'STOPPED', 0)")
    # Step 1 would fail with "table workloads already exists" if it ran again.
    steps = (*MIGRATIONS, ("ALTER TABLE workloads ADD COLUMN note TEXT",))
    assert migrate(conn, steps) == LATEST_VERSION + 1
    assert user_version(conn) == LATEST_VERSION + 1
    assert conn.execute("SELECT name, note FROM workloads").fetchall() == [("a", None)]
    assert migrate(conn, steps) == LATEST_VERSION + 1  # nothing left to do
    conn.close()


def test_an_older_database_gains_the_run_identity_columns(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    assert migrate(conn, MIGRATIONS[:1]) == 1
    conn.execute("INSERT INTO runs (workload, generation, pid, started_at) VALUES ('a', 0, 42, 0)")
    assert migrate(conn) == LATEST_VERSION
    # A run recorded before version 4 has no start time: the sweep will not trust its pid.
    assert conn.execute("SELECT pid, pid_started, scope FROM runs").fetchall() == [(42, None, None)]
    conn.close()


def test_failing_migration_step_leaves_the_previous_version_intact(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    migrate(conn)
    steps = (*MIGRATIONS, ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(StoreError):
        migrate(conn, steps)
    assert user_version(conn) == LATEST_VERSION
    assert "extra" not in _tables(conn)  # the step's first statement was rolled back
    conn.close()


def test_a_version_1_database_keeps_its_runs_and_gains_durations(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = connect(path)
    migrate(conn, MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO runs (workload, generation, started_at, ended_at, reason) "
        "VALUES ('a', 0, 10.0, 12.0, 'exit')"
    )
    conn.close()
    store, message = open_store(path, NOW)
    assert message is None
    (old,) = store.recent_runs("a")
    assert (old.started_at, old.ended_at, old.duration) == (10.0, 12.0, None)  # not guessed
    store.close()


def test_database_from_the_future_is_refused_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = connect(path)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this mastercontrol"):
        open_store(path, NOW)
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    conn = sqlite3.connect(path)
    assert user_version(conn) == LATEST_VERSION + 1
    conn.close()


# -- transaction() -----------------------------------------------------------------------------


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


def _add_event(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO events (workload, at, trigger) VALUES ('a', 0, 'x')")


def test_transaction_commits_on_success_and_rolls_back_on_error(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    migrate(conn)
    with transaction(conn):
        _add_event(conn)
    with pytest.raises(RuntimeError), transaction(conn):
        _add_event(conn)
        raise RuntimeError("boom")
    assert not conn.in_transaction
    assert _count(conn) == 1
    conn.close()


def test_nested_transaction_joins_the_outer_one(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = connect(path)
    migrate(conn)
    other = sqlite3.connect(path)
    with transaction(conn):
        with transaction(conn):
            _add_event(conn)
        assert conn.in_transaction  # the inner block did not commit
        assert _count(other) == 0
    assert _count(other) == 1
    other.close()
    conn.close()


def test_failing_inner_block_undoes_only_its_own_writes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    migrate(conn)
    with transaction(conn):
        _add_event(conn)
        with pytest.raises(RuntimeError), transaction(conn):
            _add_event(conn)
            raise RuntimeError("inner")
        _add_event(conn)
    assert _count(conn) == 2
    conn.close()


def test_sqlite_error_inside_transaction_becomes_store_error(tmp_path: Path) -> None:
    conn = connect(tmp_path / "state.db")
    migrate(conn)
    with pytest.raises(StoreError) as info, transaction(conn):
        _add_event(conn)
        conn.execute("INSERT INTO events (workload) VALUES ('no at, no trigger')")
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    assert _count(conn) == 0
    conn.close()


# -- corrupt files -----------------------------------------------------------------------------


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(16384))


def _text_file(path: Path) -> None:
    path.write_text("name: not_a_database\n" * 200)


def _truncated(path: Path) -> None:
    _populated_db(path)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)


def _scribbled(path: Path) -> None:
    # A valid header, garbage in the b-tree pages: only an integrity check notices.
    _populated_db(path)
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as f:
        f.seek(page)
        f.write(b"\xa5" * page * 4)


@pytest.mark.parametrize(
    "damage",
    [_random_bytes, _text_file, _truncated, _scribbled],
    ids=["random-bytes", "text-file", "truncated-db", "scribbled-pages"],
)
def test_damaged_database_is_moved_aside_and_replaced(tmp_path: Path, damage) -> None:
    path = tmp_path / "state.db"
    damage(path)
    original = path.read_bytes()

    store, message = open_store(path, NOW)

    aside = tmp_path / f"state.db.corrupt-{STAMP}"
    assert aside.read_bytes() == original
    assert message is not None and "\n" not in message
    assert str(path) in message and str(aside) in message
    # The fresh database is usable and empty.
    store.record_transition("a", None, "RUNNING", "start", NOW)
    assert list(store.workload_rows()) == ["a"]
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_database_whose_migration_fails_is_moved_aside(tmp_path: Path) -> None:
    # Another program's sqlite file at our path: a sound database our schema cannot go into.
    path = tmp_path / "state.db"
    foreign = sqlite3.connect(path)
    foreign.execute("CREATE TABLE workloads (id INTEGER, payload BLOB)")
    foreign.commit()
    foreign.close()

    store, message = open_store(path, NOW)

    assert message is not None and "already exists" in message
    aside = sqlite3.connect(tmp_path / f"state.db.corrupt-{STAMP}")
    assert aside.execute("SELECT sql FROM sqlite_master").fetchone()[0].endswith("BLOB)")
    aside.close()
    store.record_transition("a", None, "RUNNING", "start", NOW)
    store.close()


def test_wal_and_shm_files_move_with_the_damaged_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _random_bytes(path)
    Path(f"{path}-wal").write_bytes(b"old wal")
    Path(f"{path}-shm").write_bytes(b"old shm")

    store, message = open_store(path, NOW)
    store.close()

    aside = f"{path}.corrupt-{STAMP}"
    assert Path(f"{aside}-wal").read_bytes() == b"old wal"
    # sqlite rebuilds the -shm index on open (it holds no data); it moves along all the same.
    assert Path(f"{aside}-shm").exists()
    assert message is not None and "wal" in message and "shm" in message


def test_two_corruptions_in_the_same_second_keep_both_copies(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    copies = []
    for _ in range(2):
        _random_bytes(path)
        copies.append(path.read_bytes())
        store, message = open_store(path, NOW)
        store.close()
        assert message is not None
    assert (tmp_path / f"state.db.corrupt-{STAMP}").read_bytes() == copies[0]
    assert (tmp_path / f"state.db.corrupt-{STAMP}.1").read_bytes() == copies[1]


def test_unopenable_path_is_an_error_and_nothing_is_moved(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.mkdir()  # a directory where the file should be: not corruption, an operator problem
    with pytest.raises(StoreError, match=r"state\.db"):
        open_store(path, NOW)
    assert path.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["state.db"]


def test_database_locked_by_another_writer_is_an_error_and_nothing_is_moved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mastercontrol.store.db.BUSY_TIMEOUT_MS", 100)  # keep the test fast
    path = tmp_path / "state.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN IMMEDIATE")  # the new file still needs its migration: a write
    try:
        with pytest.raises(StoreError, match="locked"):
            open_store(path, NOW)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert not any("corrupt" in p.name for p in tmp_path.iterdir())
    store, message = open_store(path, NOW)
    assert message is None
    store.close()


def test_good_database_opens_without_message(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _populated_db(path, rows=50)
    before = time.time()
    store, message = open_store(path, before)
    assert message is None
    store.close()
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT COUNT(*) FROM events WHERE workload = 'w0'").fetchone() == (10,)
    reader.close()
