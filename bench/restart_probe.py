"""Master Control alone: spawn, restart after kill -9 and stop, for quick before/after pairs.

`.venv/bin/python bench/restart_probe.py [--command] [-n 200] [--reps 10]` starts a real
mastercontrold with n idle workloads (forked Python ones, or `command:` programs with
`--command`), prints the time until all run, kills one of them with SIGKILL `--reps` times and
prints min / median / max of the time until its replacement's own code has run, then times
`down` until every process is gone: the same measurements as `make bench`'s rows, without
supervisord (~10-20 s instead of ~40 s). `--tool floor` runs the same on bench/floor.py
(`command:` programs only), `--tool floor-setpriv` on floor.py exec'ing each program through
`setpriv --pdeathsig KILL --` as Master Control's fast path does: the pair prices that exec.
Not part of `make bench`.
Imports the standard library and the bench's own modules.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench import procs  # noqa: E402
from bench.drivers import Driver, Floor, MasterControl  # noqa: E402
from bench.scenarios import (  # noqa: E402
    _all_running,
    _poll,
    _restart_latency,
    _size,
    _stop_all,
    command_specs,
    module_specs,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--command", action="store_true", help="command: programs, not Python")
    ap.add_argument("-n", type=int, default=200, help="workloads in the fleet (default 200)")
    ap.add_argument("--reps", type=int, default=10, help="kill -9s (default 10)")
    ap.add_argument("--tool", choices=("mc", "floor", "floor-setpriv"), default="mc",
                    help="the supervisor (floor*: bench/floor.py, implies --command)")  # fmt: skip
    args = ap.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="mcprobe-"))
    drv: Driver = (
        MasterControl(run_dir / "mc")
        if args.tool == "mc"
        else Floor(run_dir / "floor", setpriv=args.tool == "floor-setpriv")
    )
    args.command = args.command or args.tool != "mc"
    ready = run_dir / "ready"
    specs = (command_specs if args.command else module_specs)(args.n, ready)
    try:
        t0 = time.perf_counter()
        drv.start(specs)
        _poll(lambda: _size(ready) >= args.n, 120.0, 0.01, "workloads to run")
        spawn = _poll(lambda: _all_running(drv, args.n), 30.0, 0.02, "workloads RUNNING") - t0
        got = _restart_latency(drv, ready, args.reps)
        stop = _stop_all(drv)
    finally:
        drv.cleanup()
        procs.sweep(str(run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)
    ms = {k: 1000 * (got[f"restart.{k}"] or 0.0) for k in ("min", "median", "max")}
    print(f"spawn {args.n}: {spawn:.2f} s; stop: {stop:.2f} s")
    print(f"restart ms: min {ms['min']:.1f} median {ms['median']:.1f} max {ms['max']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
