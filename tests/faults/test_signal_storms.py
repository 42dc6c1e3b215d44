"""Bursts of SIGTERM and SIGHUP: the daemon stops exactly once and cleanly, and overlapping
reloads end with exactly the configured workloads, each running once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

from tests.faults.probes import answers, integrity, ipc, workload_processes
from tests.integration.harness import REPO, Daemon, pid_alive, wait_for


def _storm(pid: int, signum: int, count: int, gap: float) -> None:
    for _ in range(count):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return  # it already exited: the rest of the storm has no target
        time.sleep(gap)


def _storm_workloads(daemon: Daemon, tmp_path: Path) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.workload("stubborn", "ignore_sigterm", stop_timeout=1.0)  # keeps shutdown going
    daemon.workload(
        "batch",
        "count_run",
        type="script",
        max_runs=1000,
        params={"marker": str(tmp_path / "runs.txt"), "seconds": 0.05},
    )


def test_sigterm_storm_after_startup_stops_the_daemon_once_with_exit_0(
    daemon: Daemon, tmp_path: Path
) -> None:
    _storm_workloads(daemon, tmp_path)
    daemon.start(wait=False)
    wait_for(lambda: answers(daemon), what="daemon up")
    children = [p.pid for p in workload_processes(daemon)]
    assert children
    # 20 SIGTERMs over ~1 s: the first starts the shutdown, the rest land while children stop.
    _storm(daemon.pid, signal.SIGTERM, 20, 0.05)
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == 0, daemon.stderr()
    log = (daemon.log_dir / "mastercontrold.log").read_text()
    assert log.count("mastercontrold stopped") == 1, log
    wait_for(lambda: not workload_processes(daemon), what="every child gone")
    assert not any(pid_alive(p) for p in children)
    assert not daemon.socket_path.exists()
    assert integrity(daemon.db_path) == ["ok"]


def test_sigterm_storm_during_startup_never_leaves_children_or_a_broken_db(
    daemon: Daemon, tmp_path: Path
) -> None:
    _storm_workloads(daemon, tmp_path)
    rng = random.Random(6)
    codes = []
    for _ in range(6):  # bounded: six starts, each interrupted at a random point
        daemon.start(wait=False)
        time.sleep(rng.uniform(0.0, 0.8))
        _storm(daemon.pid, signal.SIGTERM, 20, 0.002)
        assert daemon.proc is not None
        codes.append(daemon.proc.wait(30))
        wait_for(lambda: not workload_processes(daemon), what="every child gone")
        if daemon.db_path.exists():
            assert integrity(daemon.db_path) == ["ok"]
    # Before its handlers are installed the interpreter dies of the signal itself (-15); it
    # never hangs, and once it handles SIGTERM it exits 0.
    assert set(codes) <= {0, -signal.SIGTERM}, codes
    daemon.start()  # and it still starts afterwards
    daemon.wait_state("svc", "RUNNING")


def _reload_configs(daemon: Daemon, generation: int) -> set[str]:
    """Rewrite the config dir for one generation; the names that should then run."""
    for path in daemon.config_dir.glob("*.yaml"):
        path.unlink()
    names = set()
    for i in range(6):
        name = f"w{(i + generation) % 9}"
        daemon.workload(name, "sleep_forever", tags=[f"gen{generation}"])
        names.add(name)
    return names


def test_sighup_storm_during_a_reload_ends_with_each_workload_running_once(
    daemon: Daemon,
) -> None:
    _reload_configs(daemon, 0)
    daemon.start()
    wait_for(lambda: len(workload_processes(daemon)) == 6, what="six workloads up")
    final: set[str] = set()
    for generation in range(1, 4):  # bounded: three rounds of config change
        final = _reload_configs(daemon, generation)
        ctl = subprocess.Popen(
            [sys.executable, "-m", "mastercontrol.ctl.main", *daemon.path_args(), "reload"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _storm(daemon.pid, signal.SIGHUP, 8, 0.01)
        _out, err = ctl.communicate(timeout=60)
        assert ctl.returncode == 0, err
        assert answers(daemon)

    def settled() -> dict[str, int] | None:
        views = ipc(daemon, "list")["result"]["workloads"]
        running = {w["name"]: w["pid"] for w in views if w["state"] == "RUNNING"}
        if {w["name"] for w in views} != final or set(running) != final:
            return None
        if len(workload_processes(daemon)) != len(final):
            return None
        return running

    running = wait_for(settled, what=f"exactly {sorted(final)} running")
    procs = workload_processes(daemon)
    # One process per workload, and each is the pid the daemon reports for it.
    assert Counter(p.pid for p in procs) == Counter(running.values())
    master = psutil.Process(daemon.pid)
    children = {c.pid for c in master.children() if c.name() != "mc-zygote"}  # its fork server
    assert children == set(running.values())
    for name in final:
        assert daemon.status(name)["tags"] == ["gen3"]
    assert daemon.stop() == 0
    assert integrity(daemon.db_path) == ["ok"]
