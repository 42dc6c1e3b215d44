"""The state database's identity against its marker: a first start, a deleted, corrupt or
replaced database, and a file that vanishes under the open connection (real sqlite files)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mastercontrol.daemon.history import History, config_digest
from mastercontrol.engine.clock import FakeClock
from mastercontrol.errors import StoreError
from mastercontrol.store import identity
from mastercontrol.store.identity import FileWatch, marker_path
from mastercontrol.store.open import open_store, restore_in_place
from mastercontrol.store.queries import Store

NOW = 1_700_000_000.0


def _open(path: Path) -> tuple[Store, bool, str | None]:
    existed = path.exists()
    store, note = open_store(path, NOW)
    return store, existed, note


def _verify(path: Path) -> identity.LostState | None:
    store, existed, note = _open(path)
    try:
        return identity.verify(store, path, existed, note, NOW)
    finally:
        store.close()


def test_first_start_writes_the_marker_and_later_starts_match(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _verify(db) is None
    assert marker_path(db).read_text().strip()
    assert _verify(db) is None


def test_deleted_database_is_lost_and_stays_lost_until_accepted(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _verify(db) is None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    lost = _verify(db)
    assert lost is not None and "deleted" in lost.reason
    again = _verify(db)  # the reason is kept in the new database
    assert again is not None and again.reason == lost.reason
    store, _, _ = _open(db)
    identity.accept(store, db)
    store.close()
    assert _verify(db) is None


def test_replaced_database_is_lost(tmp_path: Path) -> None:
    db, other = tmp_path / "state.db", tmp_path / "other" / "state.db"
    assert _verify(db) is None
    assert _verify(other) is None
    os.replace(other, db)
    lost = _verify(db)
    assert lost is not None and "replaced" in lost.reason


def test_corrupt_database_moved_aside_is_lost(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _verify(db) is None
    db.write_bytes(b"not a database at all" * 100)
    lost = _verify(db)
    assert lost is not None and "moved it to" in lost.reason


def test_a_lost_marker_alone_is_rewritten_without_a_report(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert _verify(db) is None
    marker_path(db).unlink()
    assert _verify(db) is None
    assert marker_path(db).exists()


def test_a_symlinked_marker_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    (tmp_path / "elsewhere").write_text("x\n")
    marker_path(db).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreError, match="state marker"):
        _verify(db)


def test_deleted_file_is_written_back_from_the_open_connection(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store, _, _ = _open(db)
    watch = FileWatch(db)
    store.begin_run("batch", NOW)
    store.set_operator_stopped("svc", True)
    assert watch.problem() is None
    db.unlink()
    assert watch.problem() == "deleted"
    message = restore_in_place(store, db, "deleted", NOW)
    assert "nothing" not in message and "kept" in message
    watch.rearm()
    assert watch.problem() is None
    assert store.runs_started("batch") == 1 and store.operator_stopped_names() == {"svc"}
    store.close()
    reopened, _, _ = _open(db)
    assert reopened.runs_started("batch") == 1
    reopened.close()


def test_a_file_put_in_its_place_is_moved_aside_not_overwritten(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store, _, _ = _open(db)
    store.begin_run("batch", NOW)
    os.replace(db, tmp_path / "moved.db")
    db.write_bytes(b"someone else's file")
    assert FileWatch(db).problem() is None  # a new watch takes the new file as its own
    message = restore_in_place(store, db, "replaced by another file", NOW)
    aside = next(tmp_path.glob("state.db.replaced-*"))
    assert str(aside) in message and aside.read_bytes() == b"someone else's file"
    assert store.runs_started("batch") == 1
    store.close()


def test_database_failures_are_logged_once_a_minute_with_the_count_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, _, _ = _open(tmp_path / "state.db")
    clock = FakeClock()
    history = History(store, clock)
    with caplog.at_level(logging.ERROR, logger="mastercontrol.daemon.history"):
        for _ in range(41):
            history.failed("state database commit failed", StoreError("disk is full"))
            clock.advance(0.6)
        assert len(caplog.records) == 1
        clock.advance(60)
        history.failed("state database commit failed", StoreError("disk is full"))
    assert len(caplog.records) == 2
    assert "40 more not logged" in caplog.records[1].getMessage()
    assert history.errors == 42
    store.close()


def test_config_digest_ignores_the_file_location_only() -> None:
    from dataclasses import replace

    from mastercontrol.config.model import RunMode, WorkloadConfig, WorkloadType

    cfg = WorkloadConfig(
        name="web", type=WorkloadType.SERVICE, run_mode=RunMode.FOREVER, module="m"
    )
    assert config_digest(cfg) == config_digest(replace(cfg, source="/x.yaml", source_line=3))
    assert config_digest(cfg) != config_digest(replace(cfg, module="other"))
    assert config_digest(cfg, "r1") != config_digest(cfg, "r2")  # a release switch: new code
