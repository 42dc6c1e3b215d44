"""Wall clock steps seen by MasterLoop.step(): schedules are re-planned at the wake that notices
the step, not when the old (monotonic) timer fires. Fake clock and spawner; real store."""

from __future__ import annotations

import selectors
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mastercontrol.config.model import ConfigSet, DaemonConfig, WorkloadConfig
from mastercontrol.daemon.loop import MasterLoop
from mastercontrol.daemon.views import workload_view
from mastercontrol.daemon.workload import AfterStop
from mastercontrol.engine.clock import JUMP_CHECK_INTERVAL, FakeClock
from mastercontrol.engine.exitstatus import ExitReason
from mastercontrol.engine.timers import TimerKey, TimerKind
from mastercontrol.store.open import open_store
from tests.loop.fakes import FakeWorld, workload

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z: a whole hour


class Rig:
    def __init__(
        self, tmp_path: Path, cfg: WorkloadConfig, wall: float = T0, fail_spawns: int = 0
    ) -> None:
        self.clock = FakeClock(wall=wall)
        self.world = FakeWorld(exit_on={signal.SIGTERM: -signal.SIGTERM}, fail_spawns=fail_spawns)
        self.db = tmp_path / "state.db"
        self.store, _ = open_store(self.db, self.clock.wall())
        configs = ConfigSet({cfg.name: cfg}, DaemonConfig(), [])
        self.loop = MasterLoop(
            config_dir=tmp_path,
            socket_path=tmp_path / "mc.sock",
            log_dir=tmp_path / "log",
            store=self.store,
            clock=self.clock,
            spawner=self.world.spawn,
            daemon_config=DaemonConfig(),
            send_signal=self.world.send,
            load_config=lambda _: configs,
        )
        self.loop.start(configs)
        self.name = cfg.name

    def step(self) -> None:
        self.loop.step(max_wait=0)

    def tick_in(self) -> float:
        """Seconds until the agent's tick timer fires (monotonic)."""
        deadline = self.loop.timers.deadline(TimerKey(TimerKind.TICK, self.name))
        assert deadline is not None
        return deadline - self.clock.monotonic()

    def next_run_at(self) -> float:
        view = workload_view(self.loop.lifecycle.workloads[self.name], self.clock.monotonic())
        value = view["next_run_at"]
        assert isinstance(value, float)
        return value

    def finish_run(self) -> None:
        (child,) = self.world.live(self.name)
        child.code = 0
        self.loop.lifecycle.reap_all()

    def events(self, trigger: str) -> list[str | None]:
        conn = sqlite3.connect(self.db)
        try:
            rows = conn.execute(
                "SELECT detail FROM events WHERE workload = ? AND trigger = ? ORDER BY id",
                (self.name, trigger),
            )
            return [r[0] for r in rows]
        finally:
            conn.close()

    def close(self) -> None:
        self.loop.close()
        self.store.close()


Make = Callable[..., Rig]


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Make]:
    rigs: list[Rig] = []

    def build(cfg: WorkloadConfig, wall: float = T0, fail_spawns: int = 0) -> Rig:
        rig = Rig(tmp_path, cfg, wall, fail_spawns)
        rigs.append(rig)
        return rig

    yield build
    for rig in rigs:
        rig.close()


