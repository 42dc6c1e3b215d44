"""What the keeper and per-run cgroups cost: memory of the master, its children and the keeper,
and restart latency (kill -9 of a workload until its replacement runs), Master Control only.

    .venv/bin/python bench/keeper_cost.py [--workloads 30] [--reps 10]

Starts `.venv/bin/mastercontrold` (the installed entry point, so the keeper is forked early)
with N idle workloads, as `make bench`'s fleet scenario does, and prints one line. Set
MCTL_NO_CGROUP=1 in the environment to measure the fallback. No supervisord needed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.drivers import MasterControl, Spec
from bench.scenarios import _all_running, _poll, _restart_latency, _size

MiB = 1024 * 1024


def _keeper(master: int) -> psutil.Process | None:
    """The keeper's argv ends with its master's pid (daemon/keeper.py, WAIT_SH)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "mc-keeper" and str(master) in proc.info["cmdline"][-3:]:
                return proc
        except (psutil.Error, TypeError):
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=30)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mckeeper-"))
    drv = MasterControl(work)
    ready = work / "ready"
    n = args.workloads
    drv.start([Spec(f"w{i:03d}", "idle", {"ready_path": str(ready)}) for i in range(n)])
    try:
        _poll(lambda: _size(ready) >= n, 120.0, 0.01, f"{n} workloads to run")
        _poll(lambda: _all_running(drv, n), 30.0, 0.02, f"{n} workloads RUNNING")
        time.sleep(1.5)  # page faults and first log writes settle
        master = psutil.Process(drv.master_pid)
        mm = master.memory_full_info()
        kids = [c.memory_full_info().uss / MiB for c in master.children()]
        keeper = _keeper(drv.master_pid)
        km = keeper.memory_full_info() if keeper is not None else None
        lat = _restart_latency(drv, ready, args.reps)
        median, fastest = lat["restart.median"] or 0.0, lat["restart.min"] or 0.0
    finally:
        drv.cleanup()
    keeper_text = (
        f"keeper RSS {km.rss / MiB:.1f} USS {km.uss / MiB:.2f} PSS {km.pss / MiB:.2f} MiB"
        if km is not None
        else "no keeper"
    )
    print(
        f"master RSS {mm.rss / MiB:.2f} USS {mm.uss / MiB:.2f} MiB; {len(kids)} children, "
        f"median USS {statistics.median(kids):.3f} MiB; {keeper_text}; restart median "
        f"{1000 * median:.1f} ms (min {1000 * fastest:.1f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
