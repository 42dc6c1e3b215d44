"""A log dir that is full or cannot exist never stops supervision: services are restarted,
scripts complete, the CLI answers, and the bytes that could not be written are counted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, pid_alive, wait_for

FAULTS = "tests.faults.workloads"


def _fill(directory: Path) -> None:
    """Write a filler file until the file system says ENOSPC."""
    with open(directory / "filler", "wb", buffering=0) as f:
        try:
            for _ in range(10_000):  # bounded: a 64 KiB tmpfs is full after a few writes
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC
            return
    raise AssertionError(f"{directory} never filled up")


@pytest.fixture
def full_log_dir(daemon: Daemon) -> Iterator[Path]:
    """The daemon's log dir on a 64 KiB tmpfs, filled to the last byte.

    A real full file system (not a mock): as root in the CI container `mount -t tmpfs` works.
    chmod 000 would not stop root, and /dev/full is not a directory.
    """
    log_dir = daemon.log_dir
    log_dir.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(log_dir)], check=True
    )
    try:
        _fill(log_dir)
        yield log_dir
    finally:
        daemon.cleanup()  # nothing may hold a file on the mount when it goes
        subprocess.run(["umount", "-l", str(log_dir)], check=False)


def _supervision_works(daemon: Daemon, marker: Path) -> None:
    daemon.wait_state("batch", "COMPLETED")
    assert len(marker.read_text().split()) == 3
    first = daemon.wait_state("svc", "RUNNING")["pid"]
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (st := daemon.status("svc"))["state"] == "RUNNING" and st["pid"] != first and st,
        what="svc restarted after kill -9",
    )
    assert pid_alive(second["pid"])
    assert second["restarts"] >= 1
    assert daemon.ctl("list").returncode == 0


def _workloads(daemon: Daemon, marker: Path) -> None:
    daemon.workload("talker", "tick_printer", module=FAULTS, params={"interval": 0.02, "size": 200})
    daemon.workload("svc", "chatter", params={"lines": 50, "size": 100}, start_seconds=0.2)
    daemon.workload("batch", "count_run", type="script", max_runs=3, params={"marker": str(marker)})


def test_full_log_disk_drops_and_counts_output_but_supervision_continues(
    daemon: Daemon, full_log_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    _workloads(daemon, marker)
    daemon.start()
    _supervision_works(daemon, marker)
    dropped = wait_for(
        lambda: daemon.status("talker")["log_dropped_bytes"] > 10_000 and daemon.status("talker"),
        what="dropped bytes counted",
    )
    assert daemon.status("svc")["log_dropped_bytes"] > 0
    assert dropped["state"] == "RUNNING"

    # One warning for the incident, not one per write (it went on for seconds of output).
    assert _count(daemon.stderr(), "cannot write", "talker.log") == 1, daemon.stderr()

    # Space comes back: the writer tries the file again and the log grows again.
    (full_log_dir / "filler").unlink()
    talker_log = full_log_dir / "talker.log"
    wait_for(
        lambda: talker_log.exists() and talker_log.stat().st_size > 1000,
        what="talker's log written once space is free",
    )
    wait_for(lambda: _count(daemon.stderr(), "writing", "talker.log again"), what="recovery line")
    assert daemon.stop() == 0


def _count(text: str, *parts: str) -> int:
    return sum(all(p in line for p in parts) for line in text.splitlines())


def test_a_deleted_log_dir_is_recreated_warned_once_and_the_loss_counted(
    daemon: Daemon, tmp_path: Path
) -> None:
    """It was never recreated: the writers kept appending to deleted files, `logs` printed
    nothing (rc 0) and nothing was logged or counted."""
    daemon.workload("talker", "tick_printer", module=FAULTS, params={"interval": 0.02})
    daemon.start()
    talker_log = daemon.log_dir / "talker.log"
    wait_for(lambda: talker_log.exists() and talker_log.stat().st_size > 2000, what="output")
    shutil.rmtree(daemon.log_dir)

    wait_for(lambda: talker_log.exists(), what="talker.log recreated")
    wait_for(lambda: talker_log.stat().st_size > 5000, what="talker.log growing again")
    stderr = daemon.stderr()
    assert _count(stderr, "WARNING", "talker.log was deleted") == 1, stderr
    dropped = daemon.status("talker")["log_dropped_bytes"]
    assert dropped > 0  # what went into the deleted file since the last check
    assert daemon.workloads()["talker"]["log_dropped_bytes"] >= dropped  # list --json too
    out = daemon.ctl("logs", "talker", "-n", "3")
    assert len(out.stdout.splitlines()) == 3
    daemon_log = daemon.log_dir / "mastercontrold.log"  # the daemon's own log came back too
    wait_for(lambda: daemon_log.exists(), what="mastercontrold.log recreated")
    assert "was deleted" in daemon_log.read_text()
    assert daemon.status("talker")["state"] == "RUNNING"
    assert daemon.stop() == 0


def test_log_dir_under_a_regular_file_does_not_stop_supervision(
    daemon: Daemon, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log dir's parent should be\n")
    daemon.log_dir = blocker / "log"  # every open() in it fails with ENOTDIR
    marker = tmp_path / "runs.txt"
    _workloads(daemon, marker)
    daemon.start()
    _supervision_works(daemon, marker)
    wait_for(
        lambda: daemon.status("talker")["log_dropped_bytes"] > 10_000,
        what="dropped bytes counted",
    )
    assert "logging to stderr only" in daemon.stderr()
    assert daemon.stop() == 0
