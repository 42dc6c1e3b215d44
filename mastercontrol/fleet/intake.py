"""What the central accepts as a heartbeat body: validation into a small frozen `Heartbeat`.

Owns the central's reading of the body that the heartbeat sender (fleet/heartbeat.py) builds:
`client_name`, `sent_at`, `daemon_version`, `release`, `workloads`, `system`, `api_url`.
Unknown keys are ignored (a newer client may send more); known keys must have their type, and
every problem is reported at once. Only the fields the central keeps survive, each bounded, so
a hostile body cannot make the in-memory state grow. The metrics-only history sample is
derived here too. Imports only the standard library; never daemon/, child/, api/ or bottle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,128}")
MAX_WORKLOADS = 1000
MAX_TEXT = 256  # versions, release ids, states, exit texts
MAX_URL = 512
MAX_ITEMS = 64  # per object or list in `system` and `last_exit`
MAX_INT = 2**63 - 1  # what sqlite and every JSON reader hold; a larger int is dropped
# Workload fields the central keeps (everything else in a workload object is dropped).
WORKLOAD_FIELDS = (
    "name", "state", "pid", "version", "runs", "restarts", "last_exit", "internal", "started_at",
)  # fmt: skip
# The history keeps these numbers only, never a whole body.
METRICS = ("cpu_percent", "memory_used_percent", "disk_used_percent", "temperature_c", "load1")
FATAL = "FATAL"


class HeartbeatInvalid(ValueError):
    """The body is not a heartbeat; `problems` says every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Heartbeat:
    client_name: str
    sent_at: float
    daemon_version: str | None
    release: str | None
    api_url: str | None
    workloads: tuple[dict[str, Any], ...]
    system: dict[str, Any]

    def metrics(self) -> dict[str, float | None]:
        """The history sample: a few numbers out of `system` (None where not reported)."""
        s = self.system
        memory = s.get("memory")
        disks = s.get("disk")
        load = s.get("load")
        disk_used = [
            d["used_percent"]
            for d in (disks.values() if isinstance(disks, dict) else ())
            if isinstance(d, dict) and _is_number(d.get("used_percent"))
        ]
        return {
            "cpu_percent": _number_or_none(s.get("cpu_percent")),
            "memory_used_percent": _number_or_none(
                memory.get("used_percent") if isinstance(memory, dict) else None
            ),
            "disk_used_percent": float(max(disk_used)) if disk_used else None,
            "temperature_c": _number_or_none(s.get("temperature_c")),
            "load1": _number_or_none(load[0] if isinstance(load, list) and load else None),
        }

    def fatal_workloads(self) -> frozenset[str]:
        return frozenset(str(w["name"]) for w in self.workloads if w.get("state") == FATAL)


def parse_heartbeat(body: Any) -> Heartbeat:
    """The heartbeat in `body` (decoded JSON), or HeartbeatInvalid listing every problem."""
    problems: list[str] = []
    if not isinstance(body, dict):
        raise HeartbeatInvalid(["the body must be a JSON object"])
    name = body.get("client_name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.append("client_name: required, 1-128 of letters, digits, '_', '.', '-'")
    sent_at = _number_or_none(body.get("sent_at"))
    if sent_at is None or sent_at < 0:
        problems.append("sent_at: required, epoch seconds (a non-negative number)")
    daemon_version = _optional_text(body, "daemon_version", problems)
    release = _optional_text(body, "release", problems)
    api_url = _optional_url(body, problems)
    workloads = _workloads(body.get("workloads", []), problems)
    system = body.get("system", {})
    if system is None:
        system = {}
    if not isinstance(system, dict):
        problems.append("system: must be an object")
        system = {}
    if problems:
        raise HeartbeatInvalid(problems)
    assert isinstance(name, str) and sent_at is not None
    return Heartbeat(
        client_name=name,
        sent_at=sent_at,
        daemon_version=daemon_version,
        release=release,
        api_url=api_url,
        workloads=workloads,
        system=_bounded_system(system),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number_or_none(value: Any) -> float | None:
    """A finite number as float, else None (an int too large for a float is None, not an
    OverflowError: JSON allows 1 followed by 400 zeros)."""
    if not _is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _optional_text(body: Mapping[str, Any], key: str, problems: list[str]) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        problems.append(f"{key}: must be a string of at most {MAX_TEXT} characters or null")
        return None
    return value


def _optional_url(body: Mapping[str, Any], problems: list[str]) -> str | None:
    value = body.get("api_url")
    if value is None:
        return None
    ok = isinstance(value, str) and len(value) <= MAX_URL
    if ok:
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # raises ValueError on a port out of range
        except ValueError:
            ok = False
    if not ok:
        problems.append("api_url: must be an http:// or https:// URL or null")
        return None
    assert isinstance(value, str)
    return value.rstrip("/")


def _workloads(raw: Any, problems: list[str]) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_WORKLOADS:
        problems.append(f"workloads: must be a list of at most {MAX_WORKLOADS} objects")
        return ()
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            problems.append(f"workloads[{i}]: must be an object")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name.lstrip("@")):
            problems.append(f"workloads[{i}].name: required, a workload name")
            continue
        state = item.get("state")
        if not isinstance(state, str) or len(state) > MAX_TEXT:
            problems.append(f"workloads[{i}].state: required, a string")
            continue
        kept: dict[str, Any] = {"name": name, "state": state}
        for key in ("pid", "runs", "restarts"):
            value = item.get(key)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool)):
                problems.append(f"workloads[{i}].{key}: must be an integer or null")
            kept[key] = value
        version = item.get("version")
        kept["version"] = version if isinstance(version, str) and len(version) <= MAX_TEXT else None
        kept["last_exit"] = _bounded_json(item.get("last_exit"), depth=2)
        kept["internal"] = item.get("internal") is True
        # The device's wall clock: uptime = sent_at - this.
        kept["started_at"] = _number_or_none(item.get("started_at"))
        out.append(kept)
    return tuple(out)


def _bounded_system(system: dict[str, Any]) -> dict[str, Any]:
    """`system` with only JSON scalars and shallow containers, strings cut to MAX_TEXT."""
    bounded = _bounded_json(system, depth=3)
    return bounded if isinstance(bounded, dict) else {}


def _bounded_json(value: Any, depth: int) -> Any:
    # Dispatch on the exact type first (json.loads makes exactly these): this runs for every
    # value of every heartbeat, and isinstance chains were a measurable part of its cost.
    kind = type(value)
    if kind is str:
        return value[:MAX_TEXT]
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value if -MAX_INT <= value <= MAX_INT else None
    if value is None or kind is bool:
        return value
    if depth <= 0:
        return None
    if kind is dict:
        items = value.items() if len(value) <= MAX_ITEMS else list(value.items())[:MAX_ITEMS]
        return {
            (k[:MAX_TEXT] if type(k) is str else str(k)[:MAX_TEXT]): _bounded_json(v, depth - 1)
            for k, v in items
        }
    if kind is list:
        return [_bounded_json(v, depth - 1) for v in value[:MAX_ITEMS]]
    return None  # not a JSON value (json.loads makes exactly the types above)
