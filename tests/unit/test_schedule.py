"""Cron schedules and the tick planner, driven by a FakeClock through a daemon-like loop.

The loop helper does what the daemon does: arm the planner, convert the wall tick into a
monotonic deadline, let time pass to that deadline (maybe with a wall-clock jump in between),
and ask `due()` with the wall time read at the wake.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from mastercontrol.config import checks
from mastercontrol.config.cron import CronSchedule, local_timezone
from mastercontrol.engine.clock import FakeClock, SystemClock
from mastercontrol.engine.schedule import (
    MAX_COUNTED_TICKS,
    TickDecision,
    TickPlanner,
    wall_to_monotonic_deadline,
)

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def wake(planner: TickPlanner, clock: FakeClock, jump: float = 0.0) -> TickDecision:
    """One loop iteration: sleep until the armed tick (monotonic), then ask the planner."""
    tick_wall = planner.arm(clock.wall())
    deadline = wall_to_monotonic_deadline(tick_wall, clock.wall(), clock.monotonic())
    if jump:
        clock.jump_wall(jump)
    clock.advance(deadline - clock.monotonic())
    return planner.due(clock.wall())


def run_for(planner: TickPlanner, clock: FakeClock, seconds: float) -> list[TickDecision]:
    """Wake at every armed tick until `seconds` of real time have passed (bounded)."""
    end = clock.monotonic() + seconds
    decisions: list[TickDecision] = []
    for _ in range(100_000):
        tick_wall = planner.arm(clock.wall())
        deadline = wall_to_monotonic_deadline(tick_wall, clock.wall(), clock.monotonic())
        if deadline > end:
            clock.advance(end - clock.monotonic())
            return decisions
        clock.advance(deadline - clock.monotonic())
        decisions.append(planner.due(clock.wall()))
    raise AssertionError("loop did not finish")


def runs(decisions: list[TickDecision]) -> list[float]:
    return [d.tick for d in decisions if d.run and d.tick is not None]


@pytest.fixture
def berlin() -> Iterator[None]:
    """Local time = Europe/Berlin for the test; the previous TZ is restored afterwards."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


# --- CronSchedule ---------------------------------------------------------------------------


def test_next_after_is_strictly_after() -> None:
    sched = CronSchedule("*/5 * * * *", tz="UTC")
    t = utc(2024, 5, 1, 10, 0)
    assert sched.next_after(t) == t + 5 * MINUTE
    assert sched.next_after(t - 0.001) == t
    assert sched.next_after(t + 0.5) == t + 5 * MINUTE


def test_prev_and_latest_tick() -> None:
    sched = CronSchedule("0 * * * *", tz="UTC")
    t = utc(2024, 5, 1, 10, 0)
    assert sched.prev_before(t) == t - HOUR
    assert sched.latest_at_or_before(t) == t
    assert sched.latest_at_or_before(t + 59 * MINUTE) == t


