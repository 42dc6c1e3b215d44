"""JumpWatch: a wall clock step is the difference between how far wall and monotonic moved."""

from __future__ import annotations

import pytest

from mastercontrol.engine.clock import JUMP_THRESHOLD, FakeClock, JumpWatch


def test_time_passing_is_not_a_step() -> None:
    clock = FakeClock()
    watch = JumpWatch(clock)
    clock.advance(3600)
    assert watch.check() == 0.0


@pytest.mark.parametrize("step", [3600.0, -3585.0, 2.5, -1.0])
def test_a_step_either_way_is_reported_once(step: float) -> None:
    clock = FakeClock()
    watch = JumpWatch(clock)
    clock.advance(5)
    clock.jump_wall(step)
    assert watch.check() == pytest.approx(step)
    assert watch.check() == 0.0  # the new offset is the reference now


def test_drift_below_the_threshold_does_not_add_up() -> None:
    clock = FakeClock()
    watch = JumpWatch(clock)
    for _ in range(10):  # ten slews of just under the threshold: none is a step
        clock.jump_wall(JUMP_THRESHOLD * 0.9)
        assert watch.check() == 0.0
