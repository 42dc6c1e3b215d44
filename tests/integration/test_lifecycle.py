"""A real mastercontrold supervising real children: restarts, runs, limits, stops."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.integration.harness import Daemon, pid_alive, wait_for


def run_rows(daemon: Daemon, name: str) -> list[tuple[int, int | None, str | None]]:
    conn = sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT id, exit_code, reason FROM runs WHERE workload = ? ORDER BY id", (name,)
        ).fetchall()
    finally:
        conn.close()
    return rows


def test_service_is_restarted_after_kill9(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever", restart_delay=0, start_seconds=0.2)
    daemon.start()
    first = daemon.wait_state("svc", "RUNNING")["pid"]
    os.kill(first, signal.SIGKILL)
    second = wait_for(
        lambda: (st := daemon.status("svc"))["state"] == "RUNNING" and st["pid"] != first and st,
        what="a new pid after kill -9",
    )
    assert pid_alive(second["pid"])
    assert second["restarts"] == 1
    assert second["last_exit"]["reason"] == "signal"
    assert "SIGKILL" in second["last_exit"]["text"]


def test_script_runs_exactly_max_runs_then_completes(daemon: Daemon, tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload("batch", "count_run", type="script", max_runs=3, params={"marker": str(marker)})
    daemon.start()
    st = daemon.wait_state("batch", "COMPLETED")
    assert st["runs"] == 3
    assert len(marker.read_text().split()) == 3
    assert [r[2] for r in run_rows(daemon, "batch")] == ["exit"] * 3


def test_n_times_survives_daemon_sigkill_without_losing_or_repeating(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload(
        "batch",
        "count_run",
        type="script",
        max_runs=5,
        params={"marker": str(marker), "seconds": 0.6},
    )
    daemon.start()
    wait_for(lambda: marker.exists() and len(marker.read_text().split()) >= 2, what="two runs")
    daemon.kill9()
    daemon.start()
    daemon.wait_state("batch", "COMPLETED", timeout=30)
    rows = run_rows(daemon, "batch")
    assert len(rows) == 5, rows
    # A run cut short by the daemon's death is counted, never repeated.
    assert len(marker.read_text().split()) <= 5
    reasons = [r[2] for r in rows]
    assert set(reasons) <= {"exit", "daemon_lost"}
    daemon.stop()
    daemon.start()
    assert daemon.wait_state("batch", "COMPLETED")["runs"] == 5
    assert len(run_rows(daemon, "batch")) == 5


def test_memory_limit_allows_small_and_stops_large_allocations(daemon: Daemon) -> None:
    daemon.workload(
        "small",
        "allocate",
        type="script",
        max_runs=1,
        memory_limit_mb=200,
        params={"megabytes": 20},
    )
    daemon.workload(
        "large",
        "allocate",
        type="script",
        max_runs=1,
        memory_limit_mb=200,
        params={"megabytes": 600},
    )
    daemon.start()
    small = daemon.wait_state("small", "COMPLETED")
    large = daemon.wait_state("large", "COMPLETED")
    assert small["last_exit"]["reason"] == "exit"
    assert small["last_exit"]["exit_code"] == 0
    assert large["last_exit"]["reason"] == "memory"
    assert "MemoryError" in "\n".join(daemon.ctl("logs", "large").stdout.splitlines())


def test_timeout_stops_the_run_and_records_reason(daemon: Daemon) -> None:
    daemon.workload(
        "slow", "ignore_sigterm", type="script", max_runs=1, timeout=0.5, stop_timeout=0.5
    )
    daemon.start()
    st = daemon.wait_state("slow", "COMPLETED")
    assert st["last_exit"]["reason"] == "timeout"
    assert "SIGKILL" in st["last_exit"]["text"]


def test_crash_loop_backs_off_then_goes_fatal_without_spinning(daemon: Daemon) -> None:
    daemon.workload(
        "crashy",
        "crash",
        restart_delay=0.1,
        restart_delay_max=0.4,
        max_retries=4,
        fatal_retry_delay=0,
        start_seconds=1,
    )
    daemon.start()
    st = daemon.wait_state("crashy", "FATAL")
    # The first attempt plus max_retries retries, each after a doubling delay.
    assert len(run_rows(daemon, "crashy")) == 5
    assert "RuntimeError: boom" in daemon.ctl("logs", "crashy").stdout
    # FATAL with no slow retry stays put: no more runs.
    cpu_before = psutil.Process(daemon.pid).cpu_times()
    time.sleep(1.0)
    cpu_after = psutil.Process(daemon.pid).cpu_times()
    assert len(run_rows(daemon, "crashy")) == 5
    assert st["state"] == "FATAL"
    # Idle in FATAL: the master sleeps (generous bound; this is not a benchmark).
    assert (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system) < 0.5


def test_stop_kills_grandchildren_and_sigterm_ignorers(daemon: Daemon, tmp_path: Path) -> None:
    gpid_file = tmp_path / "grandchild.pid"
    ipid_file = tmp_path / "ignorer.pid"
    daemon.workload("parent", "with_grandchild", params={"pidfile": str(gpid_file)})
    daemon.workload(
        "stubborn", "ignore_sigterm", stop_timeout=0.5, params={"pidfile": str(ipid_file)}
    )
    daemon.start()
    daemon.wait_state("parent", "RUNNING")
    daemon.wait_state("stubborn", "RUNNING")
    grandchild = int(wait_for(lambda: gpid_file.exists() and gpid_file.read_text()))
    ignorer = int(wait_for(lambda: ipid_file.exists() and ipid_file.read_text()))
    daemon.ctl("stop", "parent", "stubborn")
    daemon.wait_state("parent", "STOPPED")
    st = daemon.wait_state("stubborn", "STOPPED")
    assert "SIGKILL" in st["last_exit"]["text"]
    wait_for(lambda: not pid_alive(grandchild), what="grandchild gone")
    wait_for(lambda: not pid_alive(ignorer), what="SIGTERM-ignoring child gone")


def test_operator_stop_is_remembered_across_daemon_restart(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    daemon.ctl("stop", "svc")
    daemon.wait_state("svc", "STOPPED")
    assert daemon.stop() == 0
    daemon.start()
    assert daemon.status("svc")["state"] == "STOPPED"
    assert daemon.ctl("status", "svc", check=False).returncode == 3
    daemon.ctl("start", "svc")
    daemon.wait_state("svc", "RUNNING")
    daemon.stop()
    daemon.start()
    daemon.wait_state("svc", "RUNNING")


def test_master_sigkill_leaves_no_orphans(daemon: Daemon, tmp_path: Path) -> None:
    gpid_file = tmp_path / "grandchild.pid"
    daemon.workload("parent", "with_grandchild", params={"pidfile": str(gpid_file)})
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    child = daemon.wait_state("svc", "RUNNING")["pid"]
    parent = daemon.wait_state("parent", "RUNNING")["pid"]
    grandchild = int(wait_for(lambda: gpid_file.exists() and gpid_file.read_text()))
    daemon.kill9()
    wait_for(lambda: not pid_alive(child), what="child gone after master SIGKILL")
    wait_for(lambda: not pid_alive(parent), what="parent workload gone")
    # PDEATHSIG takes the master's children with it, not their children: the keeper kills the
    # grandchild (tests/faults/test_keeper.py), and a restarted daemon would kill what is left.
    daemon.start()
    wait_for(lambda: not pid_alive(grandchild), what="grandchild gone after restart")


def test_down_stops_everything_and_removes_the_socket(daemon: Daemon) -> None:
    daemon.workload("a", "sleep_forever")
    daemon.workload("b", "ignore_sigterm", stop_timeout=0.5)
    daemon.start()
    pids = [daemon.wait_state(n, "RUNNING")["pid"] for n in ("a", "b")]
    out = daemon.ctl("down")
    assert "stopped" in out.stdout
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 0
    assert not daemon.socket_path.exists()
    for pid in pids:
        assert not pid_alive(pid)
    assert daemon.ctl("list", check=False).returncode == 7


def test_second_daemon_is_refused_and_stale_socket_is_replaced(daemon: Daemon) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    second = Daemon(daemon.root)
    second.start(wait=False)
    assert second.proc is not None
    assert second.proc.wait(20) == 75
    assert "already running" in second.stderr()
    daemon.ctl("list")  # the first one is undisturbed
    daemon.kill9()
    assert daemon.socket_path.exists()  # left behind by the SIGKILL
    daemon.start()
    daemon.wait_state("svc", "RUNNING")


def test_stdout_and_stderr_reach_the_log_with_timestamps(daemon: Daemon) -> None:
    daemon.workload(
        "env",
        "print_env",
        type="script",
        max_runs=1,
        env={"GREETING": "hi"},
        working_dir=str(daemon.root),
        params={"keys": "GREETING,NOTIFY_SOCKET"},
    )
    daemon.start()
    daemon.wait_state("env", "COMPLETED")
    lines = daemon.ctl("logs", "env").stdout.splitlines()
    assert any(line.endswith("GREETING=hi") for line in lines), lines
    assert any(line.endswith("NOTIFY_SOCKET=None") for line in lines), lines
    assert any(line.endswith(f"cwd={daemon.root}") for line in lines), lines
    assert all(line[:4].isdigit() for line in lines)  # each line starts with a timestamp


def test_unusable_paths_exit_78_with_a_clear_message(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    long_socket = tmp_path / ("s" * 120 + ".sock")  # longer than AF_UNIX allows
    base = [
        sys.executable,
        "-m",
        "mastercontrol.daemon.main",
        "--log-dir",
        str(tmp_path / "log"),
        "--db-path",
        str(tmp_path / "state.db"),
    ]
    cases = [
        (["--config-dir", str(conf), "--socket-path", str(long_socket)], "path too long"),
        (
            ["--config-dir", str(tmp_path / "nope"), "--socket-path", str(tmp_path / "s")],
            "does not exist",
        ),
    ]
    for extra, message in cases:
        out = subprocess.run(base + extra, capture_output=True, text=True, timeout=60)
        assert out.returncode == 78, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr


def test_a_run_that_exits_on_its_own_leaves_no_grandchildren(
    daemon: Daemon, tmp_path: Path
) -> None:
    # The workload backgrounds a grandchild in its own process group and exits at once: only
    # the master's sweep of the group after the exit can take the grandchild with it.
    gpid_file = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {gpid_file}.tmp && mv {gpid_file}.tmp {gpid_file}"
    daemon.write(
        "leaver.yaml",
        f"""\
        name: leaver
        type: script
        max_runs: 1
        command: [sh, -c, "{script}"]
        """,
    )
    daemon.start()
    grandchild = int(wait_for(lambda: gpid_file.exists() and gpid_file.read_text()))
    st = daemon.wait_state("leaver", "COMPLETED")
    assert st["last_exit"]["reason"] == "exit"
    try:
        wait_for(lambda: not pid_alive(grandchild), what="grandchild gone after the run's exit")
    finally:  # if the sweep failed, do not leave the sleep behind (and kill nothing else)
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(grandchild)
            if proc.cmdline()[:2] == ["sleep", "300"]:
                proc.kill()
