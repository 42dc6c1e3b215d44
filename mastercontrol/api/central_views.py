"""What the central API answers: JSON views of clients and the fleet, deployment bodies, and
the Prometheus exposition of the control host.

Owns the shape of the central's responses and the checking of deployment bodies; pure
functions over the coalescer's states (no I/O but `store.size_bytes()` for /metrics). Imports
bottle only through api/errors.py; not daemon/ or child/.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from mastercontrol.api.errors import APIError
from mastercontrol.api.intake_link import WorkerCounts
from mastercontrol.api.metrics import CONTENT_TYPE, Exposition
from mastercontrol.fleet.coalescer import Coalescer
from mastercontrol.fleet.fleetstore import ClientState
from mastercontrol.fleet.intake import Heartbeat
from mastercontrol.fleet.liveness import ALL_STATUSES, Liveness

if TYPE_CHECKING:
    from mastercontrol.api.central_app import Central

METRICS_CONTENT_TYPE = CONTENT_TYPE
EVENT_KINDS = ("online", "stale", "offline", "never_seen", "fatal_entered", "fatal_left", "action")
# Workload states that count as failed in the overview (FATAL: given up; BACKOFF: crash loop).
FAILED_STATES = frozenset({"FATAL", "BACKOFF"})
MAX_PROBLEMS = 1000
_STATUS_WORD = re.compile(r"[a-z][a-z_]{0,31}")
MAX_BATCHES = 1000
MAX_BATCH_CLIENTS = 10000


def metrics_of(state: ClientState) -> dict[str, float | None]:
    """The summary metrics of the client's latest heartbeat (the API's and the dashboard's)."""
    return Heartbeat(state.name, 0.0, None, None, None, (), state.system).metrics()


def throttled(system: Mapping[str, Any]) -> bool | None:
    flags = system.get("throttling")
    if not isinstance(flags, dict):
        return None
    return any(v is True for k, v in flags.items() if k != "raw")


def is_failed(workload: Mapping[str, Any]) -> bool:
    """The one rule for "failed" (API, /api/v1/fleet and dashboard alike): FATAL or BACKOFF,
    internal `@` services included. The daemon never gives up on those (no FATAL), so one in
    BACKOFF is a crash loop of the device's own API or heartbeat sender: a failure the operator
    must see, not plumbing to hide."""
    return workload.get("state") in FAILED_STATES


def failed_count(state: ClientState) -> int:
    return sum(1 for w in state.workloads if is_failed(w))


def client_summary(state: ClientState, status: Liveness) -> dict[str, Any]:
    """One overview row."""
    failed = failed_count(state)
    return {
        "name": state.name,
        "status": str(status),
        "host": state.host,
        "tags": list(state.tags),
        "in_inventory": state.in_inventory,
        "release": state.release,
        "daemon_version": state.daemon_version,
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "workloads_total": len(state.workloads),
        "workloads_failed": failed,
        "metrics": metrics_of(state),
        "throttled": throttled(state.system),
    }


def client_detail(state: ClientState, status: Liveness) -> dict[str, Any]:
    view = client_summary(state, status)
    view.update(
        api_url=state.api_url,
        sent_at=state.sent_at,
        workloads=list(state.workloads),
        system=state.system,
    )
    return view


def filter_clients(
    coalescer: Coalescer,
    states: Iterable[ClientState],
    *,
    status: str | None,
    tag: str | None,
    release: str | None,
    search: str | None,
) -> list[tuple[ClientState, Liveness]]:
    out: list[tuple[ClientState, Liveness]] = []
    needle = search.lower() if search else None
    now = coalescer.monotonic()  # one reading for the whole list
    for state in states:
        live = coalescer.liveness(state, now)
        if status is not None and live != status:
            continue
        if tag is not None and tag not in state.tags:
            continue
        if release is not None and state.release != release:
            continue
        if needle is not None and needle not in state.name.lower():
            continue
        out.append((state, live))
    out.sort(key=lambda pair: pair[0].name)
    return out


def fleet_summary(coalescer: Coalescer, states: list[ClientState]) -> dict[str, Any]:
    now = coalescer.monotonic()
    counts: Counter[str] = Counter({str(s): 0 for s in ALL_STATUSES})
    releases: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    problems: list[dict[str, Any]] = []
    for state in states:
        counts[str(coalescer.liveness(state, now))] += 1
        if state.last_seen is None:
            continue
        releases[state.release or "unknown"] += 1
        versions[state.daemon_version or "unknown"] += 1
        for w in state.workloads:
            if is_failed(w) and len(problems) < MAX_PROBLEMS:
                problems.append(
                    {"client": state.name, "workload": w.get("name"), "state": w.get("state"),
                     "restarts": w.get("restarts")}
                )  # fmt: skip
    problems.sort(key=lambda p: (str(p["client"]), str(p["workload"])))
    return {
        "clients": len(states),
        "by_status": dict(counts),
        "releases": dict(releases.most_common()),
        "daemon_versions": dict(versions.most_common()),
        "failing_workloads": problems,
        "in_grace": coalescer.rule.in_grace(now),
    }


def query_number(raw: str | None, name: str, default: float | None) -> float | None:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise APIError(400, "bad_request", f"{name} must be a number (epoch seconds)") from None
    if not math.isfinite(value):
        raise APIError(400, "bad_request", f"{name} must be a finite number")
    return value


