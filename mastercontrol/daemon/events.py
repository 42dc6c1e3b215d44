"""The interface between the master loop and its event sources.

Each source (signal pipe, child output pipes, health probes, control server) tells the loop
which fds it wants watched — `registrations()`: fd -> (owner, events) — and is called back with
`on_ready(owner, events, now)` when one is ready. The owner is the object behind the fd (a
connection, a pipe, a probe): fd numbers are reused at once after a close, so the loop compares
owners, not numbers, to tell a newcomer from a dead registration, and a source checks that the
owner it is handed is still live. A source that closes a watched fd calls the loop's
`Unwatch` for it first: epoll keeps the registration of a closed fd alive as long as another
process holds a copy of it — a child forked in this wake holds every master fd until its
bootstrap closes them — and reports it ready (EPOLLHUP) at every wait meanwhile, which spun the
master on its CPU through each restarted child's bootstrap. The loop never reads a source's
fields. Imports only the standard library.
"""

from __future__ import annotations

import selectors
from collections.abc import Callable
from typing import NamedTuple, Protocol

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE

Unwatch = Callable[[int], None]  # the loop stops watching this fd (called before it is closed)


def no_unwatch(fd: int) -> None:
    """For a source used without a loop (tests, tools)."""


class Registration(NamedTuple):
    owner: object  # what the fd belongs to now; handed back to on_ready
    events: int  # READ, WRITE or both


class EventSource(Protocol):
    def registrations(self) -> dict[int, Registration]:
        """Every fd this source wants watched now, with its owner and events."""
        ...

    def on_ready(self, owner: object, events: int, now: float) -> None:
        """An fd of `owner` is ready for `events`; `now` is the wake's monotonic time."""
        ...
