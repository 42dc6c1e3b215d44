"""A real mastercontrold with a tiny retention prunes its run history (daemon.history_max_runs)
and never lets the pruning change what an n_times workload counts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.integration.harness import Daemon

MAX_RUNS = 12
KEEP = 3


def _runs(db: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(
            conn.execute("SELECT COUNT(*) FROM runs WHERE workload = ?", (name,)).fetchone()[0]
        )
    finally:
        conn.close()


def test_daemon_prunes_old_runs_and_keeps_the_counts(daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    daemon.write("daemon.yaml", f"daemon:\n  history_max_runs: {KEEP}\n")
    daemon.workload(
        "batch",
        "count_run",
        type="script",
        max_runs=MAX_RUNS,
        restart_delay=0.05,
        params={"marker": str(marker)},
    )
    daemon.start()
    daemon.wait_state("batch", "COMPLETED")
    assert daemon.stop() == 0
    grown = _runs(daemon.db_path, "batch")

    daemon.start()  # the start of a daemon prunes at once; then every housekeeping pass
    assert daemon.wait_state("batch", "COMPLETED")["state"] == "COMPLETED"
    assert daemon.stop() == 0

    assert grown > KEEP  # the history really had grown past the retention
    assert _runs(daemon.db_path, "batch") == KEEP
    # Pruned history is not forgotten runs: the script did not run again.
    assert len(marker.read_text().split()) == MAX_RUNS
