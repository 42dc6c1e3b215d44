"""Another process holds the state database's write lock while workloads spawn: the daemon
stays up, its workloads keep running, and it catches up once the lock is given back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.faults.probes import answers, integrity, run_rows
from tests.integration.harness import REPO, Daemon, wait_for

MAX_RUNS = 150  # each run is one chance for the holder: enough under load
HOLDS = 2


def test_daemon_survives_a_write_lock_taken_between_a_run_commit_and_its_batch(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload("svc", "sleep_forever", start_seconds=0.2)
    # A fast n_times script: every run is committed on its own before its fork, then the wake's
    # batch is reopened: the instant the lock holder waits for.
    daemon.workload(
        "batch",
        "count_run",
        type="script",
        max_runs=MAX_RUNS,
        restart_delay=0.05,
        max_retries=1000,
        params={"marker": str(marker)},
    )
    daemon.start()
    svc_pid = daemon.wait_state("svc", "RUNNING")["pid"]
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.lock_holder", str(daemon.db_path), "40",
         str(HOLDS), "6"],  # 6 s: longer than the daemon's 5 s busy timeout
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        out, _ = holder.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert "held 1" in out, f"the lock holder never caught the moment: {out!r}"

    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.stderr()
    wait_for(lambda: answers(daemon), what="the daemon to answer again")
    svc = daemon.status("svc")
    assert (svc["state"], svc["pid"]) == ("RUNNING", svc_pid)  # untouched throughout
    daemon.wait_state("batch", "COMPLETED", timeout=60)
    # Every run that happened was counted durably, none twice, whatever the lock did.
    assert len(marker.read_text().split()) == MAX_RUNS
    batch_runs = [r for r in run_rows(daemon.db_path) if r[0] == "batch"]
    assert len([r for r in batch_runs if r[2] != "spawn_failed"]) == MAX_RUNS, batch_runs
    assert daemon.stop() == 0
    assert integrity(daemon.db_path) == ["ok"]
