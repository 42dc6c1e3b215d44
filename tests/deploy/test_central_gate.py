"""Deploys with a real central API (the central service process of tests/integration): clients
without `api_url` are gated on what their heartbeats told the central, and every deployment is
recorded there (`GET /api/v1/deployments/<id>`: its waves and each client's result); `--dry-run`
prints the central's view of each client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.fleet import TOKEN, Fleet, last_code, wait_code
from tests.deploy.test_rollout import setup_fleet
from tests.integration.test_central_service import OPERATOR, CentralProcess


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    c = CentralProcess(tmp_path / "central", stale_after_seconds=30, offline_after_seconds=60)
    c.inventory([{"name": f"pi-{i}", "host": "127.0.0.1", "api_token": TOKEN} for i in (1, 2)])
    c.start()
    yield c
    c.stop()


def latest_deployment(central: CentralProcess) -> dict[str, Any]:
    listed = central.get("/api/v1/deployments")["deployments"]
    newest = max(int(d["id"]) for d in listed)
    record: dict[str, Any] = central.get(f"/api/v1/deployments/{newest}")
    found: dict[str, Any] = record.get("deployment", record)
    return found


def results(record: dict[str, Any]) -> list[dict[str, str]]:
    """Per wave: client name -> its status, as the central recorded it."""
    return [{c["name"]: c["status"] for c in b["clients"]} for b in record["batches"]]


def test_clients_without_api_url_are_gated_on_the_centrals_heartbeats(
    fleet: Fleet, central: CentralProcess
) -> None:
    fleet.central_url, fleet.central_token = central.url, OPERATOR
    fleet.heartbeat_seconds, fleet.api_urls = 1, False
    setup_fleet(fleet, 2)
    assert "api_url:" not in fleet.inventory.read_text()

    done = fleet.fab("deploy", "--batch=1")
    assert done.returncode == 0, done.stdout + done.stderr
    for c in fleet.clients:
        wait_code(c, "v1")
    record = latest_deployment(central)
    assert record["status"] == "succeeded"
    assert results(record) == [{"pi-1": "updated"}, {"pi-2": "updated"}]
    assert record["release"] == fleet.clients[0].current()

    # --dry-run tells what the central last heard from each client, and connects to none.
    before = [c.sshd.connections() for c in fleet.clients]
    dry = fleet.fab("deploy", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for c in fleet.clients:
        assert f"    central: online, release {c.current()}" in dry.stdout, dry.stdout
    assert [c.sshd.connections() for c in fleet.clients] == before

    # The central's heartbeats also tell a crash: wave 1 fails its gate and is rolled back.
    v1 = {c.name: c.current() for c in fleet.clients}
    fleet.service("crash", crash=True)
    done = fleet.fab("deploy", "--batch=1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed the gate" in done.stdout
    assert {c.name: c.current() for c in fleet.clients} == v1
    wait_code(fleet.clients[0], "v1")
    assert last_code(fleet.clients[1]) == "v1"
    record = latest_deployment(central)
    assert record["status"] == "failed"
    assert results(record) == [{"pi-1": "rolled_back"}, {"pi-2": "untouched"}]
