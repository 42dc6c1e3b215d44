"""What supervisorctl users reach for in mastercontrol-ctl, against a real mastercontrold:
every name checked before anything changes, `all` and `--tag`, `--wait`, and the edges of
`logs` and `top`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.integration.harness import Daemon


def test_an_unknown_name_changes_nothing_and_is_named(daemon: Daemon) -> None:
    daemon.workload("web", "sleep_forever", start_seconds=0.2)
    daemon.workload("idle", "sleep_forever")
    daemon.start()
    web = daemon.wait_state("web", "RUNNING")["pid"]
    daemon.wait_state("idle", "RUNNING")
    daemon.ctl("stop", "idle")
    daemon.wait_state("idle", "STOPPED")

    for verb in ("stop", "restart", "start"):
        out = daemon.ctl(verb, "nosuch", "web", "idle", check=False)
        assert out.returncode == 4, out
        assert "nosuch" in out.stderr and "nothing changed" in out.stderr
        assert "Traceback" not in out.stderr
    assert daemon.status("web")["state"] == "RUNNING"
    assert daemon.status("web")["pid"] == web
    assert daemon.status("idle")["state"] == "STOPPED"


def test_all_and_tag_select_workloads(daemon: Daemon) -> None:
    daemon.workload("a", "sleep_forever", tags=["edge"], start_seconds=0.2)
    daemon.workload("b", "sleep_forever", tags=["edge", "db"], start_seconds=0.2)
    daemon.workload("c", "sleep_forever", start_seconds=0.2)
    daemon.start()
    for name in "abc":
        daemon.wait_state(name, "RUNNING")

    daemon.ctl("stop", "--tag", "edge", "--wait")
    states = {n: w["state"] for n, w in daemon.workloads().items()}
    assert states == {"a": "STOPPED", "b": "STOPPED", "c": "RUNNING"}

    out = daemon.ctl("start", "--tag", "nosuchtag", "c", check=False)
    assert out.returncode == 4 and "nosuchtag" in out.stderr

    daemon.ctl("start", "all", "--wait")
    assert {w["state"] for w in daemon.workloads().values()} == {"RUNNING"}

    daemon.ctl("stop", "all", "--wait")
    assert {w["state"] for w in daemon.workloads().values()} == {"STOPPED"}

    out = daemon.ctl("start", check=False)
    assert out.returncode == 2 and "all" in out.stderr


def test_stop_wait_returns_once_stopped_and_times_out_with_exit_1(
    daemon: Daemon, tmp_path: Path
) -> None:
    pidfile = tmp_path / "stubborn.pid"
    daemon.workload("quick", "sleep_forever", start_seconds=0.2)
    daemon.workload("stubborn", "ignore_sigterm", stop_timeout=20, params={"pidfile": str(pidfile)})
    daemon.start()
    daemon.wait_state("quick", "RUNNING")
    daemon.wait_state("stubborn", "RUNNING")

    out = daemon.ctl("stop", "--wait", "quick")
    assert "quick: STOPPED" in out.stdout
    assert daemon.status("quick")["state"] == "STOPPED"  # no polling: --wait did it

    out = daemon.ctl("stop", "--wait", "--timeout", "0.5", "stubborn", check=False)
    assert out.returncode == 1, out
    assert "timed out" in out.stderr and "stubborn (STOPPING)" in out.stderr
    os.kill(int(pidfile.read_text()), signal.SIGKILL)  # do not sit out its stop_timeout
    daemon.wait_state("stubborn", "STOPPED")


def test_restart_wait_returns_with_the_new_run_up(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever", start_seconds=0.5)
    daemon.start()
    old = daemon.wait_state("svc", "RUNNING")["pid"]
    daemon.ctl("restart", "--wait", "svc")
    st = daemon.status("svc")
    assert st["state"] == "RUNNING" and st["pid"] != old

    daemon.workload("broken", "crash", start_seconds=1, max_retries=0, restart_delay=0)
    daemon.ctl("reload")
    out = daemon.ctl("restart", "--wait", "--timeout", "30", "broken", check=False)
    assert out.returncode == 1 and "broken: did not come up" in out.stderr, out


def test_logs_of_a_workload_without_output_is_empty_with_or_without_daemon(
    daemon: Daemon,
) -> None:
    daemon.workload("svc", "sleep_forever", enabled=False)
    out = daemon.ctl("logs", "svc")  # no daemon: known from its config file
    assert out.stdout == ""
    out = daemon.ctl("logs", "nosuch", check=False)
    assert out.returncode == 4 and "nosuch" in out.stderr
    daemon.start()
    assert daemon.ctl("logs", "svc").stdout == ""
    assert daemon.ctl("logs", "nosuch", check=False).returncode == 4
    daemon.stop()
    assert daemon.ctl("logs", "svc").stdout == ""


def test_top_refuses_a_spinning_interval_and_bad_counts(daemon: Daemon) -> None:
    daemon.start()
    for args in (
        ("top", "--interval", "0", "--iterations", "1"),
        ("top", "--interval", "-1", "--iterations", "1"),
        ("top", "--interval", "nan", "--iterations", "1"),
        ("top", "--iterations", "-1"),
        ("logs", "x", "-n", "-1"),
    ):
        out = daemon.ctl(*args, check=False)
        assert out.returncode == 2, (args, out)
        assert "Traceback" not in out.stderr
    assert daemon.ctl("top", "--interval", "0.5", "--iterations", "1").returncode == 0