def test_aliases_are_accepted() -> None:
    assert CronSchedule("@hourly", tz="UTC").next_after(utc(2024, 5, 1, 10, 30)) == utc(
        2024, 5, 1, 11, 0
    )


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("* * * *", "5 fields"),
        ("61 * * * *", "out of range"),
        ("*/0 * * * *", "step"),
        ("hello world", "invalid cron expression 'hello world'"),
        ("0 0 30 2 *", "never matches"),
    ],
)
def test_invalid_expression_raises_value_error_with_a_clear_message(
    expr: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule(expr, tz="UTC")


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        CronSchedule("* * * * *", tz="Mars/Olympus")


def test_local_time_zone_follows_tz(berlin: None) -> None:
    sched = CronSchedule("0 12 * * *")
    # noon in Berlin in summer is 10:00 UTC
    assert sched.next_after(utc(2024, 7, 1, 0, 0)) == utc(2024, 7, 1, 10, 0)
    assert str(local_timezone()) == "Europe/Berlin"


def test_tz_as_a_file_path_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", ":/usr/share/zoneinfo/Asia/Tokyo")
    if not os.path.exists("/usr/share/zoneinfo/Asia/Tokyo"):
        monkeypatch.setenv("TZ", "Asia/Tokyo")  # tzdata from PyPI: no system files needed
    assert CronSchedule("0 9 * * *").next_after(utc(2024, 7, 1, 1, 0)) == utc(2024, 7, 2, 0, 0)


# --- TickPlanner: normal operation ----------------------------------------------------------


def test_every_minute_for_an_hour_runs_sixty_times() -> None:
    clock = FakeClock(wall=utc(2024, 5, 1, 10, 0) + 30)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    decisions = run_for(planner, clock, HOUR)
    ticks = runs(decisions)
    assert len(ticks) == 60
    assert ticks == sorted(set(ticks))
    assert all(b - a == MINUTE for a, b in itertools.pairwise(ticks))
    assert sum(d.missed for d in decisions) == 0
    assert planner.last_tick == ticks[-1]


def test_first_tick_of_a_new_workload_is_the_next_one() -> None:
    now = utc(2024, 5, 1, 10, 0) + 30
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    assert planner.arm(now) == utc(2024, 5, 1, 10, 1)
    assert planner.due(now) == TickDecision(False, None, 0, utc(2024, 5, 1, 10, 1))


def test_a_timer_that_fires_early_rearms_for_the_same_tick_and_runs_it_once() -> None:
    tick = utc(2024, 5, 1, 10, 1)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    planner.arm(tick - 30)
    early = planner.due(tick - 0.005)
    assert early == TickDecision(False, None, 0, tick)
    on_time = planner.due(tick + 0.001)
    assert (on_time.run, on_time.tick, on_time.missed) == (True, tick, 0)
    again = planner.due(tick + 0.5)  # any other wake in the same minute
    assert not again.run
    assert again.next_tick == tick + MINUTE


def test_a_late_wake_still_runs_the_tick() -> None:
    tick = utc(2024, 5, 1, 10, 1)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    planner.arm(tick - 30)
    late = planner.due(tick + 45)
    assert (late.run, late.tick, late.missed, late.next_tick) == (True, tick, 0, tick + MINUTE)


# --- TickPlanner: clock jumps ---------------------------------------------------------------


def test_forward_jump_of_three_hours_runs_once_and_counts_the_missed_ticks() -> None:
    clock = FakeClock(wall=utc(2024, 5, 1, 10, 0) + 30)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    before = run_for(planner, clock, 5 * MINUTE)
    assert len(runs(before)) == 5

    jumped = wake(planner, clock, jump=3 * HOUR)
    assert jumped.run
    assert jumped.tick == clock.wall() // MINUTE * MINUTE  # the most recent tick
    assert jumped.missed == 180
    assert jumped.next_tick == jumped.tick + MINUTE

    after = run_for(planner, clock, 10 * MINUTE)
    assert len(runs(after)) == 10  # back to one run a minute, no burst
    assert all(d.missed == 0 for d in after)


def test_forward_jump_of_years_is_counted_without_walking_every_tick() -> None:
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    start = utc(1970, 1, 1, 0, 0) + 30  # a board that booted before NTP set its clock
    planner.arm(start)
    now = utc(2026, 1, 1, 0, 0) + 30
    decision = planner.due(now)
    assert decision.run
    exact_ticks = (utc(2026, 1, 1, 0, 0) - utc(1970, 1, 1, 0, 1)) / MINUTE + 1
    assert exact_ticks > MAX_COUNTED_TICKS
    assert decision.missed == exact_ticks - 1


def test_small_backward_jump_never_repeats_the_tick_just_served() -> None:
    clock = FakeClock(wall=utc(2024, 5, 1, 10, 0) + 30)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    served = runs(run_for(planner, clock, 2 * MINUTE))  # 10:01, 10:02
    assert served == [utc(2024, 5, 1, 10, 1), utc(2024, 5, 1, 10, 2)]

    clock.jump_wall(-40)  # an NTP step back: 10:02:00 -> 10:01:20
    decisions = run_for(planner, clock, 5 * MINUTE)
    after = runs(decisions)
    assert not any(d.reanchored for d in decisions)
    assert after[0] == utc(2024, 5, 1, 10, 3)  # 10:02 (and 10:01) are not run again
    assert len(set(served + after)) == len(served + after)


def test_backward_jump_of_an_hour_resumes_a_minute_job_within_a_minute() -> None:
    clock = FakeClock(wall=utc(2024, 5, 1, 10, 0) + 30)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"))
    run_for(planner, clock, 2 * MINUTE + 10)  # served 10:01, 10:02; now 10:02:10

    clock.jump_wall(-HOUR)  # 09:02:10
    decision = planner.due(clock.wall())
    assert decision.reanchored
    assert not decision.run  # no burst, nothing runs at the jump itself
    assert decision.next_tick == utc(2024, 5, 1, 9, 3)
    assert decision.next_tick - clock.wall() <= MINUTE  # not an hour of silence

    decisions = run_for(planner, clock, 10 * MINUTE)
    assert len(runs(decisions)) == 10  # one a minute in real time
    assert all(d.missed == 0 for d in decisions)


def test_backward_jump_shorter_than_a_day_does_not_rerun_a_daily_job() -> None:
    clock = FakeClock(wall=utc(2024, 5, 1, 2, 0))
    planner = TickPlanner(CronSchedule("0 3 * * *", tz="UTC"))
    first = runs(run_for(planner, clock, HOUR + 30 * MINUTE))  # 03:00 served; now 03:30
    assert first == [utc(2024, 5, 1, 3, 0)]

    clock.jump_wall(-2 * HOUR)  # 01:30: today's 03:00 label comes round again
    decisions = run_for(planner, clock, 26 * HOUR)
    assert runs(decisions) == [utc(2024, 5, 2, 3, 0)]  # only tomorrow's
    assert not any(d.reanchored for d in decisions)


def test_backward_jump_of_more_than_a_period_reanchors_a_daily_job() -> None:
    now = utc(2024, 5, 1, 3, 30)
    planner = TickPlanner(CronSchedule("0 3 * * *", tz="UTC"), last_tick=utc(2024, 5, 1, 3, 0))
    planner.arm(now)
    decision = planner.due(now - 25 * HOUR)  # 2024-04-30 02:30
    assert decision.reanchored
    assert decision.next_tick == utc(2024, 4, 30, 3, 0)


def test_persisted_last_tick_slightly_ahead_of_a_slow_boot_clock_is_not_rerun() -> None:
    last = utc(2024, 5, 1, 10, 5)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"), last_tick=last)
    decision = planner.due(last - 20)
    assert not decision.run
    assert decision.next_tick == last + MINUTE


# --- TickPlanner: startup catch-up ----------------------------------------------------------


def test_catch_up_skip_counts_downtime_ticks_and_runs_none() -> None:
    last = utc(2024, 5, 1, 10, 0)
    clock = FakeClock(wall=last + 2 * HOUR + 10)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"), last_tick=last, catch_up="skip")
    startup = planner.due(clock.wall())
    assert (startup.run, startup.missed) == (False, 120)
    assert startup.tick == last + 2 * HOUR
    assert planner.last_tick == last + 2 * HOUR
    assert startup.next_tick == last + 2 * HOUR + MINUTE
    # then live ticks run normally
    assert runs(run_for(planner, clock, 3 * MINUTE)) == [
        last + 2 * HOUR + MINUTE,
        last + 2 * HOUR + 2 * MINUTE,
        last + 2 * HOUR + 3 * MINUTE,
    ]


def test_catch_up_once_runs_exactly_one_of_the_missed_ticks() -> None:
    last = utc(2024, 5, 1, 10, 0)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"), last_tick=last, catch_up="once")
    startup = planner.due(last + 2 * HOUR + 10)
    assert (startup.run, startup.tick, startup.missed) == (True, last + 2 * HOUR, 119)
    again = planner.due(last + 2 * HOUR + 20)
    assert not again.run


def test_catch_up_once_with_nothing_missed_runs_nothing_early() -> None:
    last = utc(2024, 5, 1, 10, 0)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"), last_tick=last, catch_up="once")
    assert planner.due(last + 30) == TickDecision(False, None, 0, last + MINUTE)
    live = planner.due(last + MINUTE)
    assert (live.run, live.missed) == (True, 0)


def test_catch_up_skip_still_runs_a_tick_that_falls_due_after_startup() -> None:
    last = utc(2024, 5, 1, 10, 0)
    planner = TickPlanner(CronSchedule("* * * * *", tz="UTC"), last_tick=last, catch_up="skip")
    planner.arm(last + HOUR + 50)  # startup: 60 ticks were missed while down
    decision = planner.due(last + HOUR + MINUTE + 1)  # the loop got round to it after 10:61
    assert decision.run
    assert decision.tick == last + HOUR + MINUTE
    assert decision.missed == 60


def test_invalid_catch_up_policy_is_rejected() -> None:
    with pytest.raises(ValueError, match="catch_up must be 'skip' or 'once'"):
        TickPlanner("* * * * *", catch_up="always")


# --- DST ------------------------------------------------------------------------------------


def test_spring_forward_runs_every_real_minute_once(berlin: None) -> None:
    # 2024-03-31 02:00 CET -> 03:00 CEST in Berlin; start at 00:30 local (23:30 UTC).
    clock = FakeClock(wall=utc(2024, 3, 30, 23, 30))
    planner = TickPlanner(CronSchedule("* * * * *"))
    ticks = runs(run_for(planner, clock, 3 * HOUR))
    assert len(ticks) == 180
    assert ticks == sorted(set(ticks))
    berlin_tz = ZoneInfo("Europe/Berlin")
    labels = [datetime.fromtimestamp(t, berlin_tz).strftime("%H:%M") for t in ticks]
    assert len(labels) == len(set(labels))
    assert "02:30" not in labels  # that local time does not exist on this day


def test_spring_forward_daily_job_in_the_skipped_hour_runs_once(berlin: None) -> None:
    clock = FakeClock(wall=utc(2024, 3, 30, 12, 0))
    planner = TickPlanner(CronSchedule("30 2 * * *"))
    ticks = runs(run_for(planner, clock, 2 * DAY))
    days = [datetime.fromtimestamp(t, ZoneInfo("Europe/Berlin")).date() for t in ticks]
    assert len(ticks) == 2
    assert len(set(days)) == 2  # one run on the 31st (at 03:00 CEST), one on April 1st


def test_fall_back_runs_a_fixed_time_job_once(berlin: None) -> None:
    # 2024-10-27 03:00 CEST -> 02:00 CET: 02:30 happens twice.
    clock = FakeClock(wall=utc(2024, 10, 26, 12, 0))
    planner = TickPlanner(CronSchedule("30 2 * * *"))
    ticks = runs(run_for(planner, clock, 2 * DAY))
    assert ticks == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]


