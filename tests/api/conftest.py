"""Fixtures of the API tests: a real daemon with two workloads and the client app over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from mastercontrol.api.client_app import create_client_app
from mastercontrol.ipc.client import MasterClient
from tests.api.service import ApiService, free_port, write_daemon_yaml
from tests.integration.harness import Daemon

TOKEN = "s3cret-token-for-tests"


@dataclass
class Live:
    daemon: Daemon
    app: Any
    master: MasterClient


@pytest.fixture
def live(daemon: Daemon) -> Iterator[Live]:
    """A running daemon with `svc` (a service) and `tick` (an agent), and the app over it."""
    daemon.workload("svc", "sleep_forever", tags=["web"], version="1.2.0")
    daemon.workload("tick", "exit_with", type="agent", schedule="0 0 1 1 *")
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    master = MasterClient(daemon.socket_path)
    disks = {"state": daemon.db_path.parent, "log": daemon.log_dir}
    yield Live(daemon, create_client_app(master, TOKEN, disk_paths=disks), master)


@pytest.fixture
def http(daemon: Daemon) -> Iterator[ApiService]:
    """The same daemon and workloads, with client_service.main serving them over real HTTP."""
    port = free_port()
    write_daemon_yaml(daemon, {"api_port": port, "api_token": TOKEN})
    daemon.workload("svc", "sleep_forever", tags=["web"], version="1.2.0")
    daemon.workload("tick", "exit_with", type="agent", schedule="0 0 1 1 *")
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    service = ApiService(daemon)
    try:
        service.start(port)
        yield service
    finally:
        service.stop()
