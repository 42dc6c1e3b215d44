"""A real fleet on 127.0.0.1 for the browser tests, and a real headless Chromium.

The control host is a real mastercontrold with `central.enabled` (its `@central-api` serves
the dashboard on a free port); three more real mastercontrold daemons are devices `pi-01`,
`pi-02` and `pi-03`, each with `fleet.enabled` (their own `@client-api` on a free port and
`@heartbeat` sender), their own token in the central's inventory, and a workload `svc`.
Heartbeats every second and `stale_after_seconds: 3` keep the tests short. Playwright drives
Debian's `chromium` (/usr/bin/chromium, headless, --no-sandbox): no browser is downloaded.
Without chromium or playwright the tests skip, and under MCTL_REQUIRE_ALL=1 that skip fails.
Screenshots go to tests/artifacts/ on every run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Daemon, wait_for
from tests.integration.test_central_service import request
from tests.integration.test_internal_services import free_port

CHROMIUM = os.environ.get("MCTL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
OPERATOR = "browser-test-operator-token"
NAMES = ("pi-01", "pi-02", "pi-03")


@dataclass
class Fleet:
    central: Daemon
    url: str
    devices: dict[str, Daemon] = field(default_factory=dict)

    def api(self, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        return request(self.url + path, OPERATOR, method, body)

    def status_of(self, name: str) -> str | None:
        try:
            code, body = self.api(f"/api/v1/clients/{name}")
        except OSError:
            return None
        return str(body["status"]) if code == 200 else None


def _token_file(root: Path, text: str) -> Path:
    path = root / "token"
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    central = Daemon(root / "central")
    port = free_port()
    central.write("inventory.yaml", json.dumps({"clients": [
        {"name": n, "host": "127.0.0.1", "tags": ["lab" if n != "pi-03" else "garage"],
         "api_token": f"device-token-{n}"} for n in NAMES
    ]}))  # fmt: skip
    central.write("daemon.yaml", json.dumps({"central": {
        "enabled": True, "host": "127.0.0.1", "port": port,
        "api_token_file": str(_token_file(central.root, OPERATOR)),
        "stale_after_seconds": 3, "offline_after_seconds": 600, "flush_interval_seconds": 0.5,
        "history_sample_seconds": 1,
    }}))  # fmt: skip
    fl = Fleet(central, f"http://127.0.0.1:{port}")
    try:
        central.start()
        wait_for(lambda: fl.status_of("pi-01") is not None, 40, 0.2, "the central to answer")
        for name in NAMES:
            d = Daemon(root / name)
            d.workload("svc", "sleep_forever")
            d.write("daemon.yaml", json.dumps({"fleet": {
                "enabled": True, "client_name": name, "api_port": free_port(),
                "central_api_url": fl.url, "heartbeat_interval_seconds": 1,
                "api_token_file": str(_token_file(d.root, f"device-token-{name}")),
            }}))  # fmt: skip
            d.start()
            fl.devices[name] = d
        for name in NAMES:

            def online(n: str = name) -> bool:
                return fl.status_of(n) == "online"

            wait_for(online, 60, 0.2, f"{name} online")
        yield fl
    finally:
        for d in fl.devices.values():
            d.cleanup()
        central.cleanup()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (the `test` extra: make install)")
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; see .ci/packages)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium"),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        )
        try:
            yield browser
        finally:
            browser.close()


def shot(page: Any, name: str) -> None:
    """Save a full-page screenshot of `page` as tests/artifacts/<name>.png."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
