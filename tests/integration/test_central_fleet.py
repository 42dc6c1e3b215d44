"""A real device reporting to a real central, and remote control through the central.

A real mastercontrold with a workload, its real heartbeat sender (fleet/heartbeat_service.py in
a process of its own) and its client API (the real app under Waitress on 127.0.0.1) on one
side; the real central service process on the other. A restart through the central changes
the workload's real pid; a device whose heartbeats stop turns stale, then offline.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mastercontrol.api.client_app import create_client_app
from mastercontrol.api.server import make_server
from mastercontrol.ipc.client import MasterClient
from tests.integration.harness import REPO, Daemon, wait_for
from tests.integration.test_central_service import OPERATOR, CentralProcess, request

DEVICE_TOKEN = "device-token-pi-01"


@contextlib.contextmanager
def client_api(daemon: Daemon) -> Iterator[str]:
    """The device's client API over its real master, on a free port of 127.0.0.1."""
    app = create_client_app(MasterClient(daemon.socket_path), DEVICE_TOKEN)
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=10)


@contextlib.contextmanager
def heartbeat_sender(daemon: Daemon) -> Iterator[subprocess.Popen[bytes]]:
    params = {
        "config_dir": str(daemon.config_dir),
        "socket_path": str(daemon.socket_path),
        "state_dir": str(daemon.db_path.parent),
        "log_dir": str(daemon.log_dir),
        "section_digest": "0" * 64,
    }
    code = f"from mastercontrol.fleet.heartbeat_service import main; main(**{json.dumps(params)})"
    with open(daemon.root / "heartbeat.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdin=subprocess.DEVNULL, stdout=out,
            stderr=out, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def central(tmp_path: Path) -> Iterator[CentralProcess]:
    c = CentralProcess(tmp_path / "central", stale_after_seconds=4, offline_after_seconds=8)
    c.inventory([{"name": "pi-01", "host": "127.0.0.1", "api_token": DEVICE_TOKEN}])
    c.start()
    yield c
    c.stop()


def svc_of(c: CentralProcess) -> dict[str, Any] | None:
    workloads = c.get("/api/v1/clients/pi-01/workloads")["workloads"]
    found = [w for w in workloads if w["name"] == "svc"]
    return found[0] if found else None


def test_remote_restart_through_the_central_changes_the_real_pid_and_silence_goes_offline(
    daemon: Daemon, central: CentralProcess
) -> None:
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    first_pid = daemon.wait_state("svc", "RUNNING")["pid"]
    with client_api(daemon) as api_url:
        fleet = {
            "client_name": "pi-01",
            "central_api_url": central.url,
            "heartbeat_interval_seconds": 1,
            "api_token": DEVICE_TOKEN,
            "api_url": api_url,
        }
        daemon.write("daemon.yaml", json.dumps({"fleet": fleet}))
        with heartbeat_sender(daemon) as sender:
            seen = wait_for(lambda: svc_of(central), what="svc in the central's view")
            assert seen["pid"] == first_pid and seen["state"] == "RUNNING"
            assert central.get("/api/v1/clients/pi-01")["status"] == "online"

            status, body = request(
                f"{central.url}/api/v1/clients/pi-01/workloads/svc/restart", OPERATOR, "POST", {}
            )
            assert status == 200, body
            new = daemon.wait_state("svc", "RUNNING")
            wait_for(lambda: daemon.status("svc")["pid"] not in (None, first_pid),
                     what="a new pid")  # fmt: skip
            new_pid = daemon.status("svc")["pid"]
            wait_for(
                lambda: (svc_of(central) or {}).get("pid") == new_pid,
                what="the new pid in the central's view",
            )
            assert new["state"] == "RUNNING"
            status, body = request(
                f"{central.url}/api/v1/clients/pi-01/workloads/nope/restart", OPERATOR, "POST", {}
            )
            assert status == 404, body  # the client's own 404, passed through
            events = central.get("/api/v1/events?kind=action")["events"]
            assert [(e["workload"], e["result"]) for e in events] == [
                ("nope", "http_404"), ("svc", "ok"),
            ]  # fmt: skip

            sender.send_signal(signal.SIGTERM)  # the device stops reporting
            sender.wait(timeout=20)
            wait_for(lambda: central.get("/api/v1/clients/pi-01")["status"] == "stale",
                     timeout=30, what="stale")  # fmt: skip
            wait_for(lambda: central.get("/api/v1/clients/pi-01")["status"] == "offline",
                     timeout=30, what="offline")  # fmt: skip
