"""Signalling a workload child's process group: the package's one killpg.

Every workload child calls `setsid()` first thing in its bootstrap (`mastercontrol.child.spawn`),
so its pid is its process group id and a signal to the group reaches its grandchildren too. The
master (stops, the sweep after an exit, health-check commands) and `mastercontrol-ctl run` signal
their children only through `killpg` here. Imports only the standard library.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def killpg(pgid: int, signum: int, *, unreaped: bool = False) -> None:
    """Signal the process group `pgid`; a group that is already gone is not an error.

    `unreaped=True` promises that the group's leader is the caller's own child, not reaped yet,
    so its pid cannot have been reused: if it has no group yet (a signal right after the fork,
    before its `setsid()`), the signal goes to the leader itself, which has its signals blocked
    until the bootstrap resets them and then acts on it. Never pass it for a child that may be
    reaped: by then the pid may be a stranger's.
    """
    try:
        os.killpg(pgid, signum)
        return
    except ProcessLookupError:
        if not unreaped:
            return
    except PermissionError as exc:  # the id was reused by someone else's process: leave it
        log.warning("cannot signal process group %d: %s", pgid, exc)
        return
    try:
        os.kill(pgid, signum)
    except ProcessLookupError:  # already gone: its exit is on the way
        pass
