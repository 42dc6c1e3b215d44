"""The fleet make targets are thin wrappers over the Fabric tasks: each reaches its own `fab`
task with the inventory and FAB_ARGS passed on, and fails with a clear message (never a
traceback) when something is missing."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCTL_")}
    env["MCTL_CONFIG_DIR"] = str(tmp_path / "no-config")  # no inventory.yaml there
    return env


def test_deploy_client_without_client_says_how_to_call_it(tmp_path: Path) -> None:
    res = make("deploy-client", env=_env(tmp_path))
    assert res.returncode == 2
    assert "give the client, e.g. make deploy-client CLIENT=" in res.stderr


def test_a_fleet_target_without_an_inventory_fails_with_a_message(tmp_path: Path) -> None:
    res = make("setup", env=_env(tmp_path))
    assert res.returncode != 0
    assert "fab setup: no inventory: give --inventory=PATH" in res.stderr
    assert "Traceback" not in res.stderr


def test_deploy_dry_run_prints_the_plan_of_the_inventory_given(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing may connect anyway
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        f"deploy: {{state_dir: {tmp_path}/state}}\nclients:\n"
        f"  - {{name: pi-a, host: 127.0.0.1, ssh_port: {port}, install_dir: /srv/mc}}\n"
    )
    res = make("deploy-dry-run", f"INVENTORY={inventory}", env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "wave 1: pi-a" in res.stdout and "bootstrap.sh install /srv/mc" in res.stdout
    assert not (tmp_path / "state").exists()  # built nothing


@pytest.mark.parametrize(
    ("target", "task"),
    [
        (["setup"], "setup"),
        (["setup-local"], "setup-local"),
        (["deploy"], "deploy"),
        (["deploy-client", "CLIENT=pi-a"], "deploy --client=pi-a"),
        (["deploy-dry-run"], "deploy --dry-run"),
        (["deploy-sync"], "sync"),
    ],
)
def test_each_fleet_target_runs_its_fab_task_with_the_inventory_and_fab_args(
    tmp_path: Path, target: list[str], task: str
) -> None:
    inventory = tmp_path / "inventory.yaml"
    res = make("-n", *target, f"INVENTORY={inventory}", "FAB_ARGS=--batch=3", env=_env(tmp_path))
    assert res.returncode == 0, res.stderr
    fab = [line for line in res.stdout.splitlines() if "/fab " in line]
    assert fab == [f".venv/bin/fab -r {ROOT} {task} --inventory={inventory} --batch=3"], res.stdout
