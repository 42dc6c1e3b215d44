"""The deploy journal (sqlite on the control host) and the lock that allows one deploy at a time.

Every write goes through `store.db.transaction()`; the schema through `store.migrations.migrate`
with its own append-only steps. Only the thread that opened a Journal uses it (the rollout's
worker threads hand their results back to the main thread, which writes them).

The lock is a `flock()` on `<state_dir>/deploy.lock`: the kernel drops it when the process dies,
so a deploy killed by Ctrl-C, SIGKILL or a lost terminal never leaves a lock that blocks the next
run, and a second deploy while one runs is refused at once.

Imports only the standard library and store/; no fabric, no daemon, no API.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mastercontrol.deploy.plan import Outcome, Status
from mastercontrol.errors import DeployError
from mastercontrol.store.db import connect, transaction
from mastercontrol.store.migrations import migrate

JOURNAL_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE deployments (
            id INTEGER PRIMARY KEY,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            actor TEXT NOT NULL,
            git_commit TEXT,
            release TEXT NOT NULL,
            status TEXT NOT NULL,
            options TEXT NOT NULL,
            central_id INTEGER,
            message TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE deployment_clients (
            deployment_id INTEGER NOT NULL REFERENCES deployments(id),
            name TEXT NOT NULL,
            wave INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            previous_release TEXT,
            updated_at REAL NOT NULL,
            PRIMARY KEY (deployment_id, name)
        )""",
    ),
)


class DeployLock:
    """Held while a deploy runs; `acquire()` raises DeployError if another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise DeployError(
                f"another deploy is running (pid {holder}, lock {self.path}); wait for it or "
                "stop it — a killed deploy releases the lock by itself"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DeployLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class ClientRow:
    name: str
    wave: int
    outcome: Outcome
    reason: str
    previous_release: str | None


@dataclass(frozen=True)
class Deployment:
    id: int
    started_at: float
    actor: str
    git_commit: str | None
    release: str
    status: Status
    options: dict[str, Any]
    central_id: int | None
    message: str
    clients: tuple[ClientRow, ...]


class Journal:
    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection = connect(path)
        migrate(self.conn, JOURNAL_MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    def create(
        self,
        actor: str,
        git_commit: str | None,
        release: str,
        options: dict[str, Any],
        waves: list[list[str]],
    ) -> int:
        now = time.time()
        with transaction(self.conn) as c:
            cur = c.execute(
                "INSERT INTO deployments (started_at, updated_at, actor, git_commit, release, "
                "status, options) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, now, actor, git_commit, release, Status.RUNNING.value, json.dumps(options)),
            )
            dep_id = int(cur.lastrowid or 0)
            c.executemany(
                "INSERT INTO deployment_clients (deployment_id, name, wave, outcome, "
                "updated_at) VALUES (?, ?, ?, ?, ?)",
                [
                    (dep_id, name, i, Outcome.UNTOUCHED.value, now)
                    for i, wave in enumerate(waves)
                    for name in wave
                ],
            )
        return dep_id

    def set_client(
        self, dep_id: int, name: str, outcome: Outcome, reason: str = "",
        previous: str | None = None,
    ) -> None:  # fmt: skip
        with transaction(self.conn) as c:
            c.execute(
                "UPDATE deployment_clients SET outcome = ?, reason = ?, updated_at = ?, "
                "previous_release = COALESCE(?, previous_release) "
                "WHERE deployment_id = ? AND name = ?",
                (outcome.value, reason, time.time(), previous, dep_id, name),
            )

    def set_status(
        self, dep_id: int, status: Status, message: str | None = None,
        central_id: int | None = None,
    ) -> None:  # fmt: skip
        with transaction(self.conn) as c:
            c.execute(
                "UPDATE deployments SET status = ?, updated_at = ?, "
                "message = COALESCE(?, message), central_id = COALESCE(?, central_id) "
                "WHERE id = ?",
                (status.value, time.time(), message, central_id, dep_id),
            )

    def get(self, dep_id: int) -> Deployment | None:
        row = self.conn.execute(
            "SELECT id, started_at, actor, git_commit, release, status, options, central_id, "
            "message FROM deployments WHERE id = ?",
            (dep_id,),
        ).fetchone()
        if row is None:
            return None
        clients = tuple(
            ClientRow(n, w, Outcome(o), r, p)
            for n, w, o, r, p in self.conn.execute(
                "SELECT name, wave, outcome, reason, previous_release FROM deployment_clients "
                "WHERE deployment_id = ? ORDER BY wave, rowid",
                (dep_id,),
            )
        )
        return Deployment(
            row[0], row[1], row[2], row[3], row[4], Status(row[5]), json.loads(row[6]), row[7],
            row[8], clients,
        )  # fmt: skip

    def latest(self) -> Deployment | None:
        row = self.conn.execute("SELECT max(id) FROM deployments").fetchone()
        return self.get(int(row[0])) if row and row[0] is not None else None

    def history(self, limit: int = 20) -> list[Deployment]:
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM deployments ORDER BY id DESC LIMIT ?", (limit,)
            )
        ]
        return [d for d in (self.get(i) for i in ids) if d is not None]
