"""A real central service whose wall clock is stepped while it runs (libfaketime, as in
tests/integration/test_clock_jumps.py): liveness is measured on the monotonic clock, so a step
of the control host's clock neither turns a live fleet offline nor a silent client online.
libfaketime is preloaded into the central only (its environment); CLOCK_MONOTONIC is left
alone, as on a real machine."""

from __future__ import annotations

import glob
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_central_service import CentralProcess, status_of, wait_for

LIBS = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
pytestmark = pytest.mark.skipif(not LIBS, reason="no libfaketime (apt-get install faketime)")


class Stepped:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.set(0)

    def set(self, offset: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset:+.3f}\n")
        tmp.replace(self.path)


@pytest.fixture
def stepped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CentralProcess, Stepped]]:
    clock = Stepped(tmp_path / "faketime-offset")
    # Popen inherits this process's environment: only the central gets the preload.
    monkeypatch.setenv("LD_PRELOAD", LIBS[0])
    monkeypatch.setenv("FAKETIME_TIMESTAMP_FILE", str(clock.path))
    monkeypatch.setenv("FAKETIME_NO_CACHE", "1")
    monkeypatch.setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    c = CentralProcess(tmp_path, stale_after_seconds=2, offline_after_seconds=3600)
    c.inventory([{"name": "pi-01", "host": "127.0.0.1", "api_token": "tok-1"},
                 {"name": "pi-02", "host": "127.0.0.1", "api_token": "tok-2"}])  # fmt: skip
    c.start()
    monkeypatch.delenv("LD_PRELOAD")  # this test's own HTTP calls run on the real clock
    yield c, clock
    c.stop()


def test_a_clock_step_moves_no_client_online_or_offline(
    stepped: tuple[CentralProcess, Stepped],
) -> None:
    central, clock = stepped
    assert central.heartbeat("pi-02", "tok-2")[0] == 200
    wait_for("pi-02 stale", lambda: status_of(central, "pi-02") == "stale", timeout=30)
    assert central.heartbeat("pi-01", "tok-1")[0] == 200
    before = central.get("/api/v1/clients/pi-01")["last_seen"]
    clock.set(+7200)  # two hours forward: pi-01 was heard a moment ago all the same
    time.sleep(0.3)
    assert status_of(central, "pi-01") == "online"
    assert status_of(central, "pi-02") == "stale"
    clock.set(-7200)  # two hours back: pi-02 stays as silent as it was
    time.sleep(0.3)
    assert status_of(central, "pi-02") == "stale"
    assert status_of(central, "pi-01") == "online"
    # Wall time is still what is shown and stored: a heartbeat now carries the stepped time.
    assert central.heartbeat("pi-01", "tok-1")[0] == 200
    assert central.get("/api/v1/clients/pi-01")["last_seen"] < before - 3600
    assert central.get("/api/v1/fleet")["by_status"]["offline"] == 0
