"""contrib/bootstrap.sh's systemd branch, without systemd: the release is installed by the real
script, which must install the unit the product ships (`mastercontrol-ctl systemd-unit
--install`, with its hardening drop-in) plus its deploy.conf drop-in, and drive systemctl; a
`systemctl` on PATH records what it was asked, and `systemd-analyze verify` checks the files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mastercontrol.config.model import InventoryClient
from mastercontrol.deploy import build
from mastercontrol.deploy.layout import BOOTSTRAP
from tests.integration.harness import REPO
from tests.unit.test_systemd_unit import run_verify, settings

RELEASE = "20261201T120000Z-systemd"
FAKE_SYSTEMCTL = '#!/bin/sh\nprintf "%s\\n" "$*" >>"$SYSTEMCTL_LOG"\n'


def staged_release(
    tmp_path: Path, install_dir: Path, wheelhouse_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `fab deploy` copies to the client, built by build.stage and put where rsync puts it."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "svc.yaml").write_text("name: svc\ntype: service\ncommand: [sleep, '60']\n")
    client = InventoryClient(name="pi-1", host="127.0.0.1", install_dir=str(install_dir))
    monkeypatch.setenv(build.WHEELHOUSE_CACHE_ENV, str(wheelhouse_cache))
    top = build.stage(REPO, tmp_path / "state", RELEASE, [client], configs, None)
    shutil.copytree(top / "pi-1", install_dir / "releases" / RELEASE, symlinks=True)


def bootstrap(
    install_dir: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    script = install_dir / "releases" / RELEASE / BOOTSTRAP
    return subprocess.run(
        ["sh", str(script), args[0], str(install_dir), *args[1:]],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip


def test_under_systemd_the_bootstrap_installs_the_shipped_unit_pointed_at_current(
    tmp_path: Path, wheelhouse_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_dir = tmp_path / "opt" / "mastercontrol"
    staged_release(tmp_path, install_dir, wheelhouse_cache, monkeypatch)
    units = tmp_path / "units"
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text(FAKE_SYSTEMCTL)
    (fake_bin / "systemctl").chmod(0o755)
    calls = tmp_path / "systemctl.log"
    # As over SSH: the client's own environment, not the test runner's PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{fake_bin}:{os.environ['PATH']}", SYSTEMCTL_LOG=str(calls),
               MCTL_SYSTEMD="yes", MCTL_UNIT_DIR=str(units))  # fmt: skip

    done = bootstrap(install_dir, "install", RELEASE, "3", sys.executable, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls.read_text().splitlines() == [
        "daemon-reload", "enable -q mastercontrold.service", "restart mastercontrold.service",
    ]  # fmt: skip
    unit = units / "mastercontrold.service"
    shipped = settings(REPO / "contrib" / "systemd" / "mastercontrold.service")
    written = settings(unit)
    for key in ("Delegate", "WatchdogSec", "Type", "KillMode", "RestartPreventExitStatus"):
        assert written[key] == shipped[key], key  # the product's unit, not a copy of its own
    assert (units / "mastercontrold.service.d" / "hardening.conf").is_file()
    drop_in = settings(units / "mastercontrold.service.d" / "deploy.conf")
    current = install_dir / "current"
    assert drop_in["ExecStart"] == ["", f"{current}/venv/bin/mastercontrold"]
    assert f"MCTL_DB_PATH={install_dir}/state/state.db" in drop_in["Environment"]
    assert drop_in["EnvironmentFile"] == [f"-{current}/env"]
    result = run_verify(unit)  # with both drop-ins, against the installed release's programs
    assert (result.returncode, result.stderr) == (0, ""), result.stderr

    done = bootstrap(install_dir, "stop", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert calls.read_text().splitlines()[-1] == "stop mastercontrold.service"


def test_an_unknown_systemd_choice_is_a_usage_error(tmp_path: Path) -> None:
    script = REPO / "contrib" / BOOTSTRAP
    done = subprocess.run(
        ["sh", str(script), "stop", str(tmp_path / "x")], capture_output=True, text=True,
        timeout=60, env={**os.environ, "MCTL_SYSTEMD": "maybe"}, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "MCTL_SYSTEMD must be auto, yes or no" in done.stderr
