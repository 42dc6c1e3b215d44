"""Opening the state database: checks, migration and corrupt-file recovery, on top of the store.

`open_store()` turns an unreadable file into a fresh database (moving the old one aside) so that
a damaged disk never keeps the daemon from starting, and refuses, leaving the file alone, what
moving aside would not cure (permissions, a lock held by another process, a full disk, a schema
newer than this code). The top of the store: imports the standard library, `mastercontrol.errors`
and the store modules below it (db, migrations, queries); nothing in the store imports it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from mastercontrol.errors import StoreError
from mastercontrol.store.db import Database, configure, connect, open_file
from mastercontrol.store.migrations import LATEST_VERSION, incompatible, migrate_state
from mastercontrol.store.queries import Store

# Primary sqlite result codes that describe the environment (permissions, locks, a full or
# failing disk), not the file's contents: moving the file aside would not help and would throw
# good state away, so these are reported as StoreError instead.
_ENVIRONMENT_CODES = {
    3,  # SQLITE_PERM
    5,  # SQLITE_BUSY: another process holds the lock
    6,  # SQLITE_LOCKED
    7,  # SQLITE_NOMEM
    8,  # SQLITE_READONLY
    10,  # SQLITE_IOERR
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    23,  # SQLITE_AUTH
}


class _Corrupt(Exception):
    """quick_check found damage (the message is its first findings)."""


def _content_problem(exc: BaseException) -> str | None:
    """Why the file's contents are unusable, or None if `exc` is about something else.

    A StoreError raised by the db module keeps the sqlite3 error as its cause.
    """
    if isinstance(exc, _Corrupt):
        return str(exc)
    cause = exc if isinstance(exc, sqlite3.Error) else exc.__cause__
    if not isinstance(cause, sqlite3.Error):
        return None
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _ENVIRONMENT_CODES:
        return None
    return str(cause) or type(cause).__name__


def _check_and_migrate(conn: sqlite3.Connection, db_path: Path) -> None:
    """Configure, refuse a future schema, quick_check and migrate; the caller classifies."""
    configure(conn, db_path)
    # A newer schema that declares this code compatible (a rollback to an older release) is
    # used as it is; only an incompatible one is refused, and left alone.
    problem = incompatible(conn, LATEST_VERSION)
    if problem is not None:
        raise StoreError(
            f"state database {db_path} has {problem}: newer than this mastercontrol can use; "
            f"upgrade mastercontrol or restore a matching database (a deploy keeps one per "
            f"release under state/backups/, docs/operations.md)"
        )
    problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise _Corrupt("quick_check: " + "; ".join(problems[:3]))
    migrate_state(conn)


def _aside_name(path: Path, now_wall: float, label: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now_wall))
    candidate = path.with_name(f"{path.name}.{label}-{stamp}")
    # Two corruptions in the same second must not overwrite the first evidence.
    for n in range(1, 1000):
        if not any(Path(f"{candidate}{s}").exists() for s in ("", "-wal", "-shm")):
            return candidate
        candidate = path.with_name(f"{path.name}.{label}-{stamp}.{n}")
    raise StoreError(f"too many {label} copies of {path} in {path.parent}; clean them up")


def _move_aside(path: Path, now_wall: float, label: str = "corrupt") -> tuple[Path, list[str]]:
    """Rename the database and its -wal/-shm files; returns the new name and what moved."""
    target = _aside_name(path, now_wall, label)
    moved: list[str] = []
    # The copies keep sqlite's naming (<db>-wal), so opening the moved file for forensics
    # still finds its own WAL.
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            try:
                src.rename(f"{target}{suffix}")
            except OSError as exc:
                raise StoreError(f"cannot move the damaged {src} aside: {exc}") from exc
            moved.append(suffix)
    return target, moved


def open_store(path: str | os.PathLike[str], now_wall: float) -> tuple[Store, str | None]:
    """Open (creating and migrating as needed) the state database at `path`.

    If the file is not a database, is corrupt or truncated, or its migration fails, it is moved
    to `<path>.corrupt-<UTC time>` (with its -wal/-shm files), a fresh database is created, and
    the second element is a one-line message for the daemon log; otherwise it is None.
    Raises StoreError, leaving the file alone, for a schema newer than this code and for
    environment problems (permissions, another process holding the lock, a full disk).
    """
    db_path = Path(path)
    conn = open_file(db_path)
    try:
        _check_and_migrate(conn, db_path)
        return Store(Database(conn)), None
    except (sqlite3.Error, StoreError, _Corrupt) as exc:
        reason = _content_problem(exc)
        if reason is None:
            conn.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot use the state database {db_path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise

    # Rename while the failed connection is still open: closing it first would let sqlite
    # delete the -wal file (it unlinks by name on the last close), losing evidence. Closing
    # afterwards unlinks a name that no longer exists.
    try:
        target, moved = _move_aside(db_path, now_wall)
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    try:
        conn = connect(db_path)
        migrate_state(conn)
    except StoreError as exc:
        raise StoreError(f"cannot create a fresh state database {db_path}: {exc}") from exc
    extra = [s.lstrip("-") for s in moved if s]
    with_files = f" (with its {' and '.join(extra)} files)" if extra else ""
    message = (
        f"state database {db_path} was unusable ({reason}); moved it to {target}{with_files} "
        f"and started a fresh, empty one: run history, run counts and operator stops are lost"
    )
    return Store(Database(conn)), message


def restore_in_place(store: Store, db_path: Path, problem: str, now_wall: float) -> str:
    """The file at `db_path` was deleted or replaced while `store` has it open: write the open
    database back to the path and switch `store` to it; returns a line for the daemon log.

    Nothing is lost: the open connection still reads the deleted (or displaced) file, and
    sqlite's online backup copies it whole — run counts, operator stops and history. A file
    someone put in its place is moved aside first (`<db>.replaced-<UTC time>`). Raises
    StoreError when the copy cannot be made (then the caller must assume the record is lost).
    """
    old = store.connection
    tmp = db_path.with_name(f"{db_path.name}.restore")
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{tmp}{suffix}").unlink()
    try:
        copy = open_file(tmp)
        try:
            old.backup(copy)
        finally:
            copy.close()
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot copy the open state database back to disk: {exc}") from exc
    # Closing the old connection checkpoints into the old inode and unlinks "<db>-wal" by name:
    # done before anything new takes the path, so no stale WAL is ever replayed into the copy.
    with contextlib.suppress(sqlite3.Error):
        old.close()
    aside = ""
    if db_path.exists():  # another file was put in its place: keep it, out of the way
        target, _ = _move_aside(db_path, now_wall, "replaced")
        aside = f"; the file found in its place was moved to {target}"
    else:
        # The deleted file's own -wal/-shm, left by name: everything they held is in the copy,
        # and a stale WAL must never be replayed into it.
        for suffix in ("-wal", "-shm"):
            try:
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot remove the stale {db_path}{suffix}: {exc}") from exc
    try:
        os.replace(tmp, db_path)
        conn = connect(db_path)
        migrate_state(conn)
    except (OSError, StoreError) as exc:
        raise StoreError(f"cannot reopen the restored state database {db_path}: {exc}") from exc
    store.use(Database(conn))
    return (
        f"state database {db_path} was {problem} while the daemon was running; wrote the "
        f"open database back to it (run counts, operator stops and history kept){aside}"
    )
