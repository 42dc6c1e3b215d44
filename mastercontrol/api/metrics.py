"""Prometheus text exposition (format 0.0.4) of one device: workloads and the host.

Owns the metric names, their HELP/TYPE lines and label escaping; it turns the master's `list`
view (asked with metrics: each workload's last run duration too) and a system_metrics() sample
into text and does no I/O.
Host metrics take node_exporter's names and units where one exists (`node_load1`,
`node_memory_MemAvailable_bytes`, `node_filesystem_avail_bytes`, ...). Imports only the stdlib
and engine/states.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from mastercontrol.engine.states import ProcState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[Mapping[str, str], float]


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Exposition:
    """Metric families in the order they are added; each with HELP and TYPE once."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        rows = list(samples)
        if not rows:
            return
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            if labels:
                inner = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
                self._lines.append(f"{name}{{{inner}}} {_number(value)}")
            else:
                self._lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def workload_families(out: Exposition, views: list[dict[str, Any]]) -> None:
    def each(key: str) -> list[Sample]:
        return [
            ({"name": v["name"]}, float(v[key]))
            for v in views
            if isinstance(v.get(key), int | float) and not isinstance(v.get(key), bool)
        ]

    out.family(
        "mastercontrol_workload_info",
        "gauge",
        "Static facts of a workload (value always 1).",
        [
            (
                {
                    "name": v["name"],
                    "type": str(v.get("type") or ""),
                    "run_mode": str(v.get("run_mode") or ""),
                    "version": str(v.get("version") or ""),
                },
                1.0,
            )
            for v in views
        ],
    )
    out.family(
        "mastercontrol_workload_state",
        "gauge",
        "1 for the state the workload is in, 0 for the others.",
        [
            ({"name": v["name"], "state": s.value}, 1.0 if v.get("state") == s.value else 0.0)
            for v in views
            for s in ProcState
        ],
    )
    out.family(
        "mastercontrol_workload_restarts_total",
        "counter",
        "Restarts of the workload since the daemon started.",
        each("restarts"),
    )
    out.family(
        "mastercontrol_workload_log_dropped_bytes_total",
        "counter",
        "Output bytes the workload wrote that its log could not keep (a full disk, a deleted "
        "log dir), since the daemon started.",
        each("log_dropped_bytes"),
    )
    out.family(
        "mastercontrol_workload_runs_total",
        "counter",
        "Runs started (counted durably).",
        each("runs"),
    )
    out.family(
        "mastercontrol_workload_skipped_ticks_total",
        "counter",
        "Cron ticks skipped because the previous run was still going.",
        each("skipped_ticks"),
    )
    out.family(
        "mastercontrol_workload_uptime_seconds",
        "gauge",
        "Seconds the current run has been up.",
        each("uptime_seconds"),
    )
    out.family(
        "mastercontrol_workload_last_run_duration_seconds",
        "gauge",
        "Duration of the workload's last finished run (monotonic clock).",
        each("last_duration"),  # `list` with metrics: the newest run with a measured duration
    )
    exit_codes = [
        ({"name": v["name"]}, float(v["last_exit"]["exit_code"]))
        for v in views
        if isinstance(v.get("last_exit"), dict) and isinstance(v["last_exit"].get("exit_code"), int)
    ]
    out.family(
        "mastercontrol_workload_last_exit_code",
        "gauge",
        "Exit code of the last run that exited on its own.",
        exit_codes,
    )
    proc = [(v["name"], v["metrics"]) for v in views if isinstance(v.get("metrics"), dict)]
    out.family(
        "mastercontrol_workload_resident_memory_bytes",
        "gauge",
        "Resident memory of the workload's process tree.",
        [({"name": n}, float(m["rss_bytes"])) for n, m in proc if _num(m.get("rss_bytes"))],
    )
    out.family(
        "mastercontrol_workload_cpu_ratio",
        "gauge",
        "CPU use of the workload's process tree (1.0 = one core busy).",
        [
            ({"name": n}, float(m["cpu_percent"]) / 100.0)
            for n, m in proc
            if _num(m.get("cpu_percent"))
        ],
    )


def _num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def system_families(out: Exposition, system: Mapping[str, Any]) -> None:
    load = system.get("load") or []
    for i, window in enumerate(("1", "5", "15")):
        if i < len(load) and _num(load[i]):
            out.family(f"node_load{window}", "gauge", f"{window}m load average.", [({}, load[i])])
    memory = system.get("memory") or {}
    for key, name, help_text in (
        ("total_bytes", "node_memory_MemTotal_bytes", "Memory information field MemTotal_bytes."),
        (
            "available_bytes",
            "node_memory_MemAvailable_bytes",
            "Memory information field MemAvailable_bytes.",
        ),
    ):
        if _num(memory.get(key)):
            out.family(name, "gauge", help_text, [({}, memory[key])])
    disks = [(label, d) for label, d in (system.get("disk") or {}).items() if isinstance(d, dict)]
    for key, name, help_text in (
        ("total_bytes", "node_filesystem_size_bytes", "Filesystem size in bytes."),
        ("free_bytes", "node_filesystem_avail_bytes", "Filesystem space available in bytes."),
    ):
        out.family(
            name,
            "gauge",
            help_text,
            [
                ({"label": label, "mountpoint": str(d.get("path", ""))}, d[key])
                for label, d in disks
                if _num(d.get(key))
            ],
        )
    if _num(system.get("uptime_seconds")):
        boot = time.time() - float(system["uptime_seconds"])
        out.family(
            "node_boot_time_seconds", "gauge", "Node boot time, in unixtime.", [({}, round(boot))]
        )
    if _num(system.get("cpu_percent")):
        out.family(
            "mastercontrol_system_cpu_ratio",
            "gauge",
            "CPU use of the whole machine since the previous sample (1.0 = all cores busy).",
            [({}, float(system["cpu_percent"]) / 100.0)],
        )
    if _num(system.get("temperature_c")):
        out.family(
            "mastercontrol_system_temperature_celsius",
            "gauge",
            "SoC temperature.",
            [({}, system["temperature_c"])],
        )
    throttling = system.get("throttling")
    if isinstance(throttling, dict):
        out.family(
            "mastercontrol_system_throttling",
            "gauge",
            "Firmware throttling and under-voltage flags (1 = set).",
            [
                ({"flag": flag}, 1.0 if value else 0.0)
                for flag, value in sorted(throttling.items())
                if isinstance(value, bool)
            ],
        )


def exposition(listing: Mapping[str, Any], system: Mapping[str, Any]) -> str:
    """The whole /metrics page."""
    out = Exposition()
    daemon = listing.get("daemon") or {}
    out.family("mastercontrol_up", "gauge", "1 when the master answered this scrape.", [({}, 1.0)])
    if _num(daemon.get("uptime_seconds")):
        out.family(
            "mastercontrol_daemon_uptime_seconds",
            "gauge",
            "Seconds since mastercontrold started.",
            [({}, daemon["uptime_seconds"])],
        )
    out.family(
        "mastercontrol_build_info",
        "gauge",
        "Daemon version (value always 1).",
        [({"version": str(daemon.get("version", ""))}, 1.0)],
    )
    views = [v for v in listing.get("workloads", []) if isinstance(v, dict) and "name" in v]
    workload_families(out, views)
    system_families(out, system)
    return out.text()
