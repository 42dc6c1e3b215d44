"""The heartbeat service's SIGTERM handler: the stop it raises gets through every layer.

The handler raises from wherever the service is; code that turns *failures* into "not
available" (sysmetrics' per-figure guard, logging's emit) must not turn a stop into one.
A real signal to this process, with the previous handlers restored afterwards.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mastercontrol.fleet import heartbeat_service
from mastercontrol.fleet.sysmetrics import system_metrics


@pytest.fixture
def stop_handler() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, heartbeat_service._on_stop)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def sigterm_self(*args: object, **kwargs: object) -> float:
    os.kill(os.getpid(), signal.SIGTERM)
    return 0.0


def test_a_sigterm_during_a_metrics_read_stops_the_service(
    stop_handler: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(psutil, "cpu_percent", sigterm_self)
    with pytest.raises(heartbeat_service._Stop):
        system_metrics({"state": tmp_path})


def test_a_sigterm_during_a_log_line_stops_the_service(
    stop_handler: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    heartbeat_service._setup_logging()
    handler = heartbeat_service.log.handlers[0]
    monkeypatch.setattr(handler, "format", sigterm_self)
    with pytest.raises(heartbeat_service._Stop):
        heartbeat_service.log.info("a line")


def test_after_the_first_sigterm_further_ones_are_ignored(stop_handler: None) -> None:
    with pytest.raises(heartbeat_service._Stop):
        sigterm_self()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
