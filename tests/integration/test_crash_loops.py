"""Crash loops against a real mastercontrold: the retry out of FATAL, restart_delay between any
two starts, health-check failures under the same backoff and FATAL rules as exits, and failed
runs shown by `list` and `status`.

Nothing here measures how fast the daemon is: each test reads the events and runs the daemon
recorded in its state DB, and the one lower bound it checks (restart_delay) is the daemon's own
promise, which load can only lengthen.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
from pathlib import Path

from tests.integration.harness import Daemon, wait_for


def _read(daemon: Daemon, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{daemon.db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def states_entered(daemon: Daemon, name: str) -> list[str]:
    """Every state the workload entered, in order (its events with a new state)."""
    rows = _read(
        daemon,
        "SELECT new_state FROM events WHERE workload = ? AND new_state IS NOT NULL ORDER BY id",
        (name,),
    )
    return [str(r[0]) for r in rows]


def runs(daemon: Daemon, name: str) -> list[tuple[float, float | None, str | None]]:
    """(started_at, ended_at, reason) of each run, oldest first."""
    rows = _read(
        daemon,
        "SELECT started_at, ended_at, reason FROM runs WHERE workload = ? ORDER BY id",
        (name,),
    )
    return [
        (float(str(s)), None if e is None else float(str(e)), None if r is None else str(r))
        for s, e, r in rows
    ]


def starts_between_fatals(states: list[str]) -> list[int]:
    """How many times the workload entered STARTING between one FATAL and the next."""
    if "FATAL" not in states:
        return []
    first = states.index("FATAL")
    counts, n = [], 0
    for state in states[first + 1 :]:
        if state == "STARTING":
            n += 1
        elif state == "FATAL":
            counts.append(n)
            n = 0
    return counts


def test_a_retry_out_of_fatal_is_one_try_then_fatal_again(daemon: Daemon) -> None:
    daemon.workload(
        "crashy",
        "crash",
        restart_delay=0.1,
        restart_delay_max=0.1,
        max_retries=1,
        fatal_retry_delay=1,
        start_seconds=1,
    )
    daemon.start()
    # The first burst (1 try + 1 retry), then two slow retries out of FATAL.
    wait_for(
        lambda: starts_between_fatals(states_entered(daemon, "crashy"))[1:],
        timeout=40,
        what="two retries out of FATAL",
    )
    daemon.ctl("stop", "crashy")
    states = states_entered(daemon, "crashy")
    assert states.count("STARTING") - states[: states.index("FATAL")].count("STARTING") >= 2
    # Each retry out of FATAL is one try, not a new burst of max_retries + 1.
    assert set(starts_between_fatals(states)) == {1}, states


def test_a_try_out_of_fatal_that_stays_up_resets_the_count(daemon: Daemon, tmp_path: Path) -> None:
    flag = tmp_path / "healthy"
    daemon.workload(
        "flappy",
        "crash_unless",
        params={"flag": str(flag)},
        restart_delay=0.1,
        restart_delay_max=0.1,
        max_retries=1,
        fatal_retry_delay=1,
        start_seconds=0.5,
    )
    daemon.start()
    daemon.wait_state("flappy", "FATAL")
    flag.write_text("")
    pid = daemon.wait_state("flappy", "RUNNING", timeout=30)["pid"]
    before = len(states_entered(daemon, "flappy"))
    flag.unlink()
    os.kill(pid, signal.SIGKILL)  # a run that stayed up ends: the quick failures count anew
    wait_for(
        lambda: "FATAL" in states_entered(daemon, "flappy")[before:],
        what="FATAL again after a full burst",
    )
    after = states_entered(daemon, "flappy")[before:]
    # The run that stayed up, then a whole new burst: 1 try + max_retries (1) retries.
    assert after[: after.index("FATAL")].count("STARTING") == 2, after


def test_restart_delay_applies_after_a_run_that_stayed_up(daemon: Daemon) -> None:
    daemon.workload(
        "short",
        "sleep_for",
        params={"seconds": 0.6},
        start_seconds=0.2,
        restart_delay=1,
        restart_delay_max=1,
    )
    daemon.start()
    done = wait_for(
        lambda: (r := runs(daemon, "short"))[2:] and r[1][1] is not None and r,
        timeout=30,
        what="three runs of short",
    )
    daemon.ctl("stop", "short")
    for previous, following in itertools.pairwise(done):
        ended = previous[1]
        assert ended is not None and previous[2] == "exit"
        # At least restart_delay from the end of a run to the next start (wall stamps of
        # monotonic timers: allow their rounding, nothing more).
        assert following[0] - ended >= 0.95, done
    assert "BACKOFF" in states_entered(daemon, "short")


def test_a_failing_health_check_backs_off_and_goes_fatal(daemon: Daemon) -> None:
    daemon.workload(
        "sick",
        "sleep_forever",
        start_seconds=0.2,
        restart_delay=0.2,
        restart_delay_max=0.4,
        max_retries=2,
        fatal_retry_delay=0,
        health_check={"command": ["false"], "interval": 0.2, "timeout": 2, "failures": 2},
    )
    daemon.start()
    st = daemon.wait_state("sick", "FATAL", timeout=40)
    assert st["last_exit"]["reason"] == "unhealthy"
    reasons = [r[2] for r in runs(daemon, "sick")]
    # The first try plus max_retries retries, each ended by its health check; then no more.
    assert reasons == ["unhealthy"] * 3, reasons
    states = states_entered(daemon, "sick")
    assert states.count("BACKOFF") == 2, states


def test_list_and_status_show_failed_runs_and_the_last_reason(daemon: Daemon) -> None:
    daemon.workload(
        "hog",
        "allocate",
        type="script",
        max_runs=1,
        memory_limit_mb=200,
        params={"megabytes": 600},
    )
    daemon.workload(
        "slow", "ignore_sigterm", type="script", max_runs=1, timeout=0.5, stop_timeout=0.5
    )
    daemon.workload("fine", "exit_with", type="script", max_runs=2)
    daemon.start()
    for name in ("hog", "slow", "fine"):
        daemon.wait_state(name, "COMPLETED")

    def check() -> None:
        lines = {ln.split()[0]: ln for ln in daemon.ctl("list").stdout.splitlines()[1:]}
        assert "1/1 runs done (1 failed: memory)" in lines["hog"], lines
        assert "1/1 runs done (1 failed: timeout)" in lines["slow"], lines
        assert lines["fine"].endswith("2/2 runs done"), lines
        listed = {
            w["name"]: w for w in json.loads(daemon.ctl("list", "--json").stdout)["workloads"]
        }
        assert (listed["hog"]["failed_runs"], listed["hog"]["last_reason"]) == (1, "memory")
        assert (listed["slow"]["failed_runs"], listed["slow"]["last_reason"]) == (1, "timeout")
        assert (listed["fine"]["failed_runs"], listed["fine"]["last_reason"]) == (0, "exit")
        status = daemon.ctl("status", "slow", check=False).stdout
        assert "(reason timeout)" in status and "1 failed: timeout" in status, status

    check()
    # What list and status show comes from the state DB, so a daemon restart keeps it.
    daemon.stop()
    daemon.start()
    check()
