"""daemon.yaml and inventory.yaml: defaults, sections, cross-field rules, located problems."""

from __future__ import annotations

from pathlib import Path

from mastercontrol.config.load import load_daemon_config, load_inventory
from mastercontrol.config.model import DaemonConfig, Inventory

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_example_daemon_yaml_shows_the_daemon_defaults() -> None:
    # Its fleet: and central: sections are set up for `make run` (tests/unit/test_example_fleet.py).
    config, problems = load_daemon_config(REPO / "examples" / "configs" / "daemon.yaml")
    assert problems == []
    assert config.daemon == DaemonConfig().daemon


def test_daemon_yaml_sections_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "daemon.yaml",
        "daemon:\n  log_level: DEBUG\n  socket_group: staff\n"
        "fleet:\n  enabled: true\n  client_name: pi-1\n  api_host: 0.0.0.0\n  api_port: 9200\n"
        "  central_api_url: http://control:8080/\n  api_token: s3cret\n"
        "central:\n  enabled: true\n  port: 8081\n  db_path: /var/lib/mc/fleet.db\n",
    )
    config, problems = load_daemon_config(path)
    assert problems == []
    assert config.source == str(path)
    assert (config.daemon.log_level, config.daemon.socket_group) == ("debug", "staff")
    assert config.fleet.enabled and config.fleet.client_name == "pi-1"
    assert config.fleet.api_port == 9200
    assert config.fleet.central_api_url == "http://control:8080"
    assert config.central.port == 8081 and config.central.db_path == "/var/lib/mc/fleet.db"


def test_empty_daemon_yaml_means_defaults(tmp_path: Path) -> None:
    config, problems = load_daemon_config(write(tmp_path, "daemon.yaml", "# nothing yet\n"))
    assert problems == []
    assert config.fleet == DaemonConfig().fleet


def test_daemon_yaml_problems_are_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "daemon.yaml",
        "fleet:\n  enabled: true\n  api_host: 0.0.0.0\n  api_prot: 9100\n"
        "central:\n  port: 0\n  stale_after_seconds: 400\nlogging: {}\n",
    )
    config, problems = load_daemon_config(path)
    assert problems == [
        f"{path}:2: fleet.central_api_url: missing required field when fleet.enabled is true",
        f"{path}:3: fleet.api_token: required when fleet.api_host (0.0.0.0) is not a "
        "loopback address (or give api_token_file)",
        f"{path}:4: fleet.api_prot: unknown field; did you mean 'api_port'?",
        f"{path}:6: central.port: must be a port between 1 and 65535, got 0",
        f"{path}:7: central.offline_after_seconds: must be greater than stale_after_seconds (400)",
        f"{path}:8: logging: unknown field",
    ]
    assert config.fleet == DaemonConfig().fleet  # a bad file gives the defaults, never half


def test_daemon_yaml_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "daemon.yaml", "fleet: true\n")
    _, problems = load_daemon_config(path)
    assert problems == [f"{path}:1: fleet: expected a mapping, got the boolean true"]


def test_missing_daemon_yaml_is_reported(tmp_path: Path) -> None:
    config, problems = load_daemon_config(tmp_path / "daemon.yaml")
    assert problems == [f"{tmp_path}/daemon.yaml: cannot read: No such file or directory"]
    assert config.daemon == DaemonConfig().daemon


def test_example_inventory_applies_defaults() -> None:
    inventory, problems = load_inventory(REPO / "examples" / "configs" / "inventory.yaml")
    assert problems == []
    kitchen, garage = inventory.clients[:2]  # then the local fleet of `make run`
    assert (kitchen.name, kitchen.host, kitchen.ssh_user) == ("pi-kitchen", "192.168.1.20", "pi")
    assert kitchen.env == {"TZ": "UTC"}
    assert garage.ssh_user == "admin"  # the client's own value wins over defaults
    assert garage.env == {"TZ": "UTC", "LOG_LEVEL": "debug"}  # env is merged
    assert garage.workloads == ("ticker", "counter")
    assert garage.install_dir == "/opt/mastercontrol"


def test_inventory_problems_are_located_and_bad_clients_left_out(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inventory.yaml",
        "defaults:\n  ssh_port: 22\n  ssh_usr: pi\n"
        "clients:\n"
        "  - name: a\n    host: 10.0.0.1\n"
        "  - name: b\n"
        "  - name: a\n    host: 10.0.0.2\n"
        "  - name: c\n    host: 10.0.0.3\n    ssh_port: 99999\n"
        "  - name: d\n    host: 10.0.0.4\n",
    )
    inventory, problems = load_inventory(path)
    assert problems == [
        f"{path}:3: defaults.ssh_usr: unknown field; did you mean 'ssh_user'?",
        f"{path}:7: clients[1].host: missing required field",
        f"{path}:8: clients[2].name: duplicate client name 'a' (also at line 5)",
        f"{path}:12: clients[3].ssh_port: must be a port between 1 and 65535, got 99999",
    ]
    assert [c.name for c in inventory.clients] == ["a", "d"]


def test_inventory_clients_must_be_a_list_of_mappings(tmp_path: Path) -> None:
    path = write(tmp_path, "inventory.yaml", "clients:\n  - pi-1\n")
    inventory, problems = load_inventory(path)
    assert problems == [f"{path}:2: clients: item 1: expected a mapping, got 'pi-1'"]
    assert inventory == Inventory(source=str(path))


def test_empty_inventory_has_no_clients(tmp_path: Path) -> None:
    inventory, problems = load_inventory(write(tmp_path, "inventory.yaml", ""))
    assert problems == [] and inventory.clients == ()
