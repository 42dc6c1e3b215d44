"""SIGKILL the daemon dozens of times while n_times scripts run: no run is ever repeated or
lost, the state db stays intact, and no workload outlives the master that started it."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from tests.faults.probes import answers, integrity, live, run_rows, workload_processes
from tests.integration.harness import Daemon, wait_for

KILLS = 52
MAX_RUNS = 20
# Run lengths differ per script so kills land in every phase of a run: before fork, in the
# child's bootstrap, mid-run, at exit, during the master's end_run write.
SCRIPTS = {"quick": 0.05, "medium": 0.15, "slow": 0.3}


def _marker_pids(marker: Path) -> list[int]:
    return [int(x) for x in marker.read_text().split()] if marker.exists() else []


def test_n_times_scripts_survive_fifty_two_daemon_sigkills(daemon: Daemon, tmp_path: Path) -> None:
    rng = random.Random(20261127)
    markers = {name: tmp_path / f"{name}.runs" for name in SCRIPTS}
    for name, seconds in SCRIPTS.items():
        daemon.workload(
            name,
            "count_run",
            type="script",
            max_runs=MAX_RUNS,
            params={"marker": str(markers[name]), "seconds": seconds},
        )

    deadline = time.monotonic() + 120  # bounds the loop in time as well as in count
    for i in range(KILLS):
        assert time.monotonic() < deadline, f"kill loop too slow: {i} kills in 120 s"
        daemon.start(wait=False)
        # Every fourth kill lands during startup (open_store, orphan cleanup, boot); the rest
        # after the daemon answers, at a random point of its work.
        if i % 4:
            wait_for(lambda: answers(daemon), what=f"daemon up (kill {i})")
        time.sleep(rng.uniform(0.0, 0.4))
        daemon.kill9()
        for name, marker in markers.items():
            assert len(_marker_pids(marker)) <= MAX_RUNS, (name, i, daemon.stderr())

    daemon.start(wait=False)
    wait_for(lambda: answers(daemon), what="daemon up after the storm")
    for name in SCRIPTS:
        daemon.wait_state(name, "COMPLETED", timeout=60)

    rows = run_rows(daemon.db_path)
    per_script = Counter(w for w, _, _ in rows)
    assert per_script == {name: MAX_RUNS for name in SCRIPTS}, per_script
    assert {reason for _, _, reason in rows} <= {"exit", "daemon_lost"}, rows
    pids_run: list[int] = []
    for name, marker in markers.items():
        pids = _marker_pids(marker)
        assert len(pids) <= MAX_RUNS, name
        pids_run += pids
    # Most runs got to write their line: the storm did not simply prevent all work.
    assert len(pids_run) >= len(SCRIPTS) * MAX_RUNS // 4

    assert daemon.stop() == 0
    assert integrity(daemon.db_path) == ["ok"]
    wait_for(lambda: not workload_processes(daemon), what="no workload child left")
    assert live(pids_run) == []
