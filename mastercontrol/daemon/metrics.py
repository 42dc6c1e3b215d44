"""Sample workload processes and the host with psutil, cheaply and without blocking.

The master calls this from a timer (`daemon.sample_interval`, 10 s by default); every call
returns at once. Samples are frozen dataclasses whose `to_dict()` gives JSON-ready dicts with
stable keys: they go into `status --json`, `list --json`, the HTTP API and heartbeats.

Cost, per interval:
- `ProcessSampler.sample(pid)`: one `oneshot()` per process, i.e. a read of /proc/PID/stat,
  /proc/PID/status and /proc/PID/statm plus a listdir of /proc/PID/fd. No USS (it reads
  smaps, far more expensive).
- `ProcessSampler.sample_tree(pid)`: the same for every descendant, plus one scan of
  /proc/*/stat over *all* processes of the machine to find the children (psutil's
  `children(recursive=True)`). Use it where the sum is needed (max_rss_mb), not everywhere.
- `system_sample(paths)`: a handful of /proc and /sys reads and one statvfs per filesystem.

Imports only the standard library and psutil; it must not import engine, store or api code.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

# psutil's three ways of saying "that process is no longer yours to look at".
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)

# Sensor chips that measure the SoC/CPU, best first: Raspberry Pi (cpu_thermal), Intel
# (coretemp), AMD (k10temp), other ARM boards (soc_thermal, cpu-thermal...).
PREFERRED_SENSORS = (
    "cpu_thermal",
    "cpu-thermal",
    "coretemp",
    "k10temp",
    "soc_thermal",
    "soc-thermal",
    "cpu0_thermal",
    "x86_pkg_temp",
    "acpitz",
)
# Readings outside this range are a missing/broken sensor (some report 0 or -273), not a board.
_PLAUSIBLE_C = (-40.0, 150.0)
THERMAL_ROOT = "/sys/class/thermal"


@dataclass(frozen=True)
class ProcSample:
    """One process (or a process tree, summed) at one moment."""

    pid: int
    cpu_percent: float  # since the previous sample of this pid; 0.0 on the first one
    rss_bytes: int
    threads: int
    fds: int
    create_time: float  # wall clock (epoch seconds), for display only
    processes: int = 1  # how many processes were summed (1 for `sample`)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "cpu_percent": round(self.cpu_percent, 1),
            "rss_bytes": self.rss_bytes,
            "threads": self.threads,
            "fds": self.fds,
            "create_time": self.create_time,
            "processes": self.processes,
        }


@dataclass(frozen=True)
class DiskSample:
    path: str
    total: int
    used: int
    free: int
    percent: float

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "used": self.used, "free": self.free, "percent": self.percent}


@dataclass(frozen=True)
class SystemSample:
    """The host at one moment."""

    load: tuple[float, float, float]
    cpu_percent: float  # since the previous system_sample() call; 0.0 on the first one
    memory_total: int
    memory_available: int
    memory_percent: float
    swap_percent: float
    disks: tuple[DiskSample, ...]
    temperature_c: float | None
    boot_time: float  # wall clock (epoch seconds)
    uptime_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "load": [round(x, 2) for x in self.load],
            "cpu_percent": round(self.cpu_percent, 1),
            "memory": {
                "total": self.memory_total,
                "available": self.memory_available,
                "percent": self.memory_percent,
            },
            "swap_percent": self.swap_percent,
            "disks": {d.path: d.to_dict() for d in self.disks},
            "temperature_c": self.temperature_c,
            "boot_time": self.boot_time,
            "uptime_seconds": round(self.uptime_seconds, 1),
        }


class ProcessSampler:
    """Keeps one `psutil.Process` per pid so `cpu_percent` has a previous sample to diff.

    The caller must `forget(pid)` when it reaps a child: until then the pid cannot be reused
    (the zombie holds it), so a cached entry always names the right process. Descendants, which
    the master does not reap, are matched by (pid, create_time) instead.
    """

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._tree: dict[int, set[int]] = {}  # root pid -> descendant pids cached for it

    def __len__(self) -> int:
        return len(self._procs)

    def sample(self, pid: int) -> ProcSample | None:
        """Sample one process; None if it is gone, a zombie, or not ours to read.

        The first sample of a pid reports cpu_percent 0.0: there is nothing to diff against yet.
        """
        proc = self._procs.get(pid)
        if proc is None:
            try:
                proc = psutil.Process(pid)
            except _GONE:
                return None
            self._procs[pid] = proc
        result = _read(proc)
        if result is None:
            self.forget(pid)
        return result

    def sample_tree(self, pid: int) -> ProcSample | None:
        """Sample `pid` and all its descendants, summed (`processes` tells how many).

        Workloads run in their own process group; a descendant that re-parented itself to
        init (double fork) is not found. None if `pid` itself is gone.
        """
        root = self.sample(pid)
        if root is None:
            return None
        try:
            children = self._procs[pid].children(recursive=True)
        except _GONE:
            self.forget(pid)
            return None
        cpu, rss, threads, fds, count = root.cpu_percent, root.rss_bytes, root.threads, root.fds, 1
        seen: set[int] = set()
        for child in children:
            cached = self._procs.get(child.pid)
            # Same pid, other create_time: the pid was reused; start a fresh baseline.
            if cached is None or cached.create_time() != child.create_time():
                self._procs[child.pid] = cached = child
            part = _read(cached)
            if part is None:
                self._procs.pop(child.pid, None)
                continue
            seen.add(child.pid)
            cpu += part.cpu_percent
            rss += part.rss_bytes
            threads += part.threads
            fds += part.fds
            count += 1
        for gone in self._tree.get(pid, set()) - seen:
            self._procs.pop(gone, None)
        self._tree[pid] = seen
        return ProcSample(pid, cpu, rss, threads, fds, root.create_time, count)

    def forget(self, pid: int) -> None:
        """Drop a pid (and the descendants cached for it); call it when the child is reaped."""
        self._procs.pop(pid, None)
        for child in self._tree.pop(pid, set()):
            self._procs.pop(child, None)

    def prune(self, live: Iterable[int]) -> None:
        """Forget every root pid not in `live` (the pids the master still supervises)."""
        keep = set(live)
        for pid in [p for p in self._tree if p not in keep]:
            self.forget(pid)
        descendants = set().union(*self._tree.values()) if self._tree else set()
        for pid in [p for p in self._procs if p not in keep and p not in descendants]:
            del self._procs[pid]


def _read(proc: psutil.Process) -> ProcSample | None:
    try:
        with proc.oneshot():
            # A zombie reads as all zeros; it has exited, whoever reaps it. (status() comes
            # from the same /proc/PID/stat read as the cpu times: no extra cost.)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return ProcSample(
                pid=proc.pid,
                cpu_percent=proc.cpu_percent(interval=None),
                rss_bytes=proc.memory_info().rss,
                threads=proc.num_threads(),
                fds=proc.num_fds(),
                create_time=proc.create_time(),
            )
    except _GONE:
        return None


class RssWatch:
    """Pure logic for max_rss_mb: a workload is over its cap once its RSS *stays* above it.

    `observe` returns True when the last `grace` consecutive samples were all above the limit,
    and keeps returning True while it stays above; the caller restarts the workload and calls
    `forget(name)`. One sample at or below the limit clears the streak, so a spike is ignored.
    """

    def __init__(self, grace: int = 2) -> None:
        if grace < 1:
            raise ValueError("grace must be at least 1 sample")
        self.grace = grace
        self._streak: dict[str, int] = {}
        self._since: dict[str, float] = {}

    def observe(self, name: str, rss_bytes: int, limit_bytes: int | None, now: float) -> bool:
        if limit_bytes is None or rss_bytes <= limit_bytes:
            self.forget(name)
            return False
        streak = self._streak.get(name, 0) + 1
        self._streak[name] = streak
        self._since.setdefault(name, now)
        return streak >= self.grace

    def over_since(self, name: str) -> float | None:
        """When (the caller's clock) the current run of over-limit samples began, if any."""
        return self._since.get(name)

    def forget(self, name: str) -> None:
        self._streak.pop(name, None)
        self._since.pop(name, None)


def system_sample(paths: Iterable[str], *, thermal_root: str = THERMAL_ROOT) -> SystemSample:
    """Sample the host. `paths` are directories whose filesystems to report (state, logs).

    Paths on the same filesystem are reported once, under the first one given; a path that is
    missing or unreadable is skipped.
    """
    vm = psutil.virtual_memory()
    boot = psutil.boot_time()
    load = os.getloadavg()
    return SystemSample(
        load=(load[0], load[1], load[2]),
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_total=vm.total,
        memory_available=vm.available,
        memory_percent=vm.percent,
        swap_percent=psutil.swap_memory().percent,
        disks=tuple(_disks(paths)),
        temperature_c=read_temperature(thermal_root),
        boot_time=boot,
        uptime_seconds=max(0.0, time.time() - boot),
    )


def _disks(paths: Iterable[str]) -> list[DiskSample]:
    out: list[DiskSample] = []
    devices: set[int] = set()
    for path in paths:
        try:
            dev = os.stat(path).st_dev
            if dev in devices:
                continue
            usage = psutil.disk_usage(path)
        except OSError:
            continue
        devices.add(dev)
        out.append(DiskSample(path, usage.total, usage.used, usage.free, usage.percent))
    return out


class _SensorReading(Protocol):
    @property
    def current(self) -> float: ...


def pick_temperature(sensors: Mapping[str, Sequence[_SensorReading]]) -> float | None:
    """The CPU/SoC temperature out of `psutil.sensors_temperatures()`.

    The first preferred chip present wins (max of its readings); with none of them, the max of
    all chips. Implausible readings are ignored.
    """
    for name in PREFERRED_SENSORS:
        value = _max_plausible(r.current for r in sensors.get(name, ()))
        if value is not None:
            return value
    return _max_plausible(r.current for readings in sensors.values() for r in readings)


def read_temperature(thermal_root: str = THERMAL_ROOT) -> float | None:
    """psutil's sensors where it has them, else /sys/class/thermal; None when neither exists."""
    sensors_fn = getattr(psutil, "sensors_temperatures", None)
    if sensors_fn is not None:
        try:
            value = pick_temperature(sensors_fn())
        except (OSError, ValueError):
            value = None
        if value is not None:
            return value
    readings: list[float] = []
    for path in sorted(glob.glob(os.path.join(thermal_root, "thermal_zone*", "temp"))):
        try:
            with open(path, encoding="ascii") as f:
                readings.append(int(f.read().strip()) / 1000.0)  # millidegrees Celsius
        except (OSError, ValueError):
            continue
    return _max_plausible(readings)


def _max_plausible(values: Iterable[float | None]) -> float | None:
    low, high = _PLAUSIBLE_C
    good = [v for v in values if v is not None and low < v < high]
    return round(max(good), 1) if good else None
