"""A real mastercontrold whose wall clock is stepped while it runs (libfaketime, Debian's
`faketime` package): durations stay true and schedules are re-planned within a second.

libfaketime is preloaded into the daemon only. It reads the offset from a file on every clock
call (FAKETIME_NO_CACHE), so writing "+3600" to that file steps the daemon's CLOCK_REALTIME the
way `date -s` would, while CLOCK_MONOTONIC is left alone (FAKETIME_DONT_FAKE_MONOTONIC) — as on
a real machine. The daemon sees the real clock API; nothing in the code knows about the test.
"""

from __future__ import annotations

import glob
import math
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Daemon, wait_for

LIBS = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
pytestmark = pytest.mark.skipif(not LIBS, reason="no libfaketime (apt-get install faketime)")


class SteppedClock:
    """The daemon's wall clock offset, in a file libfaketime reads on every clock call."""

    def __init__(self, root: Path) -> None:
        self.path = root / "faketime-offset"
        self.offset = 0.0
        self.set(0.0)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": LIBS[0],
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, offset: float) -> None:
        """Step the daemon's wall clock to real time + `offset` seconds."""
        self.offset = offset
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+.3f}\n")
        tmp.replace(self.path)  # never a half-written offset

    def now(self) -> float:
        """The daemon's wall time now."""
        return time.time() + self.offset


@pytest.fixture
def stepped(daemon: Daemon) -> SteppedClock:
    return SteppedClock(daemon.root)


def agent(daemon: Daemon, name: str, schedule: str) -> None:
    daemon.workload(name, "exit_with", type="agent", schedule=schedule)


def runs_of(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = daemon.status(name)["recent_runs"]
    return runs


def test_run_duration_is_measured_not_wall_clock_end_minus_start(
    daemon: Daemon, stepped: SteppedClock
) -> None:
    # The issue: a clock step gave durations of -3585 s and 3605 s. Two runs of 2 s: the clock
    # is set back an hour during the first, forward an hour during the second.
    marker = daemon.root / "started"
    daemon.workload(
        "stepped",
        "select_sleep",
        type="script",
        max_runs=2,
        params={"seconds": 2.0, "marker": str(marker)},
    )
    daemon.start(env=stepped.env())

    def runs_started() -> int:
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    for n, step in ((1, -3600.0), (2, 3600.0)):
        wait_for(lambda: runs_started() >= n, what=f"run {n} to start")  # noqa: B023
        stepped.set(stepped.offset + step)
    daemon.wait_state("stepped", "COMPLETED")
    second, first = runs_of(daemon, "stepped")  # newest first
    for run, step in ((first, -3600.0), (second, 3600.0)):
        wall = run["ended_at"] - run["started_at"]
        assert abs(wall - (2.0 + step)) < 60  # what the wall clock says: nonsense
        assert 1.5 <= run["duration"] < 30  # what the master measured
        assert run["reason"] == "exit"
    rendered = daemon.ctl("status", "stepped", check=False).stdout
    assert " 2s " in rendered  # the TOOK column of recent runs


def test_hourly_agent_after_a_forward_step_of_three_days_runs_once_and_replans(
    daemon: Daemon, stepped: SteppedClock
) -> None:
    # The issue: @hourly stayed silent and next_run_at showed a date three days old.
    agent(daemon, "hourly", "@hourly")
    daemon.start(env=stepped.env())
    before = daemon.status("hourly")["next_run_at"]
    stepped.set(3 * 86400.0)
    daemon.wait_state("hourly", "SCHEDULED")
    wait_for(lambda: len(runs_of(daemon, "hourly")) == 1, what="one catch-up run")
    status = wait_for(
        lambda: (s := daemon.status("hourly"))["state"] == "SCHEDULED" and s,
        what="hourly to wait for its next tick",
    )
    assert status["next_run_at"] > stepped.now()  # re-planned, not three days old
    assert status["next_run_at"] - stepped.now() <= 3600
    assert status["next_run_at"] >= before + 3 * 86400 - 3600
    assert len(runs_of(daemon, "hourly")) == 1  # no burst for the ticks stepped over
    assert daemon.workloads()["hourly"]["next_run_at"] == status["next_run_at"]  # list too
    log = (daemon.log_dir / "mastercontrold.log").read_text()
    assert "wall clock stepped +259200" in log


def test_minute_agent_after_a_forward_step_to_just_before_its_tick_runs_on_time(
    daemon: Daemon, stepped: SteppedClock
) -> None:
    # The issue: a */2 job ran 114 s late. Step to 4 s before a tick the old timer is far from.
    agent(daemon, "every2", "*/2 * * * *")
    daemon.start(env=stepped.env())
    tick = daemon.status("every2")["next_run_at"]
    if tick - time.time() < 20:  # the old timer must be well after the deadline below
        tick += 120
    stepped.set(tick - 4 - time.time())
    wait_for(lambda: runs_of(daemon, "every2"), timeout=14, what="the tick 4 s away to run")
    (run,) = runs_of(daemon, "every2")
    assert abs(run["started_at"] - tick) < 10  # daemon wall time of the start: on time


def test_backward_step_of_an_hour_does_not_lose_the_next_slot(
    daemon: Daemon, stepped: SteppedClock
) -> None:
    # Set back an hour, to 12 s before a minute slot: that slot runs. Without a prompt
    # re-plan the old timer fires after it (the old minute is far) and the slot is lost.
    agent(daemon, "minutely", "* * * * *")
    daemon.start(env=stepped.env())
    if time.time() % 60 > 40:  # the old tick must be more than 20 s after the step
        time.sleep(61 - time.time() % 60)
    old_tick = daemon.status("minutely")["next_run_at"]
    target = math.floor(time.time() / 60) * 60 - 3600 + 48  # hh:mm:48, an hour back
    stepped.set(target - time.time())
    slot = target + 12

    def after_step() -> list[dict[str, Any]]:
        # The wait above may cross a real minute tick: that run started an hour after these.
        return [r for r in runs_of(daemon, "minutely") if r["started_at"] < target + 600]

    wait_for(after_step, timeout=18, what="the slot after the step")
    (run,) = after_step()
    assert abs(run["started_at"] - slot) < 6
    status = wait_for(
        lambda: (s := daemon.status("minutely"))["state"] == "SCHEDULED" and s,
        what="minutely to wait again",
    )
    assert status["next_run_at"] == slot + 60  # the next slot of the new time
    assert status["next_run_at"] < old_tick - 3000
