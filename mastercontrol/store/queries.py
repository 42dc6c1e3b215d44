"""Store: every question and command the daemon puts to the state database, one method each.

All SQL is parameterised and lives here (history pruning's in prune.py); rows leave as frozen
dataclasses. Every statement goes
through `store/db.py`'s `Database` (writes in `write()`, reads through `read()`), so this module
issues no BEGIN/COMMIT of its own and sqlite3 errors leave every method as StoreError. A write
on its own commits by itself; inside the loop's per-wake batch it joins that (one fsync per
wake). `begin_run` must be durable before the fork: in a batch it checkpoints it, and it
refuses to run inside any other open transaction. Only the daemon (single-threaded) writes.
Sits above db.py and prune.py; imports only the standard library, `mastercontrol.errors` and
those two; never open.py (which imports this), the engine (states are plain strings here,
ProcState values fit), daemon or API.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from mastercontrol.errors import StoreError
from mastercontrol.store.db import Database
from mastercontrol.store.prune import CHUNK, Pruned, Pruner

DAEMON_LOST = "daemon_lost"
TICK_SKIPPED = "tick_skipped"
# State given to a row created by a write that is not a transition (set_last_tick, ...).
DEFAULT_STATE = "STOPPED"


@dataclass(frozen=True)
class WorkloadRow:
    name: str
    state: str
    pid: int | None
    operator_stopped: bool
    run_generation: int
    runs_started: int  # runs begun in run_generation (n_times count)
    runs_total: int  # runs begun since the row was created
    last_tick: float | None
    updated_at: float
    restarts: int = 0  # automatic restarts, as of the last FATAL (schema 3)
    config_digest: str | None = None  # digest of the config that state was reached under


@dataclass(frozen=True)
class RunRow:
    id: int
    workload: str
    generation: int
    pid: int | None
    started_at: float
    ended_at: float | None  # None while the run is going
    exit_code: int | None
    signal: int | None
    reason: str | None
    text: str | None
    duration: float | None  # monotonic seconds; None while running or when unknown


_RUN_COLUMNS = (
    "id, workload, generation, pid, started_at, ended_at, exit_code, signal, reason, text, duration"
)
_WORKLOAD_COLUMNS = (
    "name, state, pid, operator_stopped, run_generation, runs_started, runs_total, last_tick, "
    "updated_at, restarts, config_digest"
)
ACCEPTED_PREFIX = "accepted:"


def _run(row: tuple[Any, ...]) -> RunRow:
    return RunRow(*row)


def _workload(row: tuple[Any, ...]) -> WorkloadRow:
    (name, state, pid, stopped, generation, started, total, tick, updated, restarts, digest) = row
    return WorkloadRow(
        name, state, pid, bool(stopped), generation, started, total, tick, updated, restarts, digest
    )


class Store:
    """The daemon's handle on the state database (see `open_store` to get one)."""

    def __init__(self, db: Database, wall_clock: Callable[[], float] = time.time) -> None:
        # Only for updated_at of writes whose caller passes no time (display only).
        self._wall_clock = wall_clock
        self.use(db)

    def use(self, db: Database) -> None:
        """Work on `db` from now on (the file was restored under the same path while running:
        every holder of this Store follows without being told)."""
        self._db = db
        self._conn = db.conn  # for statements; transactions belong to self._db
        self._pruner = Pruner(db)

    @property
    def connection(self) -> sqlite3.Connection:
        """The open connection, for opening's checks and restoring (store/open.py) only."""
        return self._conn

    # -- plumbing --------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Group writes into one commit; re-entrant (nested blocks join the outer one)."""
        return self._db.write()

    def batch(self) -> AbstractContextManager[None]:
        """Group everything one loop step writes into one commit: one fsync, not one per write.

        `begin_run` inside a batch checkpoints it (everything so far included), so a run is
        still durable before its fork. If the batch cannot begin (locked or broken file), the
        block runs anyway with each write on its own. A failing commit rolls the batch back and
        raises StoreError after the block has run.
        """
        return self._db.batch()

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.read(sql, params)

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _ensure_row(self, name: str, at: float) -> None:
        if self._one("SELECT 1 FROM workloads WHERE name = ?", (name,)) is not None:
            return
        # A workload that comes back after forget_workload continues the generation numbers
        # of its old runs, so history never mixes two lives of the same name.
        self._conn.execute(
            "INSERT INTO workloads (name, state, run_generation, updated_at) "
            "VALUES (?, ?, (SELECT COALESCE(MAX(generation) + 1, 0) FROM runs "
            "WHERE workload = ?), ?)",
            (name, DEFAULT_STATE, name, at),
        )

    def _touch(self, name: str, sql_set: str, params: tuple[Any, ...], at: float) -> None:
        """UPDATE workloads SET <sql_set>, updated_at for `name`, creating the row first."""
        with self.transaction():
            self._update_workload(name, sql_set, params, at)

    def _update_workload(self, name: str, sql_set: str, params: tuple[Any, ...], at: float) -> None:
        """The UPDATE alone while the row exists (every write after the first: one statement,
        not a SELECT before it); creates the row and updates it when it does not."""
        sql = f"UPDATE workloads SET {sql_set}, updated_at = ? WHERE name = ?"
        if self._conn.execute(sql, (*params, at, name)).rowcount == 0:
            self._ensure_row(name, at)
            self._conn.execute(sql, (*params, at, name))

    # -- workload state ----------------------------------------------------------------------

    def record_transition(
        self,
        name: str,
        old: str | None,
        new: str,
        trigger: str,
        at: float,
        detail: str | None = None,
        pid: int | None = None,
    ) -> None:
        """Set the workload's state and pid and append the event, atomically.

        `pid` is stored as given: pass the live child's pid on every transition that keeps
        one (STARTING -> RUNNING too); None clears it. Creates the row on first use.
        """
        with self.transaction():
            self._update_workload(name, "state = ?, pid = ?", (new, pid), at)
            self._insert_event(name, at, old, new, trigger, detail)

    def record_event(self, name: str, trigger: str, at: float, detail: str | None) -> None:
        """Append an event without a state change (e.g. trigger "tick_skipped")."""
        with self.transaction():
            self._insert_event(name, at, None, None, trigger, detail)

    def _insert_event(
        self,
        name: str,
        at: float,
        old: str | None,
        new: str | None,
        trigger: str,
        detail: str | None,
    ) -> None:
        self._conn.execute(
            "INSERT INTO events (workload, at, old_state, new_state, trigger, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (name, at, old, new, trigger, detail),
        )

    def set_operator_stopped(self, name: str, stopped: bool) -> None:
        self._touch(name, "operator_stopped = ?", (int(stopped),), self._wall_clock())

    def operator_stopped_names(self) -> set[str]:
        return {r[0] for r in self._rows("SELECT name FROM workloads WHERE operator_stopped = 1")}

    def get_last_tick(self, name: str) -> float | None:
        row = self._one("SELECT last_tick FROM workloads WHERE name = ?", (name,))
        return None if row is None else row[0]

    def set_last_tick(self, name: str, at: float) -> None:
        self._touch(name, "last_tick = ?", (at,), self._wall_clock())

    def workload_row(self, name: str) -> WorkloadRow | None:
        row = self._one(f"SELECT {_WORKLOAD_COLUMNS} FROM workloads WHERE name = ?", (name,))
        return None if row is None else _workload(row)

    def workload_rows(self) -> dict[str, WorkloadRow]:
        rows = self._rows(f"SELECT {_WORKLOAD_COLUMNS} FROM workloads ORDER BY name")
        return {r[0]: _workload(r) for r in rows}

    def keep_fatal(self, name: str, digest: str, restarts: int) -> None:
        """Remember what a FATAL workload's state was reached under: its config's digest and
        its restart count (the next daemon start keeps FATAL only while the digest matches)."""
        self._touch(name, "config_digest = ?, restarts = ?", (digest, restarts), self._wall_clock())

    # -- the database's own facts (meta, schema 3) -------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str | None) -> None:
        """Set `key` (None deletes it)."""
        with self.transaction():
            if value is None:
                self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def accepted_names(self) -> set[str]:
        """Workloads whose lost count the operator accepted (`reset NAME`)."""
        rows = self._rows("SELECT key FROM meta WHERE key LIKE ?", (ACCEPTED_PREFIX + "%",))
        return {str(r[0])[len(ACCEPTED_PREFIX) :] for r in rows}

    def clear_lost(self) -> None:
        """The operator accepted the loss as a whole: forget its reason, time and the names."""
        with self.transaction():
            self._conn.execute(
                "DELETE FROM meta WHERE key IN ('lost_reason', 'lost_at') OR key LIKE ?",
                (ACCEPTED_PREFIX + "%",),
            )

    def forget_workload(self, name: str) -> None:
        """Delete the workload's row (it left the config); its runs and events stay."""
        with self.transaction():
            self._conn.execute("DELETE FROM workloads WHERE name = ?", (name,))

    # -- runs ------------------------------------------------------------------------------

    def begin_run(
        self,
        name: str,
        at: float,
        durable: bool = True,
        pid: int | None = None,
        started: int | None = None,
        scope: str | None = None,
    ) -> int:
        """Insert a run and count it, committed durably before returning its id.

        Called before the fork (pid None, `set_run_pid` follows), so an n_times run counts even
        if the daemon dies right after. Inside a `batch()` it checkpoints the batch (with
        `durable=False`, for runs whose count nothing depends on, it just joins the batch: such
        a run may be recorded after its spawn, with its pid, start time and scope in the same
        row); inside any other open transaction it raises StoreError: joining it would delay
        the commit.
        """
        if self._conn.in_transaction and not self._db.batching:
            raise StoreError(
                "begin_run must not be called inside an open transaction: the run has to be "
                "committed before the fork"
            )
        with self.transaction():
            run_id = self._insert_run(name, at, (pid, started, scope))
        if durable:
            self._db.checkpoint()
        return run_id

    def _insert_run(
        self, name: str, at: float, proc: tuple[int | None, int | None, str | None]
    ) -> int:
        """The run row and its count, in whatever transaction is open."""
        sql = (
            "INSERT INTO runs (workload, generation, started_at, pid, pid_started, scope) "
            "SELECT name, run_generation, ?, ?, ?, ? FROM workloads WHERE name = ?"
        )
        cur = self._conn.execute(sql, (at, *proc, name))
        if cur.rowcount == 0:  # the workload's first write: its row first
            self._ensure_row(name, at)
            cur = self._conn.execute(sql, (at, *proc, name))
        self._conn.execute(
            "UPDATE workloads SET runs_started = runs_started + 1, "
            "runs_total = runs_total + 1, updated_at = ? WHERE name = ?",
            (at, name),
        )
        if cur.lastrowid is None:  # pragma: no cover - the INSERT ... SELECT always finds the row
            raise StoreError(f"could not record a run of {name}")
        return cur.lastrowid

    def set_run_pid(
        self, run_id: int, pid: int, started: int | None = None, scope: str | None = None
    ) -> None:
        """The run's pid, with what proves it is still the same process later: the pid's
        start time (/proc/<pid>/stat field 22) and the run's cgroup or marker."""
        with self.transaction():
            self._update_run(run_id, "pid = ?, pid_started = ?, scope = ?", (pid, started, scope))

    def end_run(
        self,
        run_id: int,
        at: float,
        exit_code: int | None,
        signal: int | None,
        reason: str,
        text: str | None,
        duration: float | None = None,
    ) -> None:
        """Close a run. `at` is the wall time (display); `duration` the monotonic measure."""
        with self.transaction():
            self._update_run(
                run_id,
                "ended_at = ?, exit_code = ?, signal = ?, reason = ?, text = ?, duration = ?",
                (at, exit_code, signal, reason, text, duration),
            )

    def _update_run(self, run_id: int, sql_set: str, params: tuple[Any, ...]) -> None:
        cur = self._conn.execute(f"UPDATE runs SET {sql_set} WHERE id = ?", (*params, run_id))
        if cur.rowcount != 1:
            raise StoreError(f"no run with id {run_id}")

    def runs_started(self, name: str) -> int:
        """Runs begun in the workload's current generation (0 for an unknown workload)."""
        row = self._one("SELECT runs_started FROM workloads WHERE name = ?", (name,))
        return 0 if row is None else int(row[0])

    def reset_runs(self, name: str) -> None:
        """Start a new generation: runs_started is 0 again (operator restarts a COMPLETED one)."""
        self._touch(
            name,
            "run_generation = run_generation + 1, runs_started = 0",
            (),
            self._wall_clock(),
        )

    def close_orphan_runs(
        self, at: float
    ) -> list[tuple[str, int, int | None, int | None, str | None]]:
        """End the runs a previous daemon left open (reason "daemon_lost").

        Returns (workload, run id, pid, pid start time, scope) so the caller can clean up what
        those runs left behind, after checking that a pid still names the same process.
        """
        with self.transaction():
            orphans = [
                (
                    str(w),
                    int(i),
                    None if p is None else int(p),
                    None if t is None else int(t),
                    None if c is None else str(c),
                )
                for i, w, p, t, c in self._rows(
                    "SELECT id, workload, pid, pid_started, scope FROM runs"
                    " WHERE ended_at IS NULL ORDER BY id"
                )
            ]
            self._conn.execute(
                "UPDATE runs SET ended_at = ?, reason = ?, text = ? WHERE ended_at IS NULL",
                (at, DAEMON_LOST, "the daemon stopped before this run was seen to end"),
            )
        return orphans

    def recent_runs(self, name: str, limit: int = 20) -> list[RunRow]:
        """The workload's newest runs, newest first."""
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE workload = ? ORDER BY id DESC LIMIT ?",
            (name, limit),
        )
        return [_run(r) for r in rows]

    def last_duration(self, name: str) -> float | None:
        """The monotonic duration of the workload's newest run that has one (ended, measured)."""
        rows = self._rows(
            "SELECT duration FROM runs WHERE workload = ? AND duration IS NOT NULL "
            "ORDER BY id DESC LIMIT 1",
            (name,),
        )
        return float(rows[0][0]) if rows else None

    def run_outcomes(self, name: str) -> list[tuple[str, int | None, int, int]]:
        """(reason, exit code, how many, newest run id) over the ended runs of the workload's
        current generation (those history retention kept): what `list` counts failed runs
        from after a daemon start. Which outcome is a failure is the engine's to say."""
        rows = self._rows(
            "SELECT r.reason, r.exit_code, COUNT(*), MAX(r.id) FROM runs r "
            "JOIN workloads w ON w.name = r.workload AND w.run_generation = r.generation "
            "WHERE r.workload = ? AND r.ended_at IS NOT NULL AND r.reason IS NOT NULL "
            "GROUP BY r.reason, r.exit_code",
            (name,),
        )
        return [(str(r), None if c is None else int(c), int(n), int(i)) for r, c, n, i in rows]

    # -- housekeeping ------------------------------------------------------------------------

    def prune(self, now: float, max_age: float, max_runs: int, limit: int = CHUNK) -> Pruned:
        """Trim run and event history to the retention settings, a bounded chunk per call
        (`store/prune.py`); never a run still going, never the n_times counts."""
        return self._pruner.prune(now, max_age, max_runs, limit)

    def close(self) -> None:
        self._db.close()
