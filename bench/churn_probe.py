"""Master Control alone: master CPU per `command:` start under churn, with an optional profile.

`.venv/bin/python bench/churn_probe.py [-n 20] [--seconds 10] [--profile FILE] [--python]`
starts a real mastercontrold with n `command:` workloads that exit at once (the bench's
`/bin/sh -c 'printf . >>FILE'`; `--python`: the forked `bench.workloads.churn` instead), waits
for warm-up, and prints starts per second and the master's user+system CPU per start over the
window: `make bench`'s `command` churn rows without supervisord, for before/after pairs.
`--profile FILE` runs the master under cProfile with a CPU clock (`time.process_time`, so
waiting is not counted) and writes the stats to FILE when it stops (read them with
`python -m pstats FILE`); the profiler's own overhead inflates the CPU figure, so take the
figure from a run without it. Not part of `make bench`. Imports the standard library and the
bench's own modules.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from bench.drivers import MC_BIN, MasterControl  # noqa: E402
from bench.scenarios import Sizes, churn  # noqa: E402

# The daemon ends with os._exit (daemon/main.py `leave`), which skips `finally`: the stats are
# written by a wrapped os._exit, in the master only (its forked children call os._exit too).
PROFILED = (
    "import cProfile, os, sys, time\n"
    "from mastercontrol.daemon.entry import main\n"
    "out = sys.argv.pop(1)\n"
    "p = cProfile.Profile(time.process_time)\n"
    "master, real_exit = os.getpid(), os._exit\n"
    "def dump_then_exit(code):\n"
    "    if os.getpid() == master:\n"
    "        p.disable()\n"
    "        p.dump_stats(out)\n"
    "    real_exit(code)\n"
    "os._exit = dump_then_exit\n"
    "p.enable()\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    p.disable()\n"
    "    p.dump_stats(out)\n"
)


class ProfiledMasterControl(MasterControl):
    """mastercontrold under cProfile (CPU clock); stats written to `profile` on exit."""

    def __init__(self, workdir: Path, profile: Path) -> None:
        super().__init__(workdir)
        self.profile = profile

    def _launch(self, argv: list[str]) -> None:
        super()._launch([str(MC_BIN / "python"), "-c", PROFILED, str(self.profile), *argv[1:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="churning workloads (default 20)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window (default 10)")
    ap.add_argument("--profile", type=Path, help="cProfile stats of the master to this file")
    ap.add_argument("--python", action="store_true", help="forked Python workloads instead")
    args = ap.parse_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="mcprobe-"))
    workdir = run_dir / "mc"
    drv = (
        MasterControl(workdir)
        if args.profile is None
        else ProfiledMasterControl(workdir, args.profile.resolve())
    )
    sizes = Sizes(churn_workloads=args.n, churn_seconds=args.seconds)
    try:
        got = churn(drv, workdir, sizes, command=not args.python)
    finally:
        drv.cleanup()
        shutil.rmtree(run_dir, ignore_errors=True)
    pre = "" if args.python else "cmd."
    rate, per = got[f"{pre}churn.rate"] or 0.0, got[f"{pre}churn.cpu_per_restart_ms"] or 0.0
    print(f"starts/s {rate:.0f}; master CPU per start {per:.3f} ms; "
          f"CPU in window {got[pre + 'churn.cpu'] or 0.0:.2f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
