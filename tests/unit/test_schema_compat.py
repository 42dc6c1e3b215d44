"""The migration rule that keeps `fab rollback` working across a schema change: every step
declares the oldest schema version whose code can still use its database (COMPATIBLE_FROM), only
additive steps may declare an older one, and an older daemon opens a newer-but-compatible
database as it is while it refuses an incompatible one (store/migrations.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mastercontrol.errors import StoreError
from mastercontrol.store import migrations
from mastercontrol.store.db import connect
from mastercontrol.store.migrations import (
    ADDITIVE,
    COMPAT_KEY,
    COMPATIBLE_FROM,
    LATEST_VERSION,
    MIGRATIONS,
    compatible_from,
    migrate_state,
    user_version,
)
from mastercontrol.store.open import open_store

NOW = 1_700_000_000.0


def _additive(statement: str) -> bool:
    return any(p.match(statement) for p in ADDITIVE)


def test_every_migration_declares_a_compatibility_level_that_only_rises() -> None:
    assert len(COMPATIBLE_FROM) == len(MIGRATIONS), "append COMPATIBLE_FROM with each step"
    previous = 0
    for version, oldest in enumerate(COMPATIBLE_FROM, start=1):
        # An older daemon that could not read version N-1 cannot read version N either.
        assert previous <= oldest <= version, f"step {version}: COMPATIBLE_FROM {oldest}"
        previous = oldest


def test_a_step_that_older_code_may_still_use_is_additive_only() -> None:
    for version, (steps, oldest) in enumerate(
        zip(MIGRATIONS, COMPATIBLE_FROM, strict=True), start=1
    ):
        if oldest < version:
            for statement in steps:
                assert _additive(statement), (
                    f"step {version} declares COMPATIBLE_FROM {oldest} but is not additive: "
                    f"{statement.strip()!r} (give it COMPATIBLE_FROM {version})"
                )


@pytest.mark.parametrize(
    ("statement", "additive"),
    [
        ("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)", True),
        ("CREATE INDEX runs_ended ON runs (ended_at)", True),
        ("ALTER TABLE runs ADD COLUMN note TEXT", True),
        ("ALTER TABLE workloads ADD COLUMN tries INTEGER NOT NULL DEFAULT 0", True),
        ("ALTER TABLE workloads ADD COLUMN tries INTEGER NOT NULL", False),
        ("ALTER TABLE runs RENAME COLUMN text TO summary", False),
        ("ALTER TABLE runs DROP COLUMN text", False),
        ("DROP TABLE events", False),
        ("UPDATE workloads SET runs_started = 0", False),
        ("CREATE TRIGGER t AFTER INSERT ON runs BEGIN SELECT 1; END", False),
    ],
)
def test_the_additive_rule_tells_what_an_older_daemon_survives(
    statement: str, additive: bool
) -> None:
    assert _additive(statement) is additive


def test_a_new_database_records_its_compatibility_level(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "state.db", NOW)
    store.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    assert compatible_from(conn) == COMPATIBLE_FROM[-1]
    assert conn.execute("SELECT value FROM meta WHERE key = ?", (COMPAT_KEY,)).fetchone() == (
        str(COMPATIBLE_FROM[-1]),
    )
    conn.close()


def _migrate_as_newer_code(
    path: Path, monkeypatch: pytest.MonkeyPatch, step: tuple[str, ...], oldest: int
) -> None:
    """Bring the database at `path` to LATEST_VERSION + 1, as a release with one more step."""
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, step))
        m.setattr(migrations, "COMPATIBLE_FROM", (*COMPATIBLE_FROM, oldest))
        conn = connect(path)
        assert migrate_state(conn) == LATEST_VERSION + 1
        conn.close()


def test_an_older_daemon_uses_a_newer_compatible_database_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    store, _ = open_store(path, NOW)
    store.record_transition("once", None, "RUNNING", "start", NOW, pid=42)
    store.close()
    _migrate_as_newer_code(
        path, monkeypatch, ("ALTER TABLE runs ADD COLUMN note TEXT",), LATEST_VERSION
    )

    store, message = open_store(path, NOW)  # this code: one version behind
    assert message is None
    assert store.workload_rows()["once"].pid == 42  # nothing moved aside or lost
    store.record_transition("once", "RUNNING", "STOPPED", "stop", NOW + 1)
    store.close()
    conn = sqlite3.connect(path)
    assert user_version(conn) == LATEST_VERSION + 1  # never "downgraded"
    conn.close()

    # The newer code again (deploy after the rollback): nothing to migrate, its column is there.
    _migrate_again = connect(path)
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, ("THIS WOULD FAIL IF RUN AGAIN",)))
        m.setattr(migrations, "COMPATIBLE_FROM", (*COMPATIBLE_FROM, LATEST_VERSION))
        assert migrate_state(_migrate_again) == LATEST_VERSION + 1
    assert _migrate_again.execute("SELECT note FROM runs").fetchall() == []
    _migrate_again.close()


def test_an_older_daemon_refuses_an_incompatible_newer_database_and_leaves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.db"
    open_store(path, NOW)[0].close()
    step = ("ALTER TABLE runs RENAME COLUMN text TO summary",)
    _migrate_as_newer_code(path, monkeypatch, step, LATEST_VERSION + 1)
    with pytest.raises(StoreError, match=r"needs a mastercontrol that knows version \d+ or later"):
        open_store(path, NOW)
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []
    conn = sqlite3.connect(path)
    assert user_version(conn) == LATEST_VERSION + 1
    conn.close()
