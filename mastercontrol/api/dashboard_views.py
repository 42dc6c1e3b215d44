"""What the dashboard shows, as plain data: the overview's rows (filtered, sorted, paged), the
client page's workloads and charts, and the small formatting of numbers and ages.

Owns the reading of the dashboard's query strings (a bad value falls back to the default: a
page, never an error) and the inline-SVG chart geometry. Pure functions over the coalescer's
states and the store's history points; no I/O, no bottle. HTML escaping is the templates' job
({{ }} escapes; nothing here builds markup). Imports the standard library and fleet/ only; not
daemon/ or child/.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from mastercontrol.api.central_views import failed_count, metrics_of, throttled
from mastercontrol.fleet.fleetstore import ClientState
from mastercontrol.fleet.liveness import ALL_STATUSES, Liveness

PER_PAGE = 100
MAX_PER_PAGE = 500
STATUS_LABEL = {
    "online": "online",
    "stale": "stale",
    "offline": "offline",
    "never_seen": "never seen",
}
SORT_KEYS = ("name", "status", "release", "cpu", "memory", "disk", "temp", "failed", "last_seen")
_STATUS_ORDER = {str(s): i for i, s in enumerate(ALL_STATUSES)}
DASH = "\u2013"  # an en dash: "no value"
CHART_W = 300
CHART_H = 80


@dataclass(frozen=True)
class Row:
    name: str
    status: str
    release: str | None
    cpu: float | None
    memory: float | None
    disk: float | None
    temp: float | None
    throttled: bool | None
    ok: int
    failed: int
    last_seen: float | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class OverviewQuery:
    status: str | None = None
    tag: str | None = None
    search: str | None = None
    sort: str = "name"
    desc: bool = False
    page: int = 1
    per: int = PER_PAGE

    def params(self, **over: Any) -> str:
        """This query as a query string, with `over` replacing fields (None/default dropped)."""
        values: dict[str, Any] = {
            "status": self.status,
            "tag": self.tag,
            "q": self.search,
            "sort": self.sort,
            "dir": "desc" if self.desc else "asc",
            "page": self.page,
            "per": self.per,
        }
        values.update(over)
        defaults = {"sort": "name", "dir": "asc", "page": 1, "per": PER_PAGE}
        kept = {k: v for k, v in values.items() if v not in (None, "") and defaults.get(k) != v}
        return "?" + urlencode(kept) if kept else "?"

    def sort_link(self, key: str) -> str:
        desc = not self.desc if key == self.sort else key in ("cpu", "memory", "disk", "temp")
        return self.params(sort=key, dir="desc" if desc else "asc", page=1)


@dataclass(frozen=True)
class Overview:
    rows: list[Row]
    total: int  # rows matching the filter
    fleet: int  # every client
    counts: dict[str, int]
    tags: list[str]
    page: int
    pages: int
    query: OverviewQuery


def int_in(raw: str | None, default: int, lo: int, hi: int) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        return default
    return min(max(value, lo), hi)


def parse_query(q: Mapping[str, str]) -> OverviewQuery:
    status = q.get("status") or None
    sort = q.get("sort") or "name"
    search = (q.get("q") or "").strip()[:128] or None
    tag = (q.get("tag") or "").strip()[:128] or None
    return OverviewQuery(
        status=status if status in STATUS_LABEL else None,
        tag=tag,
        search=search,
        sort=sort if sort in SORT_KEYS else "name",
        desc=q.get("dir") == "desc",
        page=int_in(q.get("page"), 1, 1, 10**6),
        per=int_in(q.get("per"), PER_PAGE, 10, MAX_PER_PAGE),
    )


def make_row(state: ClientState, status: Liveness | str) -> Row:
    m = metrics_of(state)
    failed = failed_count(state)
    return Row(
        name=state.name,
        status=str(status),
        release=state.release,
        cpu=m["cpu_percent"],
        memory=m["memory_used_percent"],
        disk=m["disk_used_percent"],
        temp=m["temperature_c"],
        throttled=throttled(state.system),
        ok=len(state.workloads) - failed,
        failed=failed,
        last_seen=state.last_seen,
        tags=state.tags,
    )


def _number(v: Any) -> float | None:
    return float(v) if _finite(v) else None


def metric(state: ClientState, key: str) -> float | None:
    """One overview number, read straight from `system` (sorting 10,000 clients by CPU must
    not build 10,000 rows: only the page's rows are built)."""
    s = state.system
    if key == "cpu":
        return _number(s.get("cpu_percent"))
    if key == "temp":
        return _number(s.get("temperature_c"))
    if key == "memory":
        memory = s.get("memory")
        return _number(memory.get("used_percent")) if isinstance(memory, dict) else None
    disks = s.get("disk")
    used = [
        float(d["used_percent"])
        for d in (disks.values() if isinstance(disks, dict) else ())
        if isinstance(d, dict) and _finite(d.get("used_percent"))
    ]
    return max(used) if used else None


Pair = tuple[ClientState, str]


def _sort_key(sort: str) -> Callable[[Pair], Any]:
    """The key of `sort`; numbers as (unknown, value) so unknowns can be put last."""
    if sort in ("cpu", "memory", "disk", "temp"):

        def by_metric(p: Pair) -> Any:
            value = metric(p[0], sort)
            return (value is None, value or 0.0)

        return by_metric
    keys: dict[str, Callable[[Pair], Any]] = {
        "name": lambda p: p[0].name,
        "status": lambda p: _STATUS_ORDER.get(p[1], 9),
        "release": lambda p: (p[0].release is None, p[0].release or ""),
        "failed": lambda p: failed_count(p[0]),
        "last_seen": lambda p: (p[0].last_seen is None, p[0].last_seen or 0.0),
    }
    return keys[sort]


def overview(pairs: Iterable[tuple[ClientState, Liveness | str]], q: OverviewQuery) -> Overview:
    counts: Counter[str] = Counter({str(s): 0 for s in ALL_STATUSES})
    tags: set[str] = set()
    matched: list[Pair] = []
    needle = q.search.lower() if q.search else None
    fleet = 0
    for state, live in pairs:
        status = str(live)
        fleet += 1
        counts[status] += 1
        tags.update(state.tags)
        if q.status is not None and status != q.status:
            continue
        if q.tag is not None and q.tag not in state.tags:
            continue
        if needle is not None and needle not in state.name.lower():
            continue
        matched.append((state, status))
    matched.sort(key=lambda p: p[0].name)  # ties in name order (the sorts are stable)
    if q.sort != "name" or q.desc:
        key = _sort_key(q.sort)
        if q.desc and q.sort in ("cpu", "memory", "disk", "temp", "release", "last_seen"):
            # Descending by value, unknowns still last: sort by value, then by "unknown".
            matched.sort(key=lambda p: key(p)[1], reverse=True)
            matched.sort(key=lambda p: key(p)[0])
        else:
            matched.sort(key=key, reverse=q.desc)
    pages = max(1, math.ceil(len(matched) / q.per))
    page = min(q.page, pages)
    start = (page - 1) * q.per
    return Overview(
        rows=[make_row(s, st) for s, st in matched[start : start + q.per]],
        total=len(matched),
        fleet=fleet,
        counts=dict(counts),
        tags=sorted(tags),
        page=page,
        pages=pages,
        query=q,
    )


# -- the client page -----------------------------------------------------------------------


def workload_rows(state: ClientState, now: float) -> list[dict[str, Any]]:
    """Workloads for the client page, user workloads first; uptime as of now (device clock:
    the heartbeat's `sent_at - started_at`, plus the time since the central received it)."""
    out = []
    for w in state.workloads:
        started, sent, seen = w.get("started_at"), state.sent_at, state.last_seen
        uptime = None
        if (
            sent is not None
            and seen is not None
            and isinstance(started, int | float)
            and _finite(sent)
            and _finite(started)
        ):
            uptime = max(0.0, sent - started) + max(0.0, now - seen)
        out.append({**w, "uptime": uptime, "exit": exit_text(w.get("last_exit"))})
    out.sort(key=lambda w: (bool(w.get("internal")), str(w.get("name"))))
    return out


def exit_text(last_exit: Any) -> str:
    if last_exit is None:
        return ""
    if isinstance(last_exit, dict):
        if isinstance(last_exit.get("text"), str):  # the daemon's own words: "exit status 1"
            return str(last_exit["text"])[:200]
        parts = [f"{k}={v}" for k, v in last_exit.items() if v is not None and k != "at"]
        return ", ".join(parts)[:200]
    return str(last_exit)[:200]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    points: str  # "x,y x,y ..." for an SVG polyline, "" with fewer than two samples
    latest: float | None
    lo: float
    hi: float
    samples: int
    start: float  # wall time of the left edge (the first sample, or `since`)


MIN_SPAN = 300.0  # the x axis spans at least 5 minutes, so a young history is not a dot


def chart(
    title: str,
    unit: str,
    points: list[dict[str, Any]],
    since: float,
    now: float,
    fixed: tuple[float, float] | None = None,
) -> Chart:
    """A polyline of the store's history points ({"at", "value"}) from the first sample on or
    after `since` to `now`; the y range is `fixed` or the data's own."""
    values = [
        (float(p["at"]), float(p["value"]))
        for p in points
        if _finite(p.get("at")) and _finite(p.get("value"))
    ]
    values.sort()
    if fixed is not None:
        lo, hi = fixed
    elif values:
        lo = min(v for _, v in values)
        hi = max(v for _, v in values)
        pad = max((hi - lo) * 0.1, 1.0)
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = 0.0, 100.0
    start = max(since, min(values[0][0], now - MIN_SPAN)) if values else since
    span_t = max(now - start, 1.0)
    span_v = max(hi - lo, 1e-9)
    coords = []
    for at, v in values:
        x = (min(max(at, start), now) - start) / span_t * CHART_W
        y = CHART_H - (min(max(v, lo), hi) - lo) / span_v * CHART_H
        coords.append(f"{x:.1f},{y:.1f}")
    return Chart(
        title=title,
        unit=unit,
        points=" ".join(coords) if len(coords) > 1 else "",
        latest=values[-1][1] if values else None,
        lo=lo,
        hi=hi,
        samples=len(values),
        start=start,
    )


# -- formatting ----------------------------------------------------------------------------


def num(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:.{digits}f}{unit}"


# (unit seconds, name, sub-unit seconds, name): "3 d 4 h", "5 h 7 min", "12 min", "45 s".
# (ctl/render.py has the terminal's compact form; api/ may not import ctl/.)
_UNITS = ((86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 0, ""))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    s = int(max(seconds, 0))
    for size, name, sub, sub_name in _UNITS:
        if s >= size:
            rest = f" {s % size // sub} {sub_name}" if sub else ""
            return f"{s // size} {name}{rest}"
    return f"{s} s"


def clock_time(at: float | None) -> str:
    if not _finite(at):
        return DASH
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(at)))  # type: ignore[arg-type]


def hh_mm(at: float) -> str:
    return time.strftime("%H:%M", time.gmtime(at))


def ago(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    return duration(now - at) + " ago"
