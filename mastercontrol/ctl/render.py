"""Human output of mastercontrol-ctl: aligned tables and status blocks. Pure formatting.

Imports only the standard library.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def duration(seconds: float | None) -> str:
    """Compact human duration: 45s, 12m03s, 5h07m, 3d04h."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def when(epoch: float | None, now: float | None = None) -> str:
    """A wall time as local 'YYYY-mm-dd HH:MM:SS' plus a relative hint."""
    if epoch is None:
        return "-"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
    delta = epoch - now
    rel = f"in {duration(delta)}" if delta >= 0 else f"{duration(-delta)} ago"
    return f"{stamp} ({rel})"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return "\n".join(lines)


def failed_note(w: dict[str, Any]) -> str:
    """ "1 failed: timeout" (the newest failure's reason), or "" when no run failed."""
    failed = w.get("failed_runs") or 0
    if not failed:
        return ""
    reason = w.get("last_failure_reason")
    return f"{failed} failed: {reason}" if reason else f"{failed} failed"


def info_of(w: dict[str, Any], now: float) -> str:
    """The one most useful fact about a workload in its state; for scripts and agents, which
    do not go BACKOFF or FATAL when a run fails, the failed runs too."""
    info = _state_info(w, now)
    note = failed_note(w) if w.get("run_mode") != "forever" else ""
    if not note:
        return info
    return f"{info} ({note})" if info else note


def _state_info(w: dict[str, Any], now: float) -> str:
    state = w["state"]
    last = w.get("last_exit") or {}
    if w.get("held"):
        return f"held: state database lost; 'reset {w['name']}' to run"
    if state in ("RUNNING", "STARTING", "STOPPING"):
        return f"uptime {duration(w.get('uptime_seconds'))}"
    if state == "SCHEDULED":
        return f"next {when(w.get('next_run_at'), now)}"
    if state in ("BACKOFF", "FATAL"):
        retry = w.get("retry_at")
        tail = f", retry {when(retry, now)}" if retry else ""
        return f"{last.get('text', '')}{tail}"
    if state == "COMPLETED":
        return f"{w['runs']}/{w.get('max_runs')} runs done"
    if last:
        return str(last.get("text", ""))
    return ""


def workload_table(workloads: list[dict[str, Any]], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = []
    for w in workloads:
        runs = str(w["runs"])
        if w.get("max_runs"):
            runs += f"/{w['max_runs']}"
        rows.append(
            [
                w["name"],
                w["type"],
                w["state"],
                str(w["pid"]) if w.get("pid") else "-",
                runs,
                str(w["restarts"]),
                info_of(w, now),
            ]
        )
    return table(["NAME", "TYPE", "STATE", "PID", "RUNS", "RESTARTS", "INFO"], rows)


def status_block(w: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    last = w.get("last_exit")
    lines = [
        ("name", w["name"]),
        ("type", f"{w['type']} ({w['run_mode']})"),
        ("state", w["state"] + (" (stopped by operator)" if w.get("operator_stopped") else "")),
        *([("held", f"until 'mastercontrol-ctl reset {w['name']}'")] if w.get("held") else []),
        ("pid", str(w["pid"]) if w.get("pid") else "-"),
        ("uptime", duration(w.get("uptime_seconds"))),
        ("runs", f"{w['runs']}" + (f" of {w['max_runs']}" if w.get("max_runs") else "")),
        ("restarts", str(w["restarts"])),
    ]
    if w.get("schedule"):
        lines.append(("schedule", w["schedule"]))
        lines.append(("next run", when(w.get("next_run_at"), now)))
        lines.append(("skipped ticks", str(w.get("skipped_ticks", 0))))
    if last:
        lines.append(("last exit", f"{last['text']} (reason {last['reason']})"))
        lines.append(("last exit at", when(last.get("at"), now)))
    if w.get("failed_runs"):
        lines.append(("failed runs", failed_note(w)))
    if w.get("retry_at"):
        lines.append(("retry", when(w["retry_at"], now)))
    metrics = w.get("metrics")
    if metrics:
        lines.append(("cpu", f"{metrics.get('cpu_percent', 0):.1f}%"))
        lines.append(("rss", f"{metrics.get('rss_bytes', 0) / 2**20:.1f} MiB"))
    if w.get("version"):
        lines.append(("version", str(w["version"])))
    if w.get("tags"):
        lines.append(("tags", ", ".join(w["tags"])))
    if w.get("log_path"):
        lines.append(("log", str(w["log_path"])))
    width = max(len(k) for k, _ in lines)
    out = [f"{k + ':':<{width + 1}} {v}" for k, v in lines]
    if w.get("degraded"):
        out[:0] = [degraded_block(w["degraded"]), ""]
    runs = w.get("recent_runs") or []
    if runs:
        out.append("")
        out.append("recent runs:")
        rows = [
            [
                str(r.get("id")),
                when(r.get("started_at"), now),
                str(r.get("pid") or "-"),
                duration(r.get("duration")),
                str(r.get("reason") or "running"),
                str(r.get("text") or ""),
            ]
            for r in runs
        ]
        out.append(table(["RUN", "STARTED", "PID", "TOOK", "REASON", "RESULT"], rows))
    return "\n".join(out)


def degraded_block(degraded: dict[str, Any]) -> str:
    """What `list` and `status` say while the state database is lost (daemon/degraded.py)."""
    held = degraded.get("held") or []
    lines = [
        f"DEGRADED: {degraded.get('reason', 'the state database was lost')}",
        f"  held (counted workloads, not started): {', '.join(held) if held else 'none'}",
        "  decide: 'mastercontrol-ctl reset NAME' starts NAME's count from 0; "
        "'mastercontrol-ctl reset --all' (or 'up --accept-lost-state') accepts for all",
    ]
    return "\n".join(lines)
