"""Whether a client is online, stale, offline or never seen: pure arithmetic on monotonic times.

Owns the liveness rule and nothing else: no clock of its own (the caller passes `now`), no
store, no I/O. Imports only the standard library; never daemon/, child/, api/ or bottle.

Silence is measured on the monotonic clock ("heard N seconds ago, since this central
started"), never on wall time: a step of the control host's clock (NTP at boot, `date -s`)
must not turn the whole fleet offline, or back online. Wall time stays what the fleet DB and
the pages show as last_seen.

The grace rule: right after the central starts, nobody is stale or offline until a full stale
interval has passed, because the central's own downtime is not the clients' fault. It falls out
of measuring silence from the later of "heard at" and "this central started": a client last
heard before the central started (`heard` None, though it has a last_seen) has been silent, as
far as this central can tell, only since the start.
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
    """The thresholds, and when this central process started (monotonic seconds)."""

    stale_after: float
    offline_after: float
    started_at: float

    def __post_init__(self) -> None:
        if not 0 < self.stale_after < self.offline_after:
            raise ValueError("need 0 < stale_after < offline_after")

    def status(
        self, ever_seen: bool, heard: float | None, now: float, was_offline: bool = False
    ) -> Liveness:
        """`ever_seen`: the client has a last_seen (from this central or an earlier one);
        `heard`: when this central last heard it (monotonic), None if not since it started.
        `was_offline`: the last status recorded (possibly by an earlier central) was offline.
        A client already offline before this central started stays offline: the grace is for
        clients the central's downtime made look silent, not for those it saw go."""
        if not ever_seen:
            return Liveness.NEVER_SEEN
        if was_offline and heard is None:
            return Liveness.OFFLINE
        silent = now - (self.started_at if heard is None else max(heard, self.started_at))
        if silent >= self.offline_after:
            return Liveness.OFFLINE
        if silent >= self.stale_after:
            return Liveness.STALE
        return Liveness.ONLINE

    def in_grace(self, now: float) -> bool:
        """True while the central is too young to call anyone stale."""
        return now - self.started_at < self.stale_after
