"""The one door to sqlite: connections, transactions, batches and their checkpoints.

`connect()` applies the pragmas every connection needs; `transaction()` and `Database` are the
only places in the package that issue BEGIN, COMMIT, ROLLBACK or SAVEPOINT, and every sqlite3
error that passes through them leaves as StoreError: a locked, full or failing database never
reaches the daemon as a raw `sqlite3.Error`. The bottom of the store: imports only the standard
library and `mastercontrol.errors`; never migrations, queries or open (they import this), nor
the engine, daemon or API.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from mastercontrol.errors import StoreError

log = logging.getLogger("mastercontrol.store")

BUSY_TIMEOUT_MS = 5000

# Savepoint names only need to be unique among the savepoints open at one time.
_savepoint_ids = itertools.count(1)


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection to `path` with WAL, synchronous=FULL, foreign keys and a busy timeout.

    The parent directory is created (mode 0700) if it does not exist. `isolation_level=None`
    turns off the sqlite3 module's implicit transactions: `transaction()` owns them.
    Raises StoreError if the file cannot be opened or is not a database.
    """
    db_path = Path(path)
    conn = open_file(db_path)
    try:
        configure(conn, db_path)
    except sqlite3.Error as exc:
        conn.close()
        raise StoreError(f"cannot open the state database {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def open_file(db_path: Path) -> sqlite3.Connection:
    """The bare connection, before any pragma (the parent directory created if missing)."""
    parent = db_path.parent
    if str(db_path) != ":memory:" and not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
            # mkdir's mode is filtered by the umask; chmod states it exactly.
            parent.chmod(0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the state directory {parent}: {exc}") from exc
    try:
        return sqlite3.connect(str(db_path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the state database {db_path}: {exc}") from exc


def configure(conn: sqlite3.Connection, db_path: Path) -> None:
    """Apply the pragmas; lets sqlite3 errors through so that opening can classify them."""
    # The first statement reads the header: a file that is not a database fails here.
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"state database {db_path}: cannot use WAL journal mode ({mode})")
    # FULL (not NORMAL) so that a committed run row survives a power cut, not just a process
    # crash: n_times counting depends on it.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")


def _failed(what: str, exc: sqlite3.Error) -> StoreError:
    """The StoreError for `exc`; raised `from exc`, so opening can classify it by its cause."""
    return StoreError(f"{what}: {exc}")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT around the block, ROLLBACK if it raises.

    Re-entrant: inside an open transaction the block joins it (nothing is committed until the
    outermost block ends) through a SAVEPOINT, so a failing inner block undoes only its own
    writes even if the caller catches the exception and carries on. sqlite3 errors leave the
    block as StoreError; other exceptions propagate unchanged.
    """
    if conn.in_transaction:
        name = f"mc_sp{next(_savepoint_ids)}"
        try:
            conn.execute(f"SAVEPOINT {name}")
        except sqlite3.Error as exc:
            raise _failed("state database write failed", exc) from exc
        try:
            yield conn
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"ROLLBACK TO {name}")
                conn.execute(f"RELEASE {name}")
            if isinstance(exc, sqlite3.Error):
                raise _failed("state database write failed", exc) from exc
            raise
        try:
            conn.execute(f"RELEASE {name}")
        except sqlite3.Error as exc:
            raise _failed("state database write failed", exc) from exc
        return

    try:
        # IMMEDIATE takes the write lock now, so a lock conflict shows up here (after
        # busy_timeout) rather than half-way through the block.
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise _failed("cannot start a state database transaction", exc) from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        # A failed COMMIT may or may not have ended the transaction already.
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise _failed("state database write failed", exc) from exc
        raise


class _Join:
    """A block that joins the open batch: nothing to begin or end, sqlite3 errors leave it as
    StoreError. Stateless, so one instance serves every write (a generator-based context
    manager costs a generator and two frames per write, several per restart)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise _failed("state database write failed", exc) from exc


class Database:
    """A connection and the batch that may be open on it: the door every read and write uses.

    A batch groups everything one loop wake writes into one transaction (one fsync per wake,
    not one per state change); `checkpoint()` commits what it holds so far and opens it again,
    for the one write that must be durable at once (a counted run, before its fork). When the
    batch cannot begin or reopen (another process holds the write lock, a broken file), it is
    *degraded*: the writes that follow commit on their own. The block's work is never skipped
    for the database's sake, and no sqlite3 error leaves this class unconverted.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._batching = False  # a batch block is running (open or degraded)
        self._joined = _Join(conn)  # reused: joining costs no generator per write

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    @property
    def batching(self) -> bool:
        return self._batching

    def write(self) -> AbstractContextManager[sqlite3.Connection]:
        """Group writes into one commit; re-entrant (nested blocks join the outer one).

        Inside an open batch the block simply joins it, without a savepoint of its own: the loop
        writes a handful of rows per wake and two extra statements per write would double that.
        """
        if self._batching and self.conn.in_transaction:
            return self._joined
        return transaction(self.conn)

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _failed("state database read failed", exc) from exc

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Everything the block writes in one commit; joins a batch or transaction already open.

        A failing commit rolls the batch back and raises StoreError after the block has run.
        """
        if self._batching or self.conn.in_transaction:
            yield
            return
        self._batching = True
        self._begin_batch()
        try:
            yield
        finally:
            self._batching = False
            if self.conn.in_transaction:
                self._commit("state database write failed")

    def checkpoint(self) -> None:
        """Commit what the open batch holds so far, durably, and open the batch again.

        Raises StoreError if the commit fails (the batch's writes so far are rolled back). A
        batch that cannot reopen is degraded, not an error: what had to be durable is.
        Outside a batch, or in a degraded one, there is nothing to commit.
        """
        if not self._batching or not self.conn.in_transaction:
            return
        try:
            self._commit("state database write failed")
        finally:
            self._begin_batch()

    def _begin_batch(self) -> None:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            log.debug("state database batch not open, writes commit one by one: %s", exc)

    def _commit(self, what: str) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise _failed(what, exc) from exc

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error as exc:
            raise _failed("closing the state database failed", exc) from exc
