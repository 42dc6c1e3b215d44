"""Workload functions the benchmark runs under both supervisors: the same code for each.

Master Control calls them in a forked child (module + entry_point); supervisord runs
`python -c 'import bench.workloads as w; w.NAME()'`. Imports only the standard library.
"""

from __future__ import annotations

import gc
import os
import signal
import time

# Bounded so a workload a broken bench run forgot cannot live forever.
IDLE_MAX_SECONDS = 3600.0


def _mark(path: str) -> None:
    """Append one byte to path: "this run reached workload code" (atomic with O_APPEND)."""
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)


def idle(ready_path: str = "", seconds: float = IDLE_MAX_SECONDS) -> None:
    """A long-running service that does nothing: marks ready_path once, then sleeps.

    SIGUSR1 makes it run one full garbage collection, as any long-running Python program
    does sooner or later; the bench measures memory before and after.
    """
    signal.signal(signal.SIGUSR1, lambda signum, frame: gc.collect())
    _mark(ready_path)
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 60.0))


def churn(counter_path: str = "", sleep: float = 0.0) -> None:
    """Record one start (one byte appended to counter_path), then exit at once.

    Counting starts in a file the workload writes itself measures both supervisors the same
    way, independent of what each reports about restarts.
    """
    _mark(counter_path)
    if sleep > 0:
        time.sleep(sleep)


def report_memory(out: str, module: str = "bench.workloads") -> None:
    """bench/fork_pages.py: import `module` as a workload would, then append this process's
    private memory (KiB, smaps_rollup) to `out` and stay alive."""
    import importlib

    importlib.import_module(module)
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean", "Private_Dirty")):
                total += int(line.split()[1])
    with open(out, "a") as f:
        f.write(f"{total}\n")
    time.sleep(IDLE_MAX_SECONDS)
