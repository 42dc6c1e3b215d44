"""The master's own bookkeeping per restart, without any process: CPU per restart, in process.

`.venv/bin/python bench/restart_cost.py [-n 20] [--restarts 20000] [--repo DIR]` drives the
real `Lifecycle` (a real state database file, WAL + synchronous=FULL, the daemon's log setup
writing mastercontrold.log, stderr to /dev/null) through restarts of n `command:` services
(restart_delay 0, start_seconds 0) whose children are fakes that "exit" when told: each loop
wake reaps every one of them once, in one batch (one commit), as in a churn. It prints the
CPU (`time.process_time`) per restart of what the master does besides spawning (the run rows,
the three transitions, the exit's log line) and the SQL statements per restart. Machine load
moves it much less than the whole churn figure, whose spawn dominates. `--repo DIR`: import
`mastercontrol` from DIR (a before/after pair). Not part of `make bench`. Imports the standard
library and `mastercontrol` (the daemon's own modules, on purpose).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class FakeChild:
    pid: int
    log_fd: int | None = None
    exitcode: int | None = None
    started: int | None = None
    scope: str | None = None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="services (default 20)")
    ap.add_argument("--restarts", type=int, default=20000, help="restarts measured")
    ap.add_argument("--repo", type=Path, help="import mastercontrol from this directory")
    args = ap.parse_args(argv)
    sys.path.insert(0, str((args.repo or ROOT).resolve()))

    from mastercontrol.config.model import RunMode, WorkloadConfig, WorkloadType
    from mastercontrol.daemon.lifecycle import Lifecycle
    from mastercontrol.daemon.main import setup_logging
    from mastercontrol.daemon.output import Outputs
    from mastercontrol.engine.clock import SystemClock
    from mastercontrol.engine.timers import TimerHeap, TimerKey
    from mastercontrol.store.open import open_store

    work = Path(tempfile.mkdtemp(prefix="mccost-"))
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the stderr copy of the daemon log
    setup_logging(work / "log", "info", 10 * 2**20, 3)
    clock = SystemClock()
    store, _ = open_store(work / "state.db", clock.wall())
    children: list[FakeChild] = []

    def spawner(spec: Any, fds: Any) -> FakeChild:
        children.append(FakeChild(pid=5_000_000 + len(children)))
        return children[-1]

    def send(pgid: int, signum: int, *, unreaped: bool = False) -> None:
        pass

    timers: TimerHeap[TimerKey] = TimerHeap()
    life = Lifecycle(store, clock, timers, Outputs(work / "log"), spawner, send)
    configs = {
        f"q{i:03d}": WorkloadConfig(
            name=f"q{i:03d}",
            type=WorkloadType.SERVICE,
            run_mode=RunMode.FOREVER,
            command=("/bin/true",),
            restart_delay=0,
            start_seconds=0,
        )
        for i in range(args.n)
    }
    with store.batch():
        life.boot(configs)
    statements = 0

    def count(sql: str) -> None:
        nonlocal statements
        statements += 1

    def wake() -> None:
        for w in life.workloads.values():
            child = w.process
            assert isinstance(child, FakeChild)
            child.exitcode = 0
        with store.batch():
            life.reap_all()

    for _ in range(50):  # warm-up
        wake()
    wakes = max(1, args.restarts // args.n)
    store.connection.set_trace_callback(count)
    t0 = time.process_time()
    for _ in range(wakes):
        wake()
    cpu = time.process_time() - t0
    store.connection.set_trace_callback(None)
    done = wakes * args.n
    print(f"{done} restarts: {1e6 * cpu / done:.1f} us CPU per restart (bookkeeping only); "
          f"{statements / done:.2f} SQL statements per restart (BEGIN/COMMIT included)",
          file=sys.__stdout__)  # fmt: skip
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
