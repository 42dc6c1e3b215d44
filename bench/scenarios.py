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
import sys
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
    command_fleet: int = 200  # `command:` programs (python3 sleeper.py)
    command_restart_rounds: int = 3  # rounds of restart_reps kill -9s; the median of all

    @staticmethod
    def quick() -> Sizes:
        return Sizes((10, 40), 40, 3.0, 3, 3, 5, 1.0, 3.0, 20, 1)


SLEEPER = Path(__file__).resolve().parent / "sleeper.py"
# -I -S: no site module and no user paths; the same small interpreter start for both tools.
# The interpreter itself, by absolute path: a bare "python3" may resolve to a wrapper (on the
# bench machine a pyenv shim, a bash script that costs ~150 ms per start before Python runs),
# which then dominates every restart figure of both tools.
PYTHON3 = os.path.realpath(sys.executable)
CHURN_SH = 'printf . >>"$1"'  # one byte per start, then exit 0: a program that exits at once


def module_specs(n: int, ready: Path) -> list[Spec]:
    """n idle Python workloads (bench.workloads.idle, forked by Master Control)."""
    return [Spec(f"w{i:03d}", "idle", {"ready_path": str(ready)}) for i in range(1, n + 1)]


def command_specs(n: int, ready: Path) -> list[Spec]:
    """n idle exec'd programs: `PYTHON3 -I -S sleeper.py idle READY`."""
    argv = (PYTHON3, "-I", "-S", str(SLEEPER), "idle", str(ready))
    return [Spec(f"p{i:03d}", "idle", argv=argv) for i in range(1, n + 1)]


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


def fleet(
    drv: Driver, workdir: Path, n: int, measure: set[str], sizes: Sizes, command: bool = False
) -> Results:
    """Start n idle workloads; take the measurements named in `measure`; stop.

    command=True: exec'd programs instead of forked Python workloads; their figures are keyed
    "cmd.<figure>", restart latency is the median of `command_restart_rounds` rounds, and there
    is no full-GC step (the program has no SIGUSR1 handler).
    """
    ready = workdir / "ready"
    specs = (command_specs if command else module_specs)(n, ready)
    pre = "cmd." if command else ""
    out: Results = {}
    t0 = time.perf_counter()
    drv.start(specs)
    try:
        # Readiness is what the workloads themselves say (one byte each once their code runs),
        # then what the supervisor reports: both must agree that all n run.
        _poll(lambda: _size(ready) >= n, 120.0, 0.01, f"{n} workloads to run")
        t_all = _poll(lambda: _all_running(drv, n), 30.0, 0.02, f"{n} workloads RUNNING")
        out[f"{pre}spawn{n}.time"] = t_all - t0
        time.sleep(1.0)  # let page faults and first log writes settle before reading memory
        mem = procs.tree_memory(drv.master_pid)
        out[f"{pre}spawn{n}.rss"] = mem.master_rss / procs.MiB
        out[f"{pre}spawn{n}.uss"] = mem.uss_sum / procs.MiB
        out[f"{pre}spawn{n}.pss"] = mem.pss_sum / procs.MiB
        out[f"{pre}spawn{n}.procs"] = mem.processes
        if not command:
            # Then every workload runs one full GC (SIGUSR1), as long-running programs do.
            for proc in procs.descendants(drv.master_pid):
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(signal.SIGUSR1)
            time.sleep(1.5)
            out[f"spawn{n}.uss_gc"] = procs.tree_memory(drv.master_pid).uss_sum / procs.MiB
        if "idle" in measure:
            out[f"{pre}idle.cpu"] = _idle_cpu(drv, sizes.idle_seconds)
        if "ctl" in measure:
            out[f"{pre}ctl.median"] = _ctl_latency(drv, sizes.ctl_reps)
        if "restart" in measure:
            reps = sizes.restart_reps * (sizes.command_restart_rounds if command else 1)
            got = _restart_latency(drv, ready, reps)
            out.update({f"{pre}{k}": v for k, v in got.items()})
        if "stop" in measure:
            out[f"{pre}stop.time"] = _stop_all(drv)
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


def churn(drv: Driver, workdir: Path, sizes: Sizes, command: bool = False) -> Results:
    """Workloads that exit at once and are restarted forever: starts per second, master CPU.

    command=True: exec'd `/bin/sh -c 'printf . >>FILE'` programs, figures keyed "cmd.churn.*".
    """
    counter = workdir / "starts"
    n = sizes.churn_workloads
    if command:
        argv = ("/bin/sh", "-c", CHURN_SH, "sh", str(counter))
        specs = [Spec(f"q{i:03d}", "churn", argv=argv) for i in range(1, n + 1)]
    else:
        params = {"counter_path": str(counter)}
        specs = [Spec(f"c{i:03d}", "churn", params) for i in range(1, n + 1)]
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
    pre = "cmd." if command else ""
    return {
        f"{pre}churn.rate": (c1 - c0) / (t1 - t0),
        f"{pre}churn.cpu": cpu1 - cpu0,
        f"{pre}churn.cpu_per_restart_ms": 1000 * (cpu1 - cpu0) / max(1, c1 - c0),
        f"{pre}churn.not_running": float(fatal),
    }
