"""Bounded history: deleting runs and events past the retention settings, a chunk at a time.

Every cron tick writes a run row and several event rows; on an SD card that must not grow
forever. `Pruner.prune` deletes, oldest first, what is past `daemon.history_days` or beyond the
newest `daemon.history_max_runs` runs of a workload (events: `EVENTS_PER_RUN` times that), and
never a run that is still going. One call does bounded work so that one housekeeping pass never
holds the loop long: at most `limit` rows deleted, and the per-workload counts of at most
`WORKLOADS_PER_CALL` workloads checked, taking turns by name across calls (history of workloads
that left the config included). Every query walks an index for a bounded distance.
Sits above `store/db.py` beside queries.py; imports only the standard library and db.py.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from mastercontrol.store.db import Database

EVENTS_PER_RUN = 10  # events kept per kept run: a run makes 3-4 transitions, plus skipped ticks
CHUNK = 1000  # rows one call deletes at most
WORKLOADS_PER_CALL = 8  # workloads whose counts one call checks


@dataclass(frozen=True)
class Pruned:
    runs: int  # run rows deleted
    events: int  # event rows deleted
    more: bool  # the call stopped at its row limit: more is due now, not at the next pass


# (table, time column, rows kept per workload as a multiple of max_runs, what may go)
_TABLES = (
    ("runs", "ended_at", 1, " AND ended_at IS NOT NULL"),
    ("events", "at", EVENTS_PER_RUN, ""),
)


class Pruner:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._cursor = ""  # the last workload whose counts were brought within the limit

    def prune(self, now: float, max_age: float, max_runs: int, limit: int = CHUNK) -> Pruned:
        """Delete history older than `max_age` seconds before `now` (wall time) or beyond the
        newest `max_runs` runs per workload, at most `limit` rows; see the module docstring."""
        if max_age <= 0 or max_runs < 1 or limit < 1:
            raise ValueError("max_age, max_runs and limit must be positive")
        left = limit
        deleted = {"runs": 0, "events": 0}
        with self._db.write() as conn:
            for table, column, _, _ in _TABLES:
                # The oldest `left` rows by id (insertion order): a walk of bounded length even
                # when nothing is old enough; rows made old by a clock jump go once they are
                # among the oldest.
                n = conn.execute(
                    f"DELETE FROM {table} WHERE id IN "
                    f"(SELECT id FROM {table} ORDER BY id LIMIT ?) AND {column} < ?",
                    (left, now - max_age),
                ).rowcount
                deleted[table] += n
                left -= n
            seen: set[str] = set()
            for _ in range(WORKLOADS_PER_CALL):
                name = self._next_workload(conn) if left else None
                if name is None or name in seen:
                    break
                seen.add(name)
                for table, _, per_run, may_go in _TABLES:
                    # Everything at or below the id of the (keep+1)-th newest row goes; the
                    # subquery is NULL (nothing deleted) when there are not that many rows.
                    n = conn.execute(
                        f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                        f"WHERE workload = ? AND id <= (SELECT id FROM {table} WHERE "
                        f"workload = ? ORDER BY id DESC LIMIT 1 OFFSET ?){may_go} "
                        f"ORDER BY id LIMIT ?)",
                        (name, name, max_runs * per_run, left),
                    ).rowcount
                    deleted[table] += n
                    left -= n
                if left:  # done with this one; a workload cut short is taken up again next call
                    self._cursor = name
        return Pruned(deleted["runs"], deleted["events"], more=left == 0)

    def _next_workload(self, conn: sqlite3.Connection) -> str | None:
        """The next workload name after the cursor in runs or events, wrapping around."""
        for after in (self._cursor, ""):
            (name,) = conn.execute(
                "SELECT MIN(w) FROM (SELECT MIN(workload) AS w FROM runs WHERE workload > ? "
                "UNION ALL SELECT MIN(workload) FROM events WHERE workload > ?)",
                (after, after),
            ).fetchone()
            if name is not None:
                return str(name)
        return None