def is_error_body(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def error_of(body: Any) -> Any:
    return body.get("error") if is_error_body(body) else None


# -- deployments -------------------------------------------------------------------------------

_DEPLOYMENT_TEXT = {"release": 256, "actor": 256, "message": 4096}


def deployment_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    """The fields of a POST (partial=False) or PATCH body, checked; 400 on anything else."""
    if not isinstance(body, dict):
        raise APIError(400, "bad_request", "body must be a JSON object")
    allowed = {"status", "batches", *_DEPLOYMENT_TEXT}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise APIError(400, "bad_request", f"unknown field(s): {', '.join(unknown)}")
    if partial and not body:
        raise APIError(400, "bad_request", "nothing to change")
    out: dict[str, Any] = {}
    for key, cap in _DEPLOYMENT_TEXT.items():
        if key in body:
            value = body[key]
            if value is not None and (not isinstance(value, str) or len(value) > cap):
                raise APIError(400, "bad_request", f"{key} must be a string of at most {cap}")
            out[key] = value
    if "status" in body or not partial:
        out["status"] = _status_word(body.get("status", "pending"), "status")
    if "batches" in body:
        out["batches"] = _batches(body["batches"])
    return out


def _status_word(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _STATUS_WORD.fullmatch(value):
        raise APIError(400, "bad_request", f"{where} must be a lower-case word (a-z, _)")
    return value


def _batches(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > MAX_BATCHES:
        raise APIError(400, "bad_request", f"batches must be a list of at most {MAX_BATCHES}")
    out = []
    for i, batch in enumerate(raw):
        if not isinstance(batch, dict):
            raise APIError(400, "bad_request", f"batches[{i}] must be an object")
        clients = batch.get("clients", [])
        if not isinstance(clients, list) or len(clients) > MAX_BATCH_CLIENTS:
            raise APIError(400, "bad_request", f"batches[{i}].clients must be a list")
        checked = []
        for j, c in enumerate(clients):
            where = f"batches[{i}].clients[{j}]"
            if not isinstance(c, dict) or not isinstance(c.get("name"), str):
                raise APIError(400, "bad_request", f"{where} must be an object with a name")
            message = c.get("message")
            if message is not None and not isinstance(message, str):
                raise APIError(400, "bad_request", f"{where}.message must be a string")
            checked.append(
                {"name": c["name"][:128], "status": _status_word(c.get("status", "pending"),
                 f"{where}.status"), "message": message[:4096] if message else None}
            )  # fmt: skip
        out.append(
            {"index": i, "status": _status_word(batch.get("status", "pending"),
             f"batches[{i}].status"), "clients": checked}
        )  # fmt: skip
    return out


# -- /metrics ----------------------------------------------------------------------------------


def exposition(central: Central, states: list[ClientState]) -> str:
    out = Exposition()
    now = central.coalescer.monotonic()
    counts: Counter[str] = Counter({str(s): 0 for s in ALL_STATUSES})
    for state in states:
        counts[str(central.coalescer.liveness(state, now))] += 1
    out.family(
        "mastercontrol_central_clients", "gauge", "Clients the central knows, by status.",
        [({"status": k}, float(v)) for k, v in sorted(counts.items())],
    )  # fmt: skip
    out.family(
        "mastercontrol_central_heartbeats_total", "counter",
        "Heartbeats accepted since the central started.",
        [({}, float(central.coalescer.heartbeats))],
    )  # fmt: skip
    out.family(
        "mastercontrol_central_heartbeats_rejected_total", "counter",
        "Heartbeats refused since the central started, by reason.",
        [({"reason": r}, float(n)) for r, n in sorted(central.rejected.items())],
    )  # fmt: skip
    last = central.coalescer.last_flush
    if last is not None:
        out.family(
            "mastercontrol_central_flush_seconds", "gauge",
            "Duration of the last flush of coalesced heartbeats to the fleet DB.",
            [({}, last.seconds)],
        )  # fmt: skip
        out.family(
            "mastercontrol_central_flush_clients", "gauge",
            "Clients written by the last flush.", [({}, float(last.clients))],
        )  # fmt: skip
    out.family(
        "mastercontrol_central_flush_errors_total", "counter",
        "Flushes that failed (their data is kept for the next one).",
        [({}, float(central.flush_errors))],
    )  # fmt: skip
    out.family(
        "mastercontrol_central_db_bytes", "gauge", "Size of the fleet DB and its WAL.",
        [({}, float(central.store.size_bytes()))],
    )  # fmt: skip
    workers = central.intake_counts()
    if workers:
        _intake_families(out, workers)
    return out.text()


def _intake_families(out: Exposition, workers: list[WorkerCounts]) -> None:
    """The intake workers (central.intake_workers > 0), one series per worker slot."""
    families: tuple[tuple[str, str, str, str], ...] = (
        ("up", "gauge", "Whether the intake worker is running.", "alive"),
        ("heartbeats_total", "counter", "Heartbeats the intake worker accepted and handed over.",
         "heartbeats"),
        ("shed_total", "counter", "Heartbeats the intake worker shed for load (503).", "shed"),
        ("restarts_total", "counter", "Times the intake worker was restarted after dying.",
         "restarts"),
    )  # fmt: skip
    for name, kind, help_text, attr in families:
        out.family(
            f"mastercontrol_central_intake_{name}", kind, help_text,
            [({"worker": str(w.worker)}, float(getattr(w, attr))) for w in workers],
        )  # fmt: skip
