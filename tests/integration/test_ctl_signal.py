"""`mastercontrol-ctl signal` and stopping a COMPLETED script, against a real mastercontrold."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import Daemon, pid_alive, wait_for


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_signal_reaches_the_process_group_and_changes_no_state(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker, pidfile = tmp_path / "signals.txt", tmp_path / "grandchild.pid"
    daemon.workload(
        "svc",
        "trap_signals",
        start_seconds=0.2,
        params={"marker": str(marker), "pidfile": str(pidfile)},
    )
    daemon.workload("idle", "sleep_forever")
    daemon.start()
    pid = daemon.wait_state("svc", "RUNNING")["pid"]
    grandchild = int(wait_for(lambda: pidfile.exists() and pidfile.read_text()))

    out = daemon.ctl("signal", "svc", "HUP")
    assert "SIGHUP" in out.stdout
    wait_for(lambda: lines(marker) == ["SIGHUP"], what="SIGHUP recorded")
    daemon.ctl("signal", "svc", "sigusr1")
    wait_for(lambda: lines(marker) == ["SIGHUP", "SIGUSR1"], what="SIGUSR1 recorded")
    wait_for(lambda: not pid_alive(grandchild), what="the grandchild in the group got USR1")
    daemon.ctl("signal", "svc", "1")  # by number: SIGHUP
    wait_for(lambda: lines(marker)[-1:] == ["SIGHUP"] and len(lines(marker)) == 3)
    st = daemon.status("svc")
    assert (st["state"], st["pid"], st["restarts"]) == ("RUNNING", pid, 0)

    # Every name first: an unknown one sends nothing to anyone.
    out = daemon.ctl("signal", "nosuch", "svc", "HUP", check=False)
    assert out.returncode == 4 and "nosuch" in out.stderr
    # A bad signal is a usage error before the daemon is asked.
    for bad in ("NOPE", "0", "999", "-1"):
        out = daemon.ctl("signal", "svc", bad, check=False)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (bad, out)
    assert len(lines(marker)) == 3

    daemon.ctl("stop", "--wait", "idle")
    out = daemon.ctl("signal", "idle", "HUP", check=False)
    assert out.returncode == 1 and "not running" in out.stderr, out
    assert daemon.status("idle")["state"] == "STOPPED"


def test_stopping_a_completed_script_is_a_no_op_that_is_not_remembered(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload("batch", "count_run", type="script", max_runs=1, params={"marker": str(marker)})
    daemon.start()
    daemon.wait_state("batch", "COMPLETED")
    out = daemon.ctl("stop", "batch")
    assert "already completed" in out.stdout
    assert daemon.status("batch")["state"] == "COMPLETED"
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.status("batch")["state"] == "COMPLETED"
    assert len(lines(marker)) == 1
