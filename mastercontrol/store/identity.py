"""The state database's identity: telling a lost database from a first start.

Every database gets a random id at creation (meta `identity`). The marker `<db>.id` beside the
file holds the id of the database the daemon last used, so that at start `verify()` can tell:
a first start (no marker, no database), a database that was deleted (a marker, no database),
moved aside as corrupt (open_store's note), or replaced by another (the ids differ). In those
cases the state is *lost*: the reason is kept in the new database until the operator accepts
it, so every later start stays lost too. `FileWatch` notices the file vanishing or being
replaced while the daemon runs (stat by path against the inode opened).

Sits above queries (Store); imports only the standard library, `mastercontrol.errors` and the
store modules below it; never the engine, daemon or API.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from mastercontrol.errors import StoreError
from mastercontrol.store.queries import Store

IDENTITY = "identity"
LOST_REASON = "lost_reason"
LOST_AT = "lost_at"


@dataclass(frozen=True)
class LostState:
    """The durable record was lost: why (one line for the operator) and when (wall time)."""

    reason: str
    since: float


def _new_identity() -> str:
    # os.urandom, not `secrets`: that imports hmac and with it OpenSSL's libcrypto (+3.5 MiB
    # in the master, see config/internal.py).
    return os.urandom(16).hex()


def marker_path(db_path: Path) -> Path:
    return db_path.with_name(f"{db_path.name}.id")


def read_marker(db_path: Path) -> str | None:
    """The id in the marker, or None when there is none (a symlink is refused as none)."""
    try:
        fd = os.open(marker_path(db_path), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read the state marker {marker_path(db_path)}: {exc}") from exc
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as f:
        text = f.read(200).strip()
    return text or None


def write_marker(db_path: Path, identity: str) -> None:
    """Write the marker atomically (a new file renamed over the old one, fsynced)."""
    target = marker_path(db_path)
    tmp = target.with_name(f"{target.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(identity + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise StoreError(f"cannot write the state marker {target}: {exc}") from exc


def verify(
    store: Store, db_path: Path, existed: bool, note: str | None, now_wall: float
) -> LostState | None:
    """Compare the open database with the marker; None when nothing was lost.

    `existed`: the file was there before opening; `note`: open_store's message when it moved
    a corrupt file aside. A lost state's reason is stored in the new database (the marker keeps
    the old id), so it is reported again at every start until `accept()`.
    """
    marker = read_marker(db_path)
    identity = store.meta(IDENTITY)
    if identity is None:
        identity = _new_identity()
        store.set_meta(IDENTITY, identity)
        if note is not None:
            return _lost(store, note, now_wall)
        if marker is not None and not existed:
            return _lost(
                store,
                f"state database {db_path} is missing, but its marker {marker_path(db_path)} "
                f"says there was one: it was deleted; run counts and operator stops are lost",
                now_wall,
            )
        if marker is None:  # a first start, or the first start of this release
            write_marker(db_path, identity)
            return None
        # A database from before identities existed, with a marker: another file was put
        # in place of the one the marker names.
    elif marker is None:
        write_marker(db_path, identity)  # the marker alone was lost: nothing to report
        return None
    elif marker == identity:
        return None
    reason = store.meta(LOST_REASON)
    if reason is not None:
        at = store.meta(LOST_AT)
        return LostState(reason, float(at) if at else now_wall)
    return _lost(
        store,
        f"state database {db_path} is not the one this daemon last used (its marker "
        f"{marker_path(db_path)} names another): it was replaced; run counts may be wrong",
        now_wall,
    )


def _lost(store: Store, reason: str, now_wall: float) -> LostState:
    store.set_meta(LOST_REASON, reason)
    store.set_meta(LOST_AT, repr(now_wall))
    return LostState(reason, now_wall)


def accept(store: Store, db_path: Path) -> None:
    """The operator accepts the database as it is: the marker names it, the loss is over."""
    identity = store.meta(IDENTITY)
    if identity is None:
        identity = _new_identity()
        store.set_meta(IDENTITY, identity)
    store.clear_lost()
    write_marker(db_path, identity)


class FileWatch:
    """Notices the database file vanishing or being replaced under the open connection."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path
        self._id = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def rearm(self) -> None:
        """After a restore: the file now at the path is ours."""
        self._id = self._stat()

    def problem(self) -> str | None:
        """None while the path still names the file opened; else what happened to it."""
        now = self._stat()
        if now == self._id:
            return None
        if now is None:
            return "deleted"
        return "replaced by another file"
