"""Which workloads a `start|stop|restart` means, and waiting for them to settle (`--wait`).

`select` turns names, `all` and `--tag`s into a list, checking every name against the daemon's
`list` first so that an unknown one changes nothing. `wait` polls the workloads' states until
each has stopped (stop) or come up (start, restart), or the timeout passes. Both are pure apart
from the injected fetch, clock and sleep. Imports the stdlib and mastercontrol.engine.states
only; never the daemon.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mastercontrol import ctl
from mastercontrol.engine.states import ACTIVE

ALL = "all"  # supervisorctl's keyword: every workload but the internal @services
INTERNAL_PREFIX = "@"
DEFAULT_WAIT_SECONDS = ctl.DEFAULT_WAIT_SECONDS
WAIT_POLL_SECONDS = 0.1

# `stop --wait` is done once a workload has left these: no process of its run is left.
ACTIVE_STATES = frozenset(str(s) for s in ACTIVE)
# `start/restart --wait` are done once a workload has left these; then see UP_STATES.
CHANGING_STATES = frozenset({"STARTING", "STOPPING"})
# `start/restart --wait` succeed in one of these: up for start_seconds, or its run already
# ended on its own. BACKOFF, FATAL and STOPPED mean it did not come up.
UP_STATES = frozenset({"RUNNING", "SCHEDULED", "EXITED", "COMPLETED"})
GONE = "REMOVED"  # the state shown for a workload a reload removed while we waited

Views = Mapping[str, Mapping[str, Any]]  # name -> the workload's `list` view


@dataclass(frozen=True)
class Selection:
    names: list[str]  # each once, in the order asked
    unknown: list[str]  # names the daemon does not know
    empty_tags: list[str]  # tags no workload carries

    @property
    def ok(self) -> bool:
        return not self.unknown and not self.empty_tags


def select(names: Iterable[str], tags: Iterable[str], views: Views) -> Selection:
    """`all` is every workload but the internal `@` services (those only by name); a tag is
    every workload carrying it."""
    chosen: list[str] = []
    unknown: list[str] = []
    for name in names:
        if name == ALL:
            chosen += sorted(n for n in views if not n.startswith(INTERNAL_PREFIX))
        elif name in views:
            chosen.append(name)
        else:
            unknown.append(name)
    empty: list[str] = []
    for tag in tags:
        tagged = sorted(n for n, view in views.items() if tag in view.get("tags", ()))
        if not tagged:
            empty.append(tag)
        chosen += tagged
    return Selection(list(dict.fromkeys(chosen)), unknown, empty)


@dataclass
class Waited:
    states: dict[str, str] = field(default_factory=dict)  # the last state seen of each
    failed: list[str] = field(default_factory=list)  # settled, but did not come up
    pending: list[str] = field(default_factory=list)  # not settled when the time ran out

    @property
    def ok(self) -> bool:
        return not self.failed and not self.pending


def wait(
    up: bool,
    names: Iterable[str],
    fetch: Callable[[], Views],
    timeout: float,
    now: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    """Poll `fetch` until every name has come up (`up`) or stopped, at most `timeout` s."""
    settling = CHANGING_STATES if up else ACTIVE_STATES
    deadline = now() + timeout
    result = Waited()
    pending = list(dict.fromkeys(names))
    while True:
        views = fetch()
        for name in list(pending):
            view = views.get(name)
            state = str(view["state"]) if view is not None else GONE
            result.states[name] = state
            if view is None or state not in settling:
                pending.remove(name)
                if up and state not in UP_STATES:
                    result.failed.append(name)
        if not pending or now() >= deadline:
            break
        sleep(WAIT_POLL_SECONDS)
    result.pending = pending
    return result
