"""The rolling plan (pure): waves of clients, per-client outcomes and the rules that stop a run.

A deployment walks its waves in order. Within a wave every client is updated in parallel; then
the health gate. Any client of the wave that failed (install or gate) rolls the whole wave back
and stops the deployment: no later wave is touched. The one exception is `max_failed` (default
0): clients whose install failed before their switch (they still run their old release) count
as failed without failing their wave while the deployment's failures stay within it. An
unreachable client is PENDING (picked up by `--resume`), never failed, unless
`--unreachable=fail`.

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
    # Failed before anything was switched (copy failed, or the bootstrap stopped before its
    # switch): the client surely runs what it ran before. Not so for a lost connection.
    before_switch: bool = False


def wave_failed(results: Iterable[Result]) -> bool:
    """A wave fails when any of its clients failed; pending clients do not fail it."""
    return any(r.outcome is Outcome.FAILED for r in results)


def tolerated(results: Sequence[Result], failed_before: int, max_failed: int) -> list[Result]:
    """The failed installs of a wave that `max_failed` lets the deployment go on past: all of
    them, when none was switched (each still runs its old release) and the deployment's
    failures (`failed_before` in earlier waves, plus these) stay within `max_failed`; else none
    (the wave is rolled back and the deployment stops). Ansible's max_fail_percentage, counted."""
    failed = [r for r in results if r.outcome is Outcome.FAILED]
    if not all(r.before_switch for r in failed) or failed_before + len(failed) > max_failed:
        return []
    return failed


def final_status(outcomes: Iterable[Outcome], stopped: bool) -> Status:
    seen = set(outcomes)
    if stopped or Outcome.FAILED in seen or Outcome.ROLLED_BACK in seen:
        return Status.FAILED
    if seen & TO_DO:
        return Status.INCOMPLETE
    return Status.SUCCEEDED
