"""The example fleet of `make run` and README.md: examples/configs is a control host that is
also a device, examples/fleet/pi-01 and pi-02 are two more devices on 127.0.0.1; every token
file they name is one that `make run` makes, and the inventory gives each local device its
own token. (Run by hand for real: see the README's "A local fleet".)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mastercontrol.config.load import load_config_dir, load_daemon_config, load_inventory
from mastercontrol.config.secrets import inventory_token_warnings

REPO = Path(__file__).resolve().parents[2]
VAR = str(REPO / "var")  # relative token paths are taken from the naming file's directory


def made_by_make_run() -> set[str]:
    text = (REPO / "Makefile").read_text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("TOKENS")]
    return {f"{VAR}/{Path(t).name}" for t in re.findall(r"\$\(VAR\)/(\S+\.token)", line)}


def test_make_run_is_a_control_host_on_loopback_that_reports_on_itself() -> None:
    cfg, problems = load_daemon_config(REPO / "examples" / "configs" / "daemon.yaml")
    assert problems == []
    assert cfg.fleet.enabled and cfg.central.enabled
    assert (cfg.central.host, cfg.central.port) == ("127.0.0.1", 8080)
    assert cfg.fleet.central_api_url == "http://127.0.0.1:8080"
    tokens = made_by_make_run()
    assert {cfg.central.api_token_file, cfg.fleet.api_token_file} <= tokens
    make = (REPO / "Makefile").read_text()
    assert 'echo "Dashboard: http://127.0.0.1:8080/ — token: $$(cat $(VAR)/central.token)"' in make


@pytest.mark.parametrize("name", ["pi-01", "pi-02"])
def test_the_local_fleets_devices_load_and_have_their_own_inventory_token(name: str) -> None:
    conf = REPO / "examples" / "fleet" / name
    loaded = load_config_dir(conf)
    assert loaded.problems == [] and loaded.workloads
    fleet = loaded.daemon.fleet
    assert fleet.enabled and fleet.client_name == name and fleet.api_host == "127.0.0.1"
    assert fleet.central_api_url == "http://127.0.0.1:8080"
    assert fleet.api_token_file in made_by_make_run()
    inventory, problems = load_inventory(REPO / "examples" / "configs" / "inventory.yaml")
    assert problems == []
    entry = {c.name: c for c in inventory.clients}[name]
    assert (entry.host, entry.api_token_file) == ("127.0.0.1", fleet.api_token_file)


def test_every_device_has_its_own_api_port() -> None:
    ports = [load_daemon_config(REPO / "examples" / "configs" / "daemon.yaml")[0].fleet.api_port]
    for name in ("pi-01", "pi-02"):
        ports.append(
            load_daemon_config(REPO / "examples/fleet" / name / "daemon.yaml")[0].fleet.api_port
        )
    assert len(set(ports)) == 3


def test_the_example_inventory_shows_the_shared_token_warning() -> None:
    cfg, _ = load_daemon_config(REPO / "examples" / "configs" / "daemon.yaml")
    inventory, _ = load_inventory(REPO / "examples" / "configs" / "inventory.yaml")
    warnings = [w for w in inventory_token_warnings(cfg, inventory) if "of their own" in w]
    (warning,) = warnings
    assert "(pi-kitchen, pi-garage)" in warning
