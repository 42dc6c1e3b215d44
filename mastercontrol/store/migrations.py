"""The schema of the state database as an ordered, append-only list of migration steps.

`MIGRATIONS[i]` takes a database from `PRAGMA user_version` i to i + 1, in one transaction
together with the version bump, so a crash mid-migration leaves the previous version intact.
Never edit or reorder a released step: append a new one. Sits above `store/db.py` (its
`transaction()`); imports only the standard library, `mastercontrol.errors` and that module,
never queries or open.

Rollback across a schema change (docs/architecture.md, "State database migrations"): every
step declares in `COMPATIBLE_FROM` the oldest schema version whose code can still read and
write a database at the step's version, and the step records it in `meta` (`compat_version`,
in the same transaction as the version bump). An older release's daemon (`fab rollback`) opens
a newer database whose `compat_version` it reaches, as it is and without touching the version;
it refuses only an incompatible one (exit 78, the database left alone). A step may declare an
older level only when it is additive: new tables, new indexes, new columns that are nullable or
have a default (`ADDITIVE` below; tests/unit/test_schema_compat.py enforces it); newer code then
accepts rows written by an older daemon after the step (NULL or the default in its columns).

Schema (version 4). Times are wall-clock epoch seconds (floats), for display and history only;
the daemon schedules on its own monotonic clock. Durations are measured on the monotonic clock
and stored as measured: never `ended_at - started_at`, which a clock step makes negative.

workloads: one row per workload the daemon currently knows (deleted when it leaves the config).
    name              TEXT PRIMARY KEY
    state             TEXT NOT NULL   ProcState value, stored verbatim ("RUNNING", ...)
    pid               INTEGER         pid of the live child, NULL when none
    operator_stopped  INTEGER 0/1     the operator asked for a stop: survives daemon restarts
    run_generation    INTEGER         bumped by reset_runs (an operator restarts a COMPLETED
                                      script); runs.generation refers to it
    runs_started      INTEGER         runs begun in run_generation: the durable n_times count.
                                      A counter, not COUNT(runs), so pruning history never
                                      lets a script run more than max_runs times
    runs_total        INTEGER         runs begun since the row was created (all generations)
    last_tick         REAL            wall time of the last cron tick handled (run or skipped)
    config_digest     TEXT            digest of the config the state was reached under
                                      (written since version 3): FATAL is kept across a
                                      daemon restart only while it matches
    updated_at        REAL NOT NULL   wall time of the last write to the row

Version 3 adds:
workloads.restarts INTEGER        automatic restarts (kept with FATAL across daemon restarts)
meta: the database's own facts, one row per key (key TEXT PRIMARY KEY, value TEXT NOT NULL):
    identity      random id written at creation; the marker `<db>.id` beside the file holds
                  the id of the database the daemon last used (store/identity.py)
    lost_reason   set in a database that replaced a lost one, until the operator accepts
    accepted:NAME the operator accepted the lost count of NAME (`mastercontrol-ctl reset`)

runs: one row per run, inserted before the fork (pid NULL until known).
    id INTEGER PRIMARY KEY, workload TEXT, generation INTEGER, pid INTEGER,
    started_at REAL NOT NULL, ended_at REAL (NULL while running),
    exit_code INTEGER, signal INTEGER (number that ended it, or NULL),
    reason TEXT (exit, signal, timeout, memory, stopped, spawn_failed, daemon_lost, ...),
    text TEXT (human-readable summary, e.g. "exit status 1", "killed by SIGKILL"),
    duration REAL (version 2: seconds the run lasted by the master's monotonic clock; NULL while
    running, for a run the daemon lost, and for runs recorded before version 2),
    pid_started INTEGER (version 4: start time of pid in clock ticks since boot, /proc/<pid>/stat
    field 22; with the pid, the identity the restart sweep checks before it signals anything),
    scope TEXT (version 4: the run's cgroup directory, or its MASTERCONTROL_RUN marker)

events: state changes and notable non-changes (trigger "tick_skipped"), per workload.
    id INTEGER PRIMARY KEY, workload TEXT, at REAL, old_state TEXT, new_state TEXT
    (both NULL for an event without a state change), trigger TEXT NOT NULL, detail TEXT

runs and events deliberately have no foreign key to workloads: history outlives the workload's
row (forget_workload) and is bounded by Store.prune (daemon.history_days and
history_max_runs, applied by the loop's housekeeping) instead.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

from mastercontrol.errors import StoreError
from mastercontrol.store.db import transaction

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: initial schema
    (
        """
        CREATE TABLE workloads (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            pid INTEGER,
            operator_stopped INTEGER NOT NULL DEFAULT 0 CHECK (operator_stopped IN (0, 1)),
            run_generation INTEGER NOT NULL DEFAULT 0,
            runs_started INTEGER NOT NULL DEFAULT 0,
            runs_total INTEGER NOT NULL DEFAULT 0,
            last_tick REAL,
            config_digest TEXT,
            updated_at REAL NOT NULL
        )
        """,
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            workload TEXT NOT NULL,
            generation INTEGER NOT NULL,
            pid INTEGER,
            started_at REAL NOT NULL,
            ended_at REAL,
            exit_code INTEGER,
            signal INTEGER,
            reason TEXT,
            text TEXT
        )
        """,
        "CREATE INDEX runs_workload_id ON runs (workload, id)",
        # close_orphan_runs at every start looks for open runs only.
        "CREATE INDEX runs_open ON runs (id) WHERE ended_at IS NULL",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            workload TEXT NOT NULL,
            at REAL NOT NULL,
            old_state TEXT,
            new_state TEXT,
            trigger TEXT NOT NULL,
            detail TEXT
        )
        """,
        "CREATE INDEX events_workload_id ON events (workload, id)",
    ),
    # 1 -> 2: run durations by the monotonic clock (a wall-clock step made them negative)
    ("ALTER TABLE runs ADD COLUMN duration REAL",),
    # 2 -> 3: the database's identity (a lost database is told from a first start) and the
    # restart count kept with FATAL
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "ALTER TABLE workloads ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0",
    ),
    # 3 -> 4: what identifies a run's processes for the restart sweep
    (
        "ALTER TABLE runs ADD COLUMN pid_started INTEGER",
        "ALTER TABLE runs ADD COLUMN scope TEXT",
    ),
)

# COMPATIBLE_FROM[i]: the oldest schema version whose code may use a database at version i + 1.
# Steps 1-4 predate the rule (their code refused any newer database), so each names itself.
COMPATIBLE_FROM: tuple[int, ...] = (1, 2, 3, 4)

LATEST_VERSION = len(MIGRATIONS)

# The statements a step may hold when it declares an older COMPATIBLE_FROM than its own version:
# an older daemon ignores a table, index or column it does not know, and its inserts still
# succeed (a new column is nullable or has a default). Renames, drops, type or constraint
# changes, triggers and NOT NULL without DEFAULT are not additive: such a step names itself.
ADDITIVE = (
    re.compile(r"\s*CREATE\s+TABLE\s+\w+\s*\(", re.I),
    re.compile(r"\s*CREATE\s+(UNIQUE\s+)?INDEX\s", re.I),
    re.compile(
        r"\s*ALTER\s+TABLE\s+\w+\s+ADD\s+COLUMN\s+\w+\s+\w+"
        r"(\s+NOT\s+NULL\s+DEFAULT\s+\S+|\s+DEFAULT\s+\S+)?\s*$",
        re.I,
    ),
)

COMPAT_KEY = "compat_version"
_META_SINCE = 3  # the meta table exists from schema version 3


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database header (0 for a new file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def compatible_from(conn: sqlite3.Connection) -> int:
    """The oldest schema version whose code may use this state database: its `compat_version`
    marker, else (a database from before the rule, or a damaged marker) its own version."""
    version = user_version(conn)
    if version < _META_SINCE:
        return version
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (COMPAT_KEY,)).fetchone()
    except sqlite3.OperationalError:  # no meta table after all: nothing declared
        return version
    try:
        return min(int(row[0]), version) if row is not None else version
    except (TypeError, ValueError):
        return version


def incompatible(conn: sqlite3.Connection, knows: int) -> str | None:
    """Why code that knows schema versions up to `knows` must not use this state database, or
    None when it may (an older or equal version, or a newer one declared compatible)."""
    version = user_version(conn)
    if version <= knows:
        return None
    oldest = compatible_from(conn)
    if oldest <= knows:
        return None
    return (
        f"schema version {version}, which needs a mastercontrol that knows version {oldest} "
        f"or later (this one knows {knows})"
    )


def _mark_compat(conn: sqlite3.Connection, version: int) -> None:
    if version >= _META_SINCE:
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (COMPAT_KEY, str(COMPATIBLE_FROM[version - 1])),
        )


def migrate(
    conn: sqlite3.Connection,
    steps: tuple[tuple[str, ...], ...] | None = None,
    *,
    after_step: Callable[[sqlite3.Connection, int], None] | None = None,
) -> int:
    """Apply the steps the database has not seen yet; returns the resulting version.

    Each step, its version bump and `after_step(conn, new_version)` commit together. A
    database newer than `steps` raises StoreError (an older mastercontrol must not write a
    newer schema); `migrate_state` is the state database's door, which knows compatibility.
    `steps` defaults to the state database's MIGRATIONS (read at call time).
    """
    if steps is None:
        steps = MIGRATIONS
    current = user_version(conn)
    if current > len(steps):
        raise StoreError(
            f"state database schema version {current} is newer than this mastercontrol "
            f"knows ({len(steps)})"
        )
    for version in range(current, len(steps)):
        with transaction(conn):
            # Re-read inside the write lock: another process may have migrated meanwhile.
            if user_version(conn) != version:
                raise StoreError("state database was migrated by another process meanwhile")
            for statement in steps[version]:
                conn.execute(statement)
            # PRAGMA takes no parameters; the value is an int we computed.
            conn.execute(f"PRAGMA user_version = {version + 1:d}")
            if after_step is not None:
                after_step(conn, version + 1)
    return len(steps)


def migrate_state(conn: sqlite3.Connection) -> int:
    """Bring the state database to this code's schema; returns the version it is at.

    A newer database that declares this code compatible is left as it is (an older release
    after `fab rollback`); an incompatible one raises StoreError. Each step records its
    COMPATIBLE_FROM level in meta.
    """
    latest = len(MIGRATIONS)
    version = user_version(conn)
    if version > latest:
        problem = incompatible(conn, latest)
        if problem is not None:
            raise StoreError(f"state database has {problem}")
        return version
    return migrate(conn, MIGRATIONS, after_step=_mark_compat)
