"""The fleet database: one narrow interface (`FleetStore`) and its sqlite3 implementation.

Owns the central's persistent data: clients with their latest state, a bounded metrics-only
history, events, and deployments with their per-batch and per-client results. The API and the
coalescer see only the `FleetStore` Protocol, so another database could replace sqlite without
touching them. The sqlite side uses the state database's door (`store/db.py`: `connect()` for
WAL and pragmas, `transaction()` for every write, `migrations.migrate()` with this file's own
append-only steps); it never writes BEGIN/COMMIT itself. Imports the standard library and
`mastercontrol.store`/`mastercontrol.errors` only; never daemon/, child/, api/ or bottle.

Schema (fleet DB version 1). Times are wall-clock epoch seconds.

clients: one row per client the central knows (inventory or heartbeat).
    name PK, host, api_url (its latest heartbeat's), tags (JSON list), in_inventory 0/1,
    first_seen, last_seen (NULL: never seen), sent_at, daemon_version, release,
    workloads (JSON list of {name, state, pid, version, runs, restarts, last_exit}),
    system (JSON object: the latest system metrics), status (the liveness last recorded, so
    online/offline events are not repeated after a restart)
history: metrics only, never a whole body. `span` is the seconds one row covers: the sample
    interval for recent rows, 3600 for rows downsampled to hourly means.
    client, at, span, cpu_percent, memory_used_percent, disk_used_percent, temperature_c, load1
events: id PK, at, client, kind (online, stale, offline, fatal_entered, fatal_left, action),
    workload, actor, action, result, detail
deployments: id PK, created_at, updated_at, status, release, actor, batches (JSON list of
    {index, status, clients: [{name, status, message}]}), message
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mastercontrol.store.db import connect, transaction
from mastercontrol.store.migrations import migrate

HOUR = 3600.0

FLEET_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 0 -> 1: initial fleet schema
    (
        """
        CREATE TABLE clients (
            name TEXT PRIMARY KEY,
            host TEXT,
            api_url TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            in_inventory INTEGER NOT NULL DEFAULT 0 CHECK (in_inventory IN (0, 1)),
            first_seen REAL,
            last_seen REAL,
            sent_at REAL,
            daemon_version TEXT,
            release TEXT,
            workloads TEXT NOT NULL DEFAULT '[]',
            system TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'never_seen'
        )
        """,
        """
        CREATE TABLE history (
            client TEXT NOT NULL,
            at REAL NOT NULL,
            span REAL NOT NULL,
            cpu_percent REAL,
            memory_used_percent REAL,
            disk_used_percent REAL,
            temperature_c REAL,
            load1 REAL
        )
        """,
        "CREATE INDEX history_client_at ON history (client, at)",
        # prune() finds old rows across all clients.
        "CREATE INDEX history_at ON history (at)",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            client TEXT,
            kind TEXT NOT NULL,
            workload TEXT,
            actor TEXT,
            action TEXT,
            result TEXT,
            detail TEXT
        )
        """,
        "CREATE INDEX events_client_id ON events (client, id)",
        "CREATE INDEX events_at ON events (at)",
        """
        CREATE TABLE deployments (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            status TEXT NOT NULL,
            release TEXT,
            actor TEXT,
            batches TEXT NOT NULL DEFAULT '[]',
            message TEXT
        )
        """,
    ),
)

METRIC_COLUMNS = (
    "cpu_percent",
    "memory_used_percent",
    "disk_used_percent",
    "temperature_c",
    "load1",
)


@dataclass(frozen=True)
class ClientState:
    """Everything the central keeps about one client (the latest state, not history)."""

    name: str
    host: str | None = None
    api_url: str | None = None
    tags: tuple[str, ...] = ()
    in_inventory: bool = False
    first_seen: float | None = None
    last_seen: float | None = None
    sent_at: float | None = None
    daemon_version: str | None = None
    release: str | None = None
    workloads: tuple[dict[str, Any], ...] = ()
    system: dict[str, Any] = field(default_factory=dict)
    status: str = "never_seen"


@dataclass(frozen=True)
class Sample:
    client: str
    at: float
    span: float
    values: dict[str, float | None]


@dataclass(frozen=True)
class Event:
    at: float
    kind: str
    client: str | None = None
    workload: str | None = None
    actor: str | None = None
    action: str | None = None
    result: str | None = None
    detail: str | None = None


