"""The internal services synthesized from daemon.yaml (config/internal.py): which ones, their
params (paths and a digest, never a secret), digests that change with their section, and the
reserved `@` names."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from mastercontrol.config import internal
from mastercontrol.config.internal import (
    CLIENT_API,
    HEARTBEAT,
    internal_workloads,
    is_internal,
    section_digest,
)
from mastercontrol.config.load import load_config_files
from mastercontrol.config.model import DaemonConfig, FleetSettings, RunMode

TOKEN = "very-secret-device-token"
PATHS = {
    "config_dir": Path("/etc/mc"),
    "socket_path": Path("/run/mc/mc.sock"),
    "state_dir": Path("/var/lib/mc"),
    "log_dir": Path("/var/log/mc"),
}


def fleet(**fields: object) -> DaemonConfig:
    base: dict[str, object] = {"enabled": True, "central_api_url": "http://c:8080"}
    return DaemonConfig(fleet=FleetSettings(**{**base, **fields}))  # type: ignore[arg-type]


def test_no_internal_services_without_fleet() -> None:
    assert internal_workloads(DaemonConfig(), **PATHS) == {}


def test_fleet_gives_the_client_api_and_the_heartbeat_as_forever_services() -> None:
    services = internal_workloads(fleet(api_token=TOKEN), **PATHS)
    assert sorted(services) == sorted([CLIENT_API, HEARTBEAT])
    api = services[CLIENT_API]
    assert (api.module, api.entry_point) == ("mastercontrol.api.client_service", "main")
    assert services[HEARTBEAT].module == "mastercontrol.fleet.heartbeat_service"
    for cfg in services.values():
        assert cfg.run_mode is RunMode.FOREVER and is_internal(cfg.name)
        assert set(cfg.params) == {
            "config_dir",
            "socket_path",
            "state_dir",
            "log_dir",
            "section_digest",
        }
        assert all(isinstance(v, str) for v in cfg.params.values())
        assert cfg.params["socket_path"] == "/run/mc/mc.sock"
        assert TOKEN not in json.dumps(dataclasses.asdict(cfg), default=str)


def test_the_digest_follows_the_section_and_only_it() -> None:
    one = internal_workloads(fleet(api_token=TOKEN), **PATHS)[CLIENT_API]
    same = internal_workloads(fleet(api_token=TOKEN), **PATHS)[CLIENT_API]
    other_token = internal_workloads(fleet(api_token="another"), **PATHS)[CLIENT_API]
    other_port = internal_workloads(fleet(api_token=TOKEN, api_port=9200), **PATHS)[CLIENT_API]
    assert one == same  # to the planner: unchanged
    assert one != other_token and one != other_port  # changed: restarted on reload
    central_changed = dataclasses.replace(fleet(api_token=TOKEN), central=DaemonConfig().central)
    assert internal_workloads(central_changed, **PATHS)[CLIENT_API] == one


def test_a_replaced_token_file_changes_the_digest(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("one\n")
    settings = FleetSettings(enabled=True, api_token_file=str(path))
    first = section_digest(settings)
    assert section_digest(settings) == first
    replacement = tmp_path / "token.new"
    replacement.write_text("two-two\n")
    os.replace(replacement, path)
    assert section_digest(settings) != first


def test_the_digest_is_keyed_not_a_plain_hash_of_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The digest sits in a child's argv: without the process's own key it tells nothing."""
    settings = FleetSettings(api_token=TOKEN)
    digest = section_digest(settings)
    assert len(digest) == 64
    monkeypatch.setattr(internal, "_DIGEST_KEY", b"another daemon's key".ljust(32, b"\0"))
    assert section_digest(settings) != digest


def test_a_workload_file_cannot_take_an_internal_name() -> None:
    configs = load_config_files({"api.yaml": 'name: "@client-api"\ntype: service\nmodule: x\n'})
    assert configs.workloads == {}
    assert configs.problems == [
        "api.yaml:1: name: '@client-api': names starting with '@' are reserved for internal "
        "services"
    ]
