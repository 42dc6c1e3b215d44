"""The state database's file system fills up while the daemon runs: the daemon stays up and
answers, starts no run it cannot record, and picks everything up again once space returns."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.probes import integrity, run_rows
from tests.integration.harness import Daemon, wait_for


@pytest.fixture
def small_state_fs(daemon: Daemon) -> Iterator[Path]:
    """The daemon's state dir on a 1 MiB tmpfs (a real ENOSPC for sqlite, not a mock)."""
    state = daemon.db_path.parent
    state.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(state)], check=True
    )
    try:
        yield state
    finally:
        daemon.cleanup()
        subprocess.run(["umount", "-l", str(state)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for _ in range(10_000):  # bounded: 1 MiB is full after 256 writes
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
                return filler
    raise AssertionError(f"{directory} never filled up")


def test_full_state_disk_keeps_services_up_and_pauses_counted_runs(
    daemon: Daemon, small_state_fs: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload(
        "svc",
        "sleep_forever",
        start_seconds=0.2,
        restart_delay=0.1,
        restart_delay_max=0.5,
        max_retries=1000,
    )
    daemon.workload(
        "batch",
        "count_run",
        type="script",
        max_runs=4,
        restart_delay=0.1,
        restart_delay_max=0.5,
        max_retries=1000,
        params={"marker": str(marker), "seconds": 0.3},
    )
    daemon.start()
    first = daemon.wait_state("svc", "RUNNING")["pid"]
    wait_for(lambda: marker.exists() and marker.read_text().split(), what="first batch run")
    filler = _fill(small_state_fs)

    os.kill(first, signal.SIGKILL)
    time.sleep(2.0)  # several retry rounds against the full disk
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.stderr()
    assert "disk is full" in daemon.stderr()  # the fault really was hit
    # A service is kept up even when its run cannot be recorded...
    restarted = daemon.wait_state("svc", "RUNNING")
    assert restarted["pid"] != first
    # ...but every script run that happened is one the daemon could count durably.
    lines_while_full = len(marker.read_text().split())
    assert lines_while_full <= 4
    # The failing database is reported at most once a minute (docs/operations.md), not once
    # per wake and per retry.
    log_text = (daemon.log_dir / "mastercontrold.log").read_text()
    errors = [line for line in log_text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log_text
    assert "state database" in errors[0] or "cannot record" in errors[0]

    filler.unlink()
    daemon.wait_state("batch", "COMPLETED", timeout=30)
    assert daemon.status("svc")["pid"] == restarted["pid"]
    assert len(marker.read_text().split()) == 4
    batch_rows = [r for r in run_rows(daemon.db_path) if r[0] == "batch"]
    assert len([r for r in batch_rows if r[2] != "spawn_failed"]) == 4, batch_rows
    assert daemon.stop() == 0
    assert integrity(daemon.db_path) == ["ok"]
