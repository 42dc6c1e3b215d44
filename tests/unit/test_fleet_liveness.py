"""Liveness: online, stale, offline, never seen, and the central's start-up grace (all times
on the monotonic clock: `heard` is when this central last heard the client)."""

from __future__ import annotations

import pytest

from mastercontrol.fleet.liveness import Liveness, LivenessRule

START = 1_000_000.0
RULE = LivenessRule(stale_after=90, offline_after=300, started_at=START)


@pytest.mark.parametrize(
    ("silent", "expected"),
    [
        (0, Liveness.ONLINE),
        (89.9, Liveness.ONLINE),
        (90, Liveness.STALE),
        (299.9, Liveness.STALE),
        (300, Liveness.OFFLINE),
        (86_400, Liveness.OFFLINE),
    ],
)
def test_silence_after_the_grace_decides_the_status(silent: float, expected: Liveness) -> None:
    now = START + 10_000
    assert RULE.status(True, now - silent, now) == expected


def test_a_client_without_a_heartbeat_is_never_seen() -> None:
    assert RULE.status(False, None, START + 10_000) == Liveness.NEVER_SEEN


def test_nobody_turns_stale_until_a_full_stale_interval_after_the_start() -> None:
    # Seen by an earlier central (a last_seen), not heard since this one started.
    assert RULE.in_grace(START + 89)
    assert RULE.status(True, None, START + 89) == Liveness.ONLINE
    assert not RULE.in_grace(START + 90)
    assert RULE.status(True, None, START + 90) == Liveness.STALE
    assert RULE.status(True, None, START + 300) == Liveness.OFFLINE


def test_a_client_recorded_offline_before_the_start_stays_offline() -> None:
    assert RULE.status(True, None, START + 1, was_offline=True) == Liveness.OFFLINE
    # A heartbeat after the start ends it.
    assert RULE.status(True, START + 1, START + 2, was_offline=True) == Liveness.ONLINE


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="stale_after"):
        LivenessRule(stale_after=300, offline_after=90, started_at=0)