def test_fall_back_keeps_the_spacing_of_a_wildcard_job(berlin: None) -> None:
    clock = FakeClock(wall=utc(2024, 10, 26, 23, 0))  # 01:00 CEST
    planner = TickPlanner(CronSchedule("*/15 * * * *"))
    ticks = runs(run_for(planner, clock, 4 * HOUR))
    assert len(ticks) == 16
    assert all(b - a == 15 * MINUTE for a, b in itertools.pairwise(ticks))


# --- helpers and clocks ---------------------------------------------------------------------


def test_wall_to_monotonic_deadline() -> None:
    assert wall_to_monotonic_deadline(1060.0, 1000.0, 5.0) == 65.0
    assert wall_to_monotonic_deadline(990.0, 1000.0, 5.0) == 5.0  # already due: fire now


def test_fake_clock_jump_moves_wall_only() -> None:
    clock = FakeClock(wall=1000.0, monotonic=10.0)
    clock.advance(5)
    clock.jump_wall(-100)
    assert (clock.wall(), clock.monotonic()) == (905.0, 15.0)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_system_clock_reads_the_real_clocks() -> None:
    clock = SystemClock()
    assert abs(clock.wall() - time.time()) < 3600
    first = clock.monotonic()
    assert clock.monotonic() >= first


def test_planner_exposes_its_normalised_expression() -> None:
    assert TickPlanner("*/5  *  * * *").expr == "*/5 * * * *"


@pytest.mark.parametrize("expr", ["@HOURLY", "@Daily", "* * * * * * 2030", "@reboot"])
def test_one_rule_for_aliases_and_fields_in_config_and_planner(expr: str) -> None:
    # Config validates by building the planner's CronSchedule: what one refuses, so does the other.
    with pytest.raises(ValueError, match="invalid cron expression"):
        CronSchedule(expr, tz="UTC")
    with pytest.raises(ValueError, match="invalid cron expression"):
        checks.cron_expression(expr)
