"""A failing state database is logged at most once a minute, with the count of the failures in
between (the rate docs/operations.md promises); pure logic, with a fake clock."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from mastercontrol.daemon.history import History
from mastercontrol.engine.clock import FakeClock
from mastercontrol.errors import StoreError
from mastercontrol.store.queries import Store


def _failing_write() -> None:
    raise StoreError("disk I/O error")


def test_state_db_failures_are_logged_once_a_minute_with_the_count_in_between(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    history = History(cast(Store, None), clock)
    with caplog.at_level(logging.ERROR, logger="mastercontrol.daemon.history"):
        for _ in range(40):  # 40 failures over 59 s: one line
            assert history.save(_failing_write) is None
            clock.advance(59 / 40)
        assert len(caplog.records) == 1
        assert "(1 so far)" in caplog.records[0].getMessage()
        clock.advance(1.5)  # just over a minute after the first line
        history.save(_failing_write)
    assert len(caplog.records) == 2
    second = caplog.records[1].getMessage()
    assert "(41 so far)" in second and "(39 more not logged in the last minute)" in second
    assert history.errors == 41
