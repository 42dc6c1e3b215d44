"""The central's view of inventory.yaml: who may heartbeat with which token, and where the
central may call each client.

Owns two rules. Heartbeat auth: a token the central does not know is "unknown" (401), a known
token offered for another client's name is "wrong client" (403), a name the inventory does not
list is "unlisted" (403 unless unknown clients are accepted); tokens are kept only as SHA-256
digests and compared with `hmac.compare_digest`. Call targets: the inventory's `api_url` when
it gives one, else the latest authenticated heartbeat's, only when that URL's host is the
inventory's `host` for the client, so a heartbeat can never point the central at an arbitrary
address. Pure: no I/O (the service resolves token files before building a Roster). Imports
only the standard library; never daemon/, child/, api/ or bottle.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit


class Verdict(StrEnum):
    OK = "ok"
    UNKNOWN_TOKEN = "unknown_token"  # 401
    WRONG_CLIENT = "wrong_client"  # 403: the token belongs to another name
    UNLISTED = "unlisted"  # 403: the inventory does not list the name


@dataclass(frozen=True)
class RosterEntry:
    """One inventory client as the central needs it; `token` already resolved (or None)."""

    name: str
    host: str
    tags: tuple[str, ...] = ()
    api_url: str | None = None
    token: str | None = field(default=None, repr=False)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class Roster:
    """Inventory entries, the per-client token digests and the shared operator token digest.

    A client whose entry gives no token heartbeats with `shared_token` (central.api_token).
    With `accept_unknown` a name the inventory does not list may heartbeat with the shared
    token; it is never called back unless its heartbeat URL is acceptable (see `target_url`).
    """

    def __init__(
        self,
        entries: Iterable[RosterEntry],
        shared_token: str | None,
        accept_unknown: bool = False,
    ) -> None:
        self.entries = {e.name: e for e in entries}
        self.accept_unknown = accept_unknown
        self._shared = _digest(shared_token) if shared_token else None
        self._shared_token = shared_token or None
        # digest -> the one name it belongs to (a token shared by two entries belongs to both:
        # then it is checked per name below, never looked up).
        self._own: dict[str, bytes] = {}
        for e in self.entries.values():
            if e.token:
                self._own[e.name] = _digest(e.token)
        self._owners: dict[bytes, set[str]] = {}
        for name, dig in self._own.items():
            self._owners.setdefault(dig, set()).add(name)

    def knows_token(self, token: str | None) -> bool:
        """Is `token` any client's or the shared one? (401 before the body is even read.)"""
        if not token:
            return False
        offered = _digest(token)
        return offered in self._owners or (
            self._shared is not None and hmac.compare_digest(offered, self._shared)
        )

    def check_heartbeat(self, name: str, token: str | None) -> Verdict:
        """May `token` send a heartbeat for `name`? Checked before the body is validated."""
        if not token:
            return Verdict.UNKNOWN_TOKEN
        offered = _digest(token)
        expected = self._own.get(name)
        if expected is None and (name in self.entries or self.accept_unknown):
            expected = self._shared
        if expected is not None and hmac.compare_digest(offered, expected):
            return Verdict.OK
        if not self.knows_token(token):
            return Verdict.UNKNOWN_TOKEN
        if name not in self.entries and not self.accept_unknown:
            return Verdict.UNLISTED
        return Verdict.WRONG_CLIENT

    def call_token(self, name: str) -> str | None:
        """The token the central sends when it calls this client's API: its own, else the
        shared one (the device heartbeats with it, so its API requires it too)."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        return entry.token or self._shared_token

    def target_url(self, name: str, heartbeat_url: str | None) -> str | None:
        """Where the central may call `name`'s API, or None when nowhere is acceptable."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        if entry.api_url:
            return entry.api_url.rstrip("/")
        if not heartbeat_url:
            return None
        try:
            host = urlsplit(heartbeat_url).hostname
        except ValueError:
            return None
        if host is None or host.lower() != entry.host.lower().strip("[]"):
            return None
        return heartbeat_url.rstrip("/")
