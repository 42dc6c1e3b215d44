"""The rolling plan (pure): waves of clients, per-client outcomes and the rules that stop a run.

A deployment walks its waves in order. Within a wave every client is updated in parallel; then
the health gate. Any client of the wave that failed (install or gate) rolls the whole wave back
and stops the deployment: no later wave is touched. An unreachable client is PENDING (picked up
by `--resume`), never failed, unless `--unreachable=fail`.

Imports only the standard library and config's models; no fabric, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from mastercontrol.config.model import InventoryClient


class Outcome(StrEnum):
    """Where one client of a deployment stands (stored verbatim in the journal)."""

    UNTOUCHED = "untouched"  # not reached yet (or its wave was never started)
    IN_PROGRESS = "in_progress"  # being updated; left so by an interrupted run
    UPDATED = "updated"  # runs the release and passed the gate
    ROLLED_BACK = "rolled_back"  # its wave failed; back on its previous release
    FAILED = "failed"  # could not be updated (and, where switched, could not be rolled back)
    PENDING = "pending"  # unreachable within connect_timeout: `--resume` picks it up


# Clients a `--resume` (or a rerun of the same deployment) still has to do.
TO_DO = frozenset((Outcome.UNTOUCHED, Outcome.IN_PROGRESS, Outcome.PENDING))


class Status(StrEnum):
    """A deployment as a whole."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every client updated
    INCOMPLETE = "incomplete"  # nothing failed, some clients pending
    FAILED = "failed"  # a wave failed its gate and was rolled back
    INTERRUPTED = "interrupted"  # Ctrl-C or a lost control host; `--resume` continues it


def waves(clients: Sequence[InventoryClient], batch: int) -> list[list[InventoryClient]]:
    """`clients` in inventory order, `batch` at a time."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    return [list(clients[i : i + batch]) for i in range(0, len(clients), batch)]


def select(
    clients: Iterable[InventoryClient], names: Sequence[str] = (), tag: str | None = None
) -> tuple[list[InventoryClient], list[str]]:
    """The clients `--client` (names) and `--tag` pick, and the names that match no client."""
    pool = list(clients)
    known = {c.name for c in pool}
    unknown = [n for n in names if n not in known]
    if names:
        pool = [c for c in pool if c.name in names]
    if tag is not None:
        pool = [c for c in pool if tag in c.tags]
    return pool, unknown


@dataclass(frozen=True)
class Result:
    """What happened to one client in one step."""

    name: str
    outcome: Outcome
    reason: str = ""
    previous: str | None = None  # the release it ran before this deployment switched it
    switched: bool = False  # `current` points at the new release: a rollback must undo it


def wave_failed(results: Iterable[Result]) -> bool:
    """A wave fails when any of its clients failed; pending clients do not fail it."""
    return any(r.outcome is Outcome.FAILED for r in results)


def final_status(outcomes: Iterable[Outcome], stopped: bool) -> Status:
    seen = set(outcomes)
    if stopped or Outcome.FAILED in seen or Outcome.ROLLED_BACK in seen:
        return Status.FAILED
    if seen & TO_DO:
        return Status.INCOMPLETE
    return Status.SUCCEEDED
