"""A real daemon starting `command:` workloads on the posix_spawn fast path (child/execspawn.py):
restarted after kill -9, gone with a SIGKILLed master (PDEATHSIG through setpriv), stopped
by group, output in the log, durable n_times counting."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from mastercontrol.child.execspawn import setpriv_path
from tests.integration.harness import Daemon, pid_alive, wait_for

pytestmark = pytest.mark.skipif(setpriv_path() is None, reason="util-linux setpriv not on PATH")


def command(daemon: Daemon, name: str, argv: list[str], **fields: object) -> None:
    body = {"name": name, "type": fields.pop("type", "service"), "command": argv, **fields}
    daemon.write(f"{name}.yaml", json.dumps(body))


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_command_service_restarts_after_kill9_and_dies_with_a_sigkilled_master(
    daemon: Daemon,
) -> None:
    command(daemon, "sl", ["sleep", "300"], restart_delay=0, start_seconds=0)
    daemon.start()
    assert daemon.proc is not None
    first = daemon.wait_state("sl", "RUNNING")["pid"]
    assert parent_of(first) == daemon.proc.pid and os.getpgid(first) == first
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (st := daemon.status("sl"))["state"] == "RUNNING" and st["pid"] != first and st,
        what="a new pid after kill -9",
    )["pid"]
    assert "SIGKILL" in daemon.status("sl")["last_exit"]["text"]
    daemon.kill9()
    wait_for(lambda: not pid_alive(second), what="the program gone with the master (PDEATHSIG)")


def test_command_output_reaches_the_log_and_a_stop_takes_the_group(
    daemon: Daemon, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"echo hello-from-sh; sleep 300 & echo $! > {pidfile}; wait"
    command(daemon, "sh1", ["sh", "-c", script])
    daemon.start()
    daemon.wait_state("sh1", "RUNNING")
    grandchild = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    log = daemon.log_dir / "sh1.log"
    wait_for(lambda: log.exists() and "hello-from-sh" in log.read_text(), what="output in log")
    daemon.ctl("stop", "sh1")
    daemon.wait_state("sh1", "STOPPED")
    wait_for(lambda: not pid_alive(grandchild), what="grandchild stopped with its group")


def test_n_times_command_runs_exactly_max_runs(daemon: Daemon, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    argv = [sys.executable, "-I", "-S", "-c", f"open({str(marks)!r}, 'a').write('.')"]
    command(daemon, "once3", argv, type="script", max_runs=3)
    daemon.start()
    daemon.wait_state("once3", "COMPLETED")
    assert marks.read_text() == "..."
