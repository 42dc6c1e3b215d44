"""Backoff: capped doubling, the retry limit, the FATAL retry period."""

from __future__ import annotations

import math

import pytest

from mastercontrol.config.model import RunMode, WorkloadConfig, WorkloadType
from mastercontrol.engine.backoff import Backoff


def test_delay_doubles_from_restart_delay_and_is_capped() -> None:
    policy = Backoff(restart_delay=1.0, restart_delay_max=60.0)
    assert [policy.delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_first_failure_waits_exactly_restart_delay() -> None:
    assert Backoff(restart_delay=2.5, restart_delay_max=100.0).delay(1) == 2.5


def test_after_a_run_that_stayed_up_the_wait_is_restart_delay() -> None:
    assert Backoff(restart_delay=5.0).delay(0) == 5.0
    assert Backoff(restart_delay=5.0, restart_delay_max=2.0).delay(0) == 2.0
    assert Backoff(restart_delay=0.0).delay(0) == 0.0


def test_restart_delay_zero_gives_zero_delay_for_every_failure() -> None:
    policy = Backoff(restart_delay=0.0, restart_delay_max=60.0)
    assert {policy.delay(n) for n in range(1, 100)} == {0.0}


def test_cap_below_restart_delay_wins() -> None:
    assert Backoff(restart_delay=10.0, restart_delay_max=3.0).delay(1) == 3.0


def test_huge_failure_counts_stay_at_the_cap_without_overflow() -> None:
    policy = Backoff(restart_delay=1.0, restart_delay_max=60.0)
    assert policy.delay(10_000_000) == 60.0


def test_delay_is_deterministic() -> None:
    policy = Backoff()
    assert [policy.delay(3) for _ in range(5)] == [4.0] * 5


@pytest.mark.parametrize(
    ("max_retries", "failures", "exhausted"),
    [
        (5, 1, False),
        (5, 5, False),  # the 5th retry is still allowed ...
        (5, 6, True),  # ... the failure after it is one too many
        (0, 1, True),  # no retries at all: the first quick failure is fatal
        (0, 0, False),
        (3, 4, True),
    ],
)
def test_exhausted_after_max_retries_retries(
    max_retries: int, failures: int, exhausted: bool
) -> None:
    assert Backoff(max_retries=max_retries).exhausted(failures) is exhausted


def test_fatal_retry_delay_zero_means_stay_fatal() -> None:
    assert Backoff(fatal_retry_delay=0.0).fatal_delay() is None
    assert Backoff(fatal_retry_delay=300.0).fatal_delay() == 300.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"restart_delay": -1.0},
        {"restart_delay_max": -0.5},
        {"fatal_retry_delay": -1.0},
        {"max_retries": -1},
        {"restart_delay": math.nan},
        {"restart_delay_max": math.inf},
    ],
)
def test_invalid_policy_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_from_config_takes_the_workload_restart_settings() -> None:
    cfg = WorkloadConfig(
        name="svc",
        type=WorkloadType.SERVICE,
        run_mode=RunMode.FOREVER,
        module="m",
        restart_delay=0.5,
        restart_delay_max=4.0,
        max_retries=2,
        fatal_retry_delay=0.0,
    )
    policy = Backoff.from_config(cfg)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert not policy.exhausted(2)
    assert policy.exhausted(3)
    assert policy.fatal_delay() is None
