"""What the deployer reads and stages, on real files: where the inventory is found, that every
task takes `--inventory`, that rsync uses the deployer's own SSH settings (the same
known_hosts, key and port, strict host-key checking), and what a release carries for each client
(`workloads:` choosing the workload files, its own files winning, `env:` quoted, the
dependency hash). The end-to-end paths are in tests/deploy."""

from __future__ import annotations

import inspect
import shlex
import subprocess
from pathlib import Path

import pytest

from mastercontrol.config.model import InventoryClient
from mastercontrol.deploy import build, tasks
from mastercontrol.deploy.ssh import SshSettings, rsync_argv
from mastercontrol.errors import DeployError


def test_the_inventory_is_the_flag_then_the_env_then_cwd_then_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, conf = tmp_path / "cwd", tmp_path / "conf"
    for d in (cwd, conf):
        d.mkdir()
        (d / "inventory.yaml").write_text("clients: []\n")
    monkeypatch.setenv("MCTL_CONFIG_DIR", str(conf))
    monkeypatch.setenv("MCTL_INVENTORY", str(tmp_path / "env.yaml"))
    assert tasks.find_inventory("flag.yaml", cwd) == Path("flag.yaml")
    assert tasks.find_inventory(None, cwd) == tmp_path / "env.yaml"
    monkeypatch.delenv("MCTL_INVENTORY")
    assert tasks.find_inventory(None, cwd) == cwd / "inventory.yaml"
    (cwd / "inventory.yaml").unlink()
    assert tasks.find_inventory(None, cwd) == conf / "inventory.yaml"
    (conf / "inventory.yaml").unlink()
    with pytest.raises(DeployError, match="no inventory: give --inventory=PATH"):
        tasks.find_inventory(None, cwd)


def test_every_task_takes_an_inventory() -> None:
    ns = tasks.namespace(Path("/nowhere"))
    names = sorted(ns.task_names)
    assert names == ["deploy", "releases", "rollback", "setup", "setup-local", "status", "sync"]
    for name in names:
        body = ns[name].body
        assert "inventory" in inspect.signature(body).parameters, name


def test_rsync_goes_over_the_same_ssh_settings_with_strict_host_keys(tmp_path: Path) -> None:
    known = tmp_path / "known hosts"
    client = InventoryClient(name="pi-1", host="10.0.0.7", ssh_user="deploy", ssh_port=2222,
                             ssh_key="/keys/id ed25519", install_dir="/opt/mc")  # fmt: skip
    argv = rsync_argv(tmp_path / "staged", client, "/opt/mc/releases/r1", SshSettings(known, 4))
    assert argv[-1] == "deploy@10.0.0.7:/opt/mc/releases/r1/"
    ssh = shlex.split(argv[argv.index("-e") + 1])
    pairs = {ssh[i + 1] for i, a in enumerate(ssh) if a == "-o"}
    assert {"BatchMode=yes", "StrictHostKeyChecking=yes", f"UserKnownHostsFile={known}",
            "GlobalKnownHostsFile=/dev/null", "IdentitiesOnly=yes"} <= pairs  # fmt: skip
    assert ssh[ssh.index("-p") + 1] == "2222" and ssh[ssh.index("-i") + 1] == "/keys/id ed25519"
    assert ssh[:3] == ["ssh", "-F", "/dev/null"]  # no ~/.ssh/config can change them


