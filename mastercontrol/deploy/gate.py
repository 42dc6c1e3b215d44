"""The health gate after each wave: every client reports the new release and no workload FATAL
or crash-looping, continuously for `min_healthy_seconds`, within `health_deadline_seconds`.

`judge()` is the pure rule over one snapshot; `wait()` polls each client (its client API, the
central's view of it (deploy/central.py), or any probe given) with an injected clock, bounded by
the deadline. A FATAL workload or a wrong release
after the switch fails the client at once; BACKOFF, STARTING and a rising restart count reset its
healthy streak.

Imports only the standard library and fleet/no_redirects.py (the token never follows a
redirect); no fabric, no daemon, no API code (it speaks HTTP to it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mastercontrol.fleet.no_redirects import call_json

# Not healthy (yet): the workload is (re)starting or waiting to be restarted.
_NOT_YET = frozenset(("STARTING", "BACKOFF"))
_FAILED = frozenset(("FATAL",))


@dataclass(frozen=True)
class Snapshot:
    """What one client said, or why it said nothing (`error`)."""

    release: str | None = None
    workloads: tuple[dict[str, Any], ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    final: bool  # no point waiting: the client failed
    reason: str


def judge(snap: Snapshot, release: str, restarts_at_start: dict[str, int]) -> Verdict:
    """The gate's rule for one snapshot (pure)."""
    if snap.error is not None:
        return Verdict(False, False, f"not answering: {snap.error}")
    if snap.release != release:
        return Verdict(False, False, f"reports release {snap.release!r}, not {release!r}")
    for w in snap.workloads:
        name, state = str(w.get("name")), str(w.get("state"))
        if state in _FAILED:
            return Verdict(False, True, f"workload {name} is {state}")
        if state in _NOT_YET:
            return Verdict(False, False, f"workload {name} is {state}")
        restarts = w.get("restarts")
        if isinstance(restarts, int) and restarts > restarts_at_start.get(name, restarts):
            return Verdict(False, False, f"workload {name} restarted (crash loop?)")
    return Verdict(True, False, "healthy")


Probe = Callable[[], Snapshot]


def api_probe(api_url: str, token: str | None, timeout: float = 5.0) -> Probe:
    """A probe asking a client's API (`GET /api/v1/status` and `/api/v1/workloads`)."""
    base = api_url.rstrip("/")

    def get(path: str) -> Any:
        return call_json(base + path, token, timeout=timeout, max_bytes=4 * 1024 * 1024)

    def probe() -> Snapshot:
        try:
            status = get("/api/v1/status")
            workloads = get("/api/v1/workloads")
        except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
            return Snapshot(error=str(exc) or type(exc).__name__)
        items = workloads.get("workloads", []) if isinstance(workloads, dict) else []
        release = status.get("release") if isinstance(status, dict) else None
        return Snapshot(release=release, workloads=tuple(w for w in items if isinstance(w, dict)))

    return probe


def first_answer(*probes: Probe) -> Probe:
    """A probe that asks `probes` in turn and keeps the first answer; when none answers, the
    reasons of all (a client API not reachable from the control host, then the central)."""

    def probe() -> Snapshot:
        errors = []
        for p in probes:
            snap = p()
            if snap.error is None:
                return snap
            errors.append(snap.error)
        return Snapshot(error="; ".join(errors))

    return probe


def _restarts(snap: Snapshot) -> dict[str, int]:
    return {str(w.get("name")): int(w.get("restarts") or 0) for w in snap.workloads}


@dataclass
class _Track:
    probe: Probe
    healthy_since: float | None = None
    restarts: dict[str, int] = field(default_factory=dict)
    verdict: Verdict = field(default_factory=lambda: Verdict(False, False, "not asked yet"))
    done: bool = False


def wait(
    probes: dict[str, Probe],
    release: str,
    deadline_seconds: float,
    min_healthy_seconds: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = 0.5,
) -> dict[str, Verdict]:
    """Poll every probe until each client passed or failed; the verdict per client name.

    A client passes once it has been healthy for `min_healthy_seconds` without a break; at the
    deadline every client not passed yet fails with its last reason.
    """
    start = clock()
    tracks = {name: _Track(p) for name, p in probes.items()}
    while True:
        now = clock()
        for t in tracks.values():
            if t.done:
                continue
            snap = t.probe()
            if not t.restarts:
                t.restarts = _restarts(snap)
            v = judge(snap, release, t.restarts)
            if v.final:
                t.verdict, t.done = v, True
            elif not v.healthy:
                t.verdict, t.healthy_since = v, None
                if snap.workloads:  # a restart breaks the streak; the next one counts afresh
                    t.restarts = _restarts(snap)
            else:
                t.healthy_since = now if t.healthy_since is None else t.healthy_since
                if now - t.healthy_since >= min_healthy_seconds:
                    t.verdict, t.done = Verdict(True, True, "healthy"), True
        if all(t.done for t in tracks.values()):
            break
        if clock() - start >= deadline_seconds:
            for t in tracks.values():
                if not t.done:
                    t.verdict = Verdict(
                        False, True, f"not healthy within {deadline_seconds:g}s: {t.verdict.reason}"
                    )
            break
        sleep(interval)
    return {name: t.verdict for name, t in tracks.items()}
