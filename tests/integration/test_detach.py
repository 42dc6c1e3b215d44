"""`mastercontrol-ctl up --detach` keeps one log (issue 8): its mastercontrold.stderr repeated
every line of mastercontrold.log and was never rotated nor emptied."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.harness import REPO, Daemon, wait_for


def test_a_detached_daemon_logs_once_and_its_stderr_file_stays_small(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    errlog = daemon.log_dir / "mastercontrold.stderr"
    daemon.log_dir.mkdir(mode=0o700, parents=True)
    errlog.write_text("left over from an earlier start\n" * 1000)
    up = daemon.ctl("up", "--detach")
    assert "started" in up.stdout
    try:
        daemon.wait_state("svc", "RUNNING")
        for _ in range(3):
            daemon.ctl("reload")  # something to log
        daemon_log = daemon.log_dir / "mastercontrold.log"
        wait_for(lambda: daemon_log.read_text().count("reload:") == 3, what="reloads logged")
        assert "ready" in daemon_log.read_text()
        stderr_text = errlog.read_text()
        assert stderr_text == "", stderr_text[:2000]  # emptied at start; no copy of the log
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "mastercontrol.ctl.main", *daemon.path_args(), "down"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert down.returncode == 0, down.stderr


def test_a_detached_daemon_that_cannot_start_leaves_its_reason_in_the_stderr_file(
    daemon: Daemon,
) -> None:
    daemon.log_dir.mkdir(mode=0o700, parents=True)
    daemon.db_path.parent.mkdir(parents=True)
    daemon.db_path.parent.chmod(0o777)  # refused: world-writable
    up = daemon.ctl("up", "--detach", check=False)
    assert up.returncode == 1
    errlog = daemon.log_dir / "mastercontrold.stderr"
    assert str(errlog) in up.stderr
    assert "world-writable" in errlog.read_text()