def test_a_release_carries_the_clients_workloads_own_files_and_quoted_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configs = tmp_path / "configs"
    (configs / "pi-1").mkdir(parents=True)
    for name in ("web", "cam", "log"):
        (configs / f"{name}.yaml").write_text(f"name: {name}\ntype: service\ncommand: [x]\n")
    (configs / "daemon.yaml").write_text("fleet: {enabled: false}\n")
    (configs / "pi-1" / "web.yaml").write_text("name: web\ntype: service\ncommand: [own]\n")
    (configs / "pi-1" / "daemon.yaml").write_text("fleet: {enabled: true}\n")
    env = {"GREETING": "it's $HOME; `no`", "PLAIN": "1"}
    one = InventoryClient(name="pi-1", host="h", workloads=("web", "log"), env=env)
    two = InventoryClient(name="pi-2", host="h")
    cache = tmp_path / "cache"
    (cache / "0123456789abcdef").mkdir(parents=True)
    fake = cache / "0123456789abcdef"  # a wheelhouse as build.wheelhouse leaves it
    for wheel in ("mastercontrol-1.0-py3-none-any.whl", "pyyaml-6.0-py3-none-any.whl",
                  "pip-26.0-py3-none-any.whl"):  # fmt: skip
        (fake / wheel).write_bytes(wheel.encode())
    (fake / ".complete").touch()
    monkeypatch.setattr(build, "source_hash", lambda root: "0123456789abcdef")
    monkeypatch.setenv(build.WHEELHOUSE_CACHE_ENV, str(cache))
    root = Path(__file__).resolve().parents[2]
    top = build.stage(root, tmp_path / "state", "r1", [one, two], configs, None)

    def config_of(name: str) -> dict[str, str]:
        return {p.name: p.read_text() for p in (top / name / "config").iterdir()}

    got = config_of("pi-1")
    assert sorted(got) == ["daemon.yaml", "log.yaml", "web.yaml"]  # cam: not its workload
    assert "[own]" in got["web.yaml"] and "true" in got["daemon.yaml"]  # its own files win
    assert sorted(config_of("pi-2")) == ["cam.yaml", "daemon.yaml", "log.yaml", "web.yaml"]
    printed = subprocess.run(
        ["sh", "-c", 'set -a; . "$1"; printf "%s|%s|%s|%s" "$GREETING" "$PLAIN" "$MCTL_RELEASE" '
         '"$MCTL_CODE"', "sh", str(top / "pi-1" / "env")],
        capture_output=True, text=True, timeout=30, check=True, env={},
    ).stdout  # fmt: skip
    code = (top / "pi-1" / "CODE").read_text().strip()
    assert printed == f"it's $HOME; `no`|1|r1|{code}"  # read back by sh verbatim: nothing expanded
    # The code it runs: the same for the same wheels, app/ and env, whatever the workload files.
    assert code == build.code_id(fake, top / "pi-1" / "app", env)
    assert (top / "pi-2" / "CODE").read_text().strip() == build.code_id(
        fake, top / "pi-2" / "app", {}
    )
    assert code != build.code_id(fake, top / "pi-2" / "app", {})  # another env: other behaviour
    (configs / "web.yaml").write_text("name: web\ntype: service\ncommand: [changed]\n")
    again = build.stage(root, tmp_path / "state", "r2", [one], configs, None)
    assert (again / "pi-1" / "CODE").read_text().strip() == code  # only workload files changed
    app = tmp_path / "app"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "job.py").write_text("def run(): pass\n")
    with_app = build.stage(root, tmp_path / "state", "r3", [one], configs, app)
    with_code = (with_app / "pi-1" / "CODE").read_text().strip()
    assert with_code != code
    (app / "pkg" / "job.py").write_text("def run(): return 1\n")
    newer = build.stage(root, tmp_path / "state", "r4", [one], configs, app)
    assert (newer / "pi-1" / "CODE").read_text().strip() != with_code  # the workload code moved
    assert (top / "pi-1" / "WHEELHOUSE").read_text() == "0123456789abcdef\n"
    deps = (top / "pi-1" / "DEPS").read_text().strip()
    assert deps == build.deps_hash(fake) and deps == (top / "pi-2" / "DEPS").read_text().strip()
    (fake / "mastercontrol-1.0-py3-none-any.whl").write_bytes(b"new code")
    assert build.deps_hash(fake) == deps  # the project's own wheel is not a dependency
    (fake / "pyyaml-6.0-py3-none-any.whl").write_bytes(b"new dependency")
    assert build.deps_hash(fake) != deps
