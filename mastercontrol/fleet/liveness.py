"""Whether a client is online, stale, offline or never seen: pure arithmetic on wall times.

Owns the liveness rule and nothing else: no clock of its own (the caller passes `now`), no
store, no I/O. Imports only the standard library; never daemon/, child/, api/ or bottle.

The grace rule: right after the central starts, nobody is stale or offline until a full stale
interval has passed, because the central's own downtime is not the clients' fault. It falls out
of measuring silence from `max(last_seen, central_started_at)`: a client last heard before the
central started has been silent, as far as this central can tell, only since the start.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Liveness(StrEnum):
    ONLINE = "online"
    STALE = "stale"
    OFFLINE = "offline"
    NEVER_SEEN = "never_seen"  # listed in the inventory, no heartbeat yet


# The order the fleet overview counts them in.
ALL_STATUSES: tuple[Liveness, ...] = (
    Liveness.ONLINE,
    Liveness.STALE,
    Liveness.OFFLINE,
    Liveness.NEVER_SEEN,
)


@dataclass(frozen=True)
class LivenessRule:
    """The thresholds, and when this central process started (wall seconds)."""

    stale_after: float
    offline_after: float
    started_at: float

    def __post_init__(self) -> None:
        if not 0 < self.stale_after < self.offline_after:
            raise ValueError("need 0 < stale_after < offline_after")

    def status(self, last_seen: float | None, now: float, was_offline: bool = False) -> Liveness:
        """`was_offline`: the last status recorded (possibly by an earlier central) was offline.
        A client already offline before this central started stays offline: the grace is for
        clients the central's downtime made look silent, not for those it saw go."""
        if last_seen is None:
            return Liveness.NEVER_SEEN
        if was_offline and last_seen < self.started_at:
            return Liveness.OFFLINE
        silent = now - max(last_seen, self.started_at)
        if silent >= self.offline_after:
            return Liveness.OFFLINE
        if silent >= self.stale_after:
            return Liveness.STALE
        return Liveness.ONLINE

    def in_grace(self, now: float) -> bool:
        """True while the central is too young to call anyone stale."""
        return now - self.started_at < self.stale_after
