"""`central.enabled: true` makes the master synthesize `@central-api` (config/internal.py):
module mastercontrol.api.central_service, the internal-service params, a digest of `central:`
only, and never the operator's token."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from mastercontrol.config.internal import CENTRAL_API, CLIENT_API, internal_workloads
from mastercontrol.config.model import CentralSettings, DaemonConfig, FleetSettings, RunMode

PATHS = {
    "config_dir": Path("/etc/mc"),
    "socket_path": Path("/run/mc/mc.sock"),
    "state_dir": Path("/var/lib/mc"),
    "log_dir": Path("/var/log/mc"),
}
TOKEN = "operator-secret-token"


def central(**fields: object) -> DaemonConfig:
    return DaemonConfig(central=CentralSettings(enabled=True, api_token=TOKEN, **fields))  # type: ignore[arg-type]


def test_central_enabled_gives_the_central_api_service() -> None:
    services = internal_workloads(central(), **PATHS)
    assert list(services) == [CENTRAL_API]
    svc = services[CENTRAL_API]
    assert (svc.module, svc.entry_point) == ("mastercontrol.api.central_service", "main")
    assert svc.run_mode is RunMode.FOREVER
    assert set(svc.params) == {"config_dir", "socket_path", "state_dir", "log_dir",
                               "section_digest"}  # fmt: skip
    assert TOKEN not in json.dumps(dataclasses.asdict(svc), default=str)
    assert CENTRAL_API not in internal_workloads(DaemonConfig(), **PATHS)


def test_only_a_change_of_central_restarts_it() -> None:
    one = internal_workloads(central(), **PATHS)[CENTRAL_API]
    assert internal_workloads(central(), **PATHS)[CENTRAL_API] == one
    assert internal_workloads(central(port=9090), **PATHS)[CENTRAL_API] != one
    both = dataclasses.replace(
        central(), fleet=FleetSettings(enabled=True, central_api_url="http://c:8080")
    )
    services = internal_workloads(both, **PATHS)
    assert services[CENTRAL_API] == one and CLIENT_API in services
