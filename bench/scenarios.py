"""The scenarios: each starts one supervisor through a Driver, measures, and stops it.

A "fleet" run starts N idle workloads and then takes the measurements asked for, in a fixed
order (spawn + memory, idle CPU, ctl latency, restart latency, stop), so the 200-workload
figures share one daemon lifetime. "churn" runs workloads that exit at once. Every wait is
bounded in time; a figure that could not be measured is None. Imports the standard library and
the bench's own modules.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench import procs
from bench.drivers import Driver, Spec

Results = dict[str, float | None]


class BenchError(Exception):
    """A scenario could not reach the state it measures from (e.g. workloads never ran)."""


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does; `quick()` is the smoke-run variant."""

    spawn_counts: tuple[int, ...] = (50, 200)
    fleet: int = 200
    idle_seconds: float = 20.0
    restart_reps: int = 10
    ctl_reps: int = 10
    churn_workloads: int = 20
    churn_warmup: float = 2.0
    churn_seconds: float = 10.0

    @staticmethod
    def quick() -> Sizes:
        return Sizes((10, 40), 40, 3.0, 3, 3, 5, 1.0, 3.0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _poll(check: Callable[[], bool], timeout: float, interval: float, what: str) -> float:
    """Call check every `interval` s until true; the perf_counter time it first was true."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return time.perf_counter()
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def _all_running(drv: Driver, n: int) -> bool:
    states = drv.states()
    return len(states) == n and all(s == "RUNNING" and pid for s, pid in states.values())


def fleet(drv: Driver, workdir: Path, n: int, measure: set[str], sizes: Sizes) -> Results:
    """Start n idle workloads; take the measurements named in `measure`; stop."""
    ready = workdir / "ready"
    specs = [Spec(f"w{i:03d}", "idle", {"ready_path": str(ready)}) for i in range(1, n + 1)]
    out: Results = {}
    t0 = time.perf_counter()
    drv.start(specs)
    try:
        # Readiness is what the workloads themselves say (one byte each once their code runs),
        # then what the supervisor reports: both must agree that all n run.
        _poll(lambda: _size(ready) >= n, 120.0, 0.01, f"{n} workloads to run")
        t_all = _poll(lambda: _all_running(drv, n), 30.0, 0.02, f"{n} workloads RUNNING")
        out[f"spawn{n}.time"] = t_all - t0
        time.sleep(1.0)  # let page faults and first log writes settle before reading memory
        mem = procs.tree_memory(drv.master_pid)
        out[f"spawn{n}.rss"] = mem.master_rss / procs.MiB
        out[f"spawn{n}.uss"] = mem.uss_sum / procs.MiB
        out[f"spawn{n}.pss"] = mem.pss_sum / procs.MiB
        out[f"spawn{n}.procs"] = mem.processes
        # Then every workload runs one full GC (SIGUSR1), as long-running programs do.
        for proc in procs.descendants(drv.master_pid):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGUSR1)
        time.sleep(1.5)
        out[f"spawn{n}.uss_gc"] = procs.tree_memory(drv.master_pid).uss_sum / procs.MiB
        if "idle" in measure:
            out["idle.cpu"] = _idle_cpu(drv, sizes.idle_seconds)
        if "ctl" in measure:
            out["ctl.median"] = _ctl_latency(drv, sizes.ctl_reps)
        if "restart" in measure:
            out.update(_restart_latency(drv, ready, sizes.restart_reps))
        if "stop" in measure:
            out["stop.time"] = _stop_all(drv)
        else:
            _terminate(drv)
    finally:
        drv.cleanup()
    return out


def _idle_cpu(drv: Driver, seconds: float) -> float:
    time.sleep(2.0)  # past start-up work (first metrics sample, log flushes)
    before = procs.cpu_seconds(drv.master_pid)
    time.sleep(seconds)
    return procs.cpu_seconds(drv.master_pid) - before


def _ctl_latency(drv: Driver, reps: int) -> float:
    argv = drv.ctl_list_argv()
    subprocess.run(argv, stdout=subprocess.DEVNULL, timeout=60, check=False)  # warm caches
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, timeout=60, check=False)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _restart_latency(drv: Driver, ready: Path, reps: int) -> Results:
    """kill -9 one child; time until its replacement runs workload code (ready grows by 1)."""
    name = min(drv.states())
    samples = []
    for _ in range(reps):
        pid = _running_pid(drv, name)
        time.sleep(0.3)  # the replacement is settled and its ready byte written
        count = _size(ready)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        # 1 ms polling: the figure is tens of ms for one tool and ~1 s for the other, and a
        # coarser poll would add half its interval to every sample.
        t1 = _poll(_grew(ready, count), 10.0, 0.001, f"{name} replacement")
        samples.append(t1 - t0)
    return {
        "restart.median": statistics.median(samples),
        "restart.min": min(samples),
        "restart.max": max(samples),
    }


def _running_pid(drv: Driver, name: str) -> int:
    """Wait until the supervisor reports name RUNNING with a live pid; that pid."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        state, pid = drv.states().get(name, ("", None))
        if state == "RUNNING" and pid and procs.alive(pid):
            return pid
        time.sleep(0.02)
    raise BenchError(f"{name} not RUNNING again within 10s")


def _grew(path: Path, count: int) -> Callable[[], bool]:
    return lambda: _size(path) > count


def _stop_all(drv: Driver) -> float:
    """Run the real `down` command; time until the master and every child are gone."""
    pids = [p.pid for p in procs.descendants(drv.master_pid)]
    t0 = time.perf_counter()
    subprocess.run(drv.down_argv(), stdout=subprocess.DEVNULL, timeout=60, check=False)
    if not procs.wait_gone([*pids, drv.master_pid], 90.0):
        left = sum(1 for p in pids if procs.alive(p))
        raise BenchError(f"down: {left} children still alive after 90s")
    elapsed = time.perf_counter() - t0
    drv.wait_exit(5.0)
    return elapsed


def _terminate(drv: Driver) -> None:
    os.kill(drv.master_pid, signal.SIGTERM)
    drv.wait_exit(60.0)


def churn(drv: Driver, workdir: Path, sizes: Sizes) -> Results:
    """Workloads that exit at once and are restarted forever: starts per second, master CPU."""
    counter = workdir / "starts"
    n = sizes.churn_workloads
    specs = [Spec(f"c{i:03d}", "churn", {"counter_path": str(counter)}) for i in range(1, n + 1)]
    drv.start(specs)
    try:
        _poll(lambda: _size(counter) >= n, 60.0, 0.01, f"{n} churn workloads to start")
        time.sleep(sizes.churn_warmup)
        c0, cpu0, t0 = _size(counter), procs.cpu_seconds(drv.master_pid), time.perf_counter()
        time.sleep(sizes.churn_seconds)
        c1, cpu1, t1 = _size(counter), procs.cpu_seconds(drv.master_pid), time.perf_counter()
        states = drv.states()
        _terminate(drv)
    finally:
        drv.cleanup()
    fatal = sum(1 for s, _ in states.values() if s in ("FATAL", "BACKOFF"))
    return {
        "churn.rate": (c1 - c0) / (t1 - t0),
        "churn.cpu": cpu1 - cpu0,
        "churn.cpu_per_restart_ms": 1000 * (cpu1 - cpu0) / max(1, c1 - c0),
        "churn.not_running": float(fatal),
    }