def test_a_loop_with_a_schedule_looks_at_the_wall_clock_every_second(make: Make) -> None:
    rig = make(workload("agent", "agent", schedule="@hourly"))
    # The tick is an hour away, but the next wake is at most JUMP_CHECK_INTERVAL away.
    assert rig.tick_in() == pytest.approx(3600)
    seen: list[float | None] = []
    real_select = rig.loop.selector.select

    def spy(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        seen.append(timeout)
        return real_select(0)

    rig.clock.advance(1)
    rig.loop.step(max_wait=0)  # the first metrics sample, due a second after start
    rig.loop.selector.select = spy  # type: ignore[method-assign]
    for _ in range(3):
        rig.clock.advance(JUMP_CHECK_INTERVAL)
        rig.loop.step()
    assert seen == [JUMP_CHECK_INTERVAL] * 3
    # Without a schedule armed the loop sleeps until its next timer, as before.
    rig.loop.lifecycle.halt(
        rig.loop.lifecycle.workloads["agent"], ExitReason.STOPPED, AfterStop.STAY
    )
    seen.clear()
    rig.loop.step()
    assert seen[0] is not None and seen[0] > JUMP_CHECK_INTERVAL


def test_forward_step_before_the_tick_rearms_the_timer_at_once(make: Make) -> None:
    # The issue: a */2 job ran 114 s late, because only the old timer noticed the step.
    rig = make(workload("agent", "agent", schedule="*/2 * * * *"))
    assert rig.tick_in() == pytest.approx(120)
    rig.clock.jump_wall(110)
    rig.step()
    assert rig.tick_in() == pytest.approx(10)
    assert rig.next_run_at() == T0 + 120
    rig.clock.advance(10)
    rig.step()
    assert rig.world.runs("agent") == 1


def test_forward_step_over_many_ticks_runs_once_and_replans(make: Make) -> None:
    # The issue: @hourly stayed silent and next_run_at showed a date 3 days old.
    rig = make(workload("agent", "agent", schedule="@hourly"))
    rig.clock.jump_wall(3 * 86400 + 600)
    rig.step()
    assert rig.world.runs("agent") == 1  # the latest due tick, once: no burst
    assert rig.events("ticks_missed") == ["71 ticks missed when the wall clock was set forward"]
    rig.finish_run()
    assert rig.next_run_at() == T0 + 3 * 86400 + 3600
    assert rig.tick_in() == pytest.approx(3000)
    for _ in range(5):
        rig.clock.advance(1)
        rig.step()
    assert rig.world.runs("agent") == 1


def test_backward_step_of_a_period_or_more_fires_the_next_slot_after_the_new_time(
    make: Make,
) -> None:
    # 08:59:50, waiting for 09:00; the clock is set back 3600 s to 07:59:50: the 08:00 slot is
    # 10 s away. Without a prompt re-plan the old timer fires at 08:00:00 (new time) and the
    # planner, re-anchoring then, waits for 09:00: the 08:00 slot is lost.
    rig = make(workload("agent", "agent", schedule="@hourly"), wall=T0 + 3590)
    assert rig.next_run_at() == T0 + 3600
    rig.clock.jump_wall(-3600)
    rig.step()
    assert rig.next_run_at() == T0
    assert rig.tick_in() == pytest.approx(10)
    rig.clock.advance(10)
    rig.step()
    assert rig.world.runs("agent") == 1
    rig.finish_run()
    assert rig.next_run_at() == T0 + 3600


def test_backward_step_shorter_than_a_period_never_runs_the_served_tick_again(
    make: Make,
) -> None:
    rig = make(workload("agent", "agent", schedule="*/2 * * * *"))
    rig.clock.advance(120)
    rig.step()
    assert rig.world.runs("agent") == 1  # the T0+120 tick
    rig.finish_run()
    rig.clock.advance(10)
    rig.clock.jump_wall(-60)  # now T0+70: before the tick just served
    rig.step()
    assert rig.next_run_at() == T0 + 240  # the awaited tick stays
    assert rig.tick_in() == pytest.approx(170)
    for _ in range(3):
        rig.clock.advance(JUMP_CHECK_INTERVAL)
        rig.step()
    assert rig.world.runs("agent") == 1


def test_retry_time_shown_moves_with_the_clock(make: Make) -> None:
    rig = make(workload("svc"), fail_spawns=1)  # BACKOFF: retry in a second
    w = rig.loop.lifecycle.workloads["svc"]
    assert w.state.value == "BACKOFF" and w.retry_wall is not None
    shown = w.retry_wall
    rig.clock.jump_wall(-100)
    rig.step()
    assert w.retry_wall == shown - 100
