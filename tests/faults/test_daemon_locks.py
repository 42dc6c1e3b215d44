"""One daemon per state database, not only per socket, and lock files that refuse a planted
symlink. Reproduces issue 8: a second daemon on the same DB with another socket declared the
first one's runs dead, and a `max_runs: 3` script ran 5 times."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.harness import REPO, Daemon, wait_for

EX_TEMPFAIL = 75
EX_CONFIG = 78


def _second_daemon(daemon: Daemon, socket_path: Path) -> subprocess.CompletedProcess[str]:
    args = [
        "--config-dir",
        str(daemon.config_dir),
        "--db-path",
        str(daemon.db_path),
        "--socket-path",
        str(socket_path),
        "--log-dir",
        str(daemon.root / "log2"),
    ]
    return subprocess.run(
        [sys.executable, "-m", "mastercontrol.daemon.main", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def _runs(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_a_second_daemon_on_the_same_state_db_is_refused(daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    daemon.workload(
        "counted",
        "count_run",
        type="script",
        max_runs=3,
        params={"marker": str(marker), "seconds": 1.5},
    )
    daemon.start()
    wait_for(lambda: _runs(marker) >= 1, what="the first run")
    second = _second_daemon(daemon, tmp_path / "other" / "mc.sock")
    assert second.returncode == EX_TEMPFAIL, second.stderr
    assert "state database" in second.stderr
    assert str(daemon.db_path) in second.stderr
    assert f"pid {daemon.pid}" in second.stderr
    daemon.wait_state("counted", "COMPLETED", timeout=30)
    time.sleep(0.5)
    assert _runs(marker) == 3
    assert daemon.proc is not None and daemon.proc.poll() is None


@pytest.mark.parametrize("which", ["state database", "socket"])
def test_a_symlink_planted_as_a_lock_file_is_refused_not_followed(
    daemon: Daemon, tmp_path: Path, which: str
) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    beside = daemon.db_path if which == "state database" else daemon.socket_path
    beside.parent.mkdir(parents=True, exist_ok=True)
    (beside.parent / (beside.name + ".lock")).symlink_to(target)
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == EX_CONFIG
    assert "is a symlink; refusing to follow it" in daemon.stderr()
    assert target.read_text() == "keep me\n"  # neither truncated nor written