@dataclass
class FlushBatch:
    """What one flush writes, in one transaction."""

    clients: list[ClientState] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.clients or self.removed or self.samples or self.events)


class FleetStore(Protocol):
    """The methods the central needs from its database, and nothing else."""

    def load_clients(self) -> list[ClientState]: ...
    def write(self, batch: FlushBatch) -> None: ...
    def add_event(self, event: Event) -> int: ...
    def events(
        self, *, client: str | None = None, kind: str | None = None, since: float | None = None,
        before_id: int | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]: ...  # fmt: skip
    def history(
        self, client: str, metric: str, since: float, limit: int = 2000
    ) -> list[dict[str, Any]]: ...
    def create_deployment(self, fields: dict[str, Any], now: float) -> dict[str, Any]: ...
    def update_deployment(
        self, deployment_id: int, fields: dict[str, Any], now: float
    ) -> dict[str, Any] | None: ...
    def deployment(self, deployment_id: int) -> dict[str, Any] | None: ...
    def deployments(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]: ...
    def prune(self, now: float, retention: float, full_resolution: float) -> None: ...
    def size_bytes(self) -> int: ...
    def close(self) -> None: ...


class SqliteFleetStore:
    """`FleetStore` on one sqlite file (WAL), with one connection per thread.

    Waitress serves requests from a few threads and the flush runs in another; a sqlite3
    connection must stay in the thread that made it, so each thread gets its own, all opened
    through `store.db.connect` (same pragmas, same busy timeout) and closed by `close()`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        migrate(self._conn(), FLEET_MIGRATIONS)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with transaction(self._conn()) as conn:
            yield conn

    # -- clients -------------------------------------------------------------------------------

    def load_clients(self) -> list[ClientState]:
        rows = self._conn().execute(
            "SELECT name, host, api_url, tags, in_inventory, first_seen, last_seen, sent_at, "
            "daemon_version, release, workloads, system, status FROM clients ORDER BY name"
        )
        return [_client_state(r) for r in rows]

    def write(self, batch: FlushBatch) -> None:
        """Upsert clients, delete removed ones, append samples and events: one transaction."""
        if not batch:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO clients (name, host, api_url, tags, in_inventory, first_seen, "
                "last_seen, sent_at, daemon_version, release, workloads, system, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET host = excluded.host, "
                "api_url = excluded.api_url, tags = excluded.tags, "
                "in_inventory = excluded.in_inventory, first_seen = excluded.first_seen, "
                "last_seen = excluded.last_seen, sent_at = excluded.sent_at, "
                "daemon_version = excluded.daemon_version, release = excluded.release, "
                "workloads = excluded.workloads, system = excluded.system, "
                "status = excluded.status",
                (_client_row(c) for c in batch.clients),
            )
            conn.executemany("DELETE FROM clients WHERE name = ?", ((n,) for n in batch.removed))
            conn.executemany(
                "INSERT INTO history (client, at, span, cpu_percent, memory_used_percent, "
                "disk_used_percent, temperature_c, load1) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (s.client, s.at, s.span, *(s.values.get(m) for m in METRIC_COLUMNS))
                    for s in batch.samples
                ),
            )
            conn.executemany(_EVENT_INSERT, (_event_row(e) for e in batch.events))

    # -- events --------------------------------------------------------------------------------

    def add_event(self, event: Event) -> int:
        with self._write() as conn:
            cur = conn.execute(_EVENT_INSERT, _event_row(event))
            return int(cur.lastrowid or 0)

    def events(
        self,
        *,
        client: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first; `before_id` pages further back."""
        where, args = _conditions(
            (("client = ?", client), ("kind = ?", kind), ("at >= ?", since), ("id < ?", before_id))
        )
        rows = self._conn().execute(
            "SELECT id, at, client, kind, workload, actor, action, result, detail FROM events"
            f"{where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        keys = ("id", "at", "client", "kind", "workload", "actor", "action", "result", "detail")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    # -- history -------------------------------------------------------------------------------

    def history(
        self, client: str, metric: str, since: float, limit: int = 2000
    ) -> list[dict[str, Any]]:
        """Oldest first, at most `limit` points from `since` on, of one metric column."""
        if metric not in METRIC_COLUMNS:
            raise ValueError(f"unknown metric {metric!r}")
        # The column name comes from the fixed tuple above, never from the caller's text.
        rows = self._conn().execute(
            f"SELECT at, span, {metric} FROM history WHERE client = ? AND at >= ? "
            "ORDER BY at LIMIT ?",
            (client, since, limit),
        )
        return [{"at": r[0], "span": r[1], "value": r[2]} for r in rows]

    def prune(self, now: float, retention: float, full_resolution: float) -> None:
        """Drop history older than `retention`; average rows older than `full_resolution`
        into one row per client and hour. Whole hours only, so no hour is averaged twice."""
        cutoff = (now - full_resolution) // HOUR * HOUR
        means = ", ".join(f"avg({m})" for m in METRIC_COLUMNS)
        with self._write() as conn:
            conn.execute("DELETE FROM history WHERE at < ?", (now - retention,))
            conn.execute(
                f"INSERT INTO history (client, at, span, {', '.join(METRIC_COLUMNS)}) "
                f"SELECT client, CAST(at / {HOUR} AS INTEGER) * {HOUR}, {HOUR}, {means} "
                "FROM history WHERE at < ? AND span < ? GROUP BY client, CAST(at / ? AS INTEGER)",
                (cutoff, HOUR, HOUR),
            )
            conn.execute("DELETE FROM history WHERE at < ? AND span < ?", (cutoff, HOUR))

    # -- deployments ---------------------------------------------------------------------------

    def create_deployment(self, fields: dict[str, Any], now: float) -> dict[str, Any]:
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO deployments (created_at, updated_at, status, release, actor, "
                "batches, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    now,
                    fields.get("status", "pending"),
                    fields.get("release"),
                    fields.get("actor"),
                    json.dumps(fields.get("batches", [])),
                    fields.get("message"),
                ),
            )
            new_id = int(cur.lastrowid or 0)
        found = self.deployment(new_id)
        assert found is not None
        return found

    def update_deployment(
        self, deployment_id: int, fields: dict[str, Any], now: float
    ) -> dict[str, Any] | None:
        sets: list[str] = ["updated_at = ?"]
        args: list[Any] = [now]
        for key in ("status", "release", "actor", "message", "batches"):
            if key in fields:
                sets.append(f"{key} = ?")
                value = fields[key]
                args.append(json.dumps(value) if key == "batches" else value)
        with self._write() as conn:
            cur = conn.execute(
                f"UPDATE deployments SET {', '.join(sets)} WHERE id = ?", (*args, deployment_id)
            )
            if cur.rowcount == 0:
                return None
        return self.deployment(deployment_id)

    def deployment(self, deployment_id: int) -> dict[str, Any] | None:
        found = self._deployments("WHERE id = ?", (deployment_id,))
        return found[0] if found else None

    def deployments(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        return self._deployments("ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))

    def _deployments(self, tail: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        rows = self._conn().execute(
            "SELECT id, created_at, updated_at, status, release, actor, batches, message "
            f"FROM deployments {tail}",
            tuple(args),
        )
        keys = ("id", "created_at", "updated_at", "status", "release", "actor")
        out = []
        for r in rows:
            item = dict(zip(keys, r[:6], strict=True))
            item["batches"] = json.loads(r[6])
            item["message"] = r[7]
            out.append(item)
        return out

    # -- housekeeping --------------------------------------------------------------------------

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()


_EVENT_INSERT = (
    "INSERT INTO events (at, client, kind, workload, actor, action, result, detail) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _event_row(e: Event) -> tuple[Any, ...]:
    return (e.at, e.client, e.kind, e.workload, e.actor, e.action, e.result, e.detail)


def _client_state(r: Sequence[Any]) -> ClientState:
    return ClientState(
        name=r[0], host=r[1], api_url=r[2], tags=tuple(json.loads(r[3])),
        in_inventory=bool(r[4]), first_seen=r[5], last_seen=r[6], sent_at=r[7],
        daemon_version=r[8], release=r[9], workloads=tuple(json.loads(r[10])),
        system=json.loads(r[11]), status=r[12],
    )  # fmt: skip


def _client_row(c: ClientState) -> tuple[Any, ...]:
    return (
        c.name, c.host, c.api_url, json.dumps(list(c.tags)), int(c.in_inventory),
        c.first_seen, c.last_seen, c.sent_at, c.daemon_version, c.release,
        json.dumps(list(c.workloads)), json.dumps(c.system), c.status,
    )  # fmt: skip


def _conditions(pairs: Iterable[tuple[str, Any]]) -> tuple[str, list[Any]]:
    clauses = [(sql, value) for sql, value in pairs if value is not None]
    if not clauses:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in clauses), [v for _, v in clauses]
