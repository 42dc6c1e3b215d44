"""contrib/bootstrap.sh's refusals before any switch, run on a staged release as `fab deploy`
leaves it on a client: a `python` older than 3.11 (exit 3) and a bad release id (exit 2)
leave `current`, the venvs and the dependency layers as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy.test_bootstrap_systemd import RELEASE, bootstrap, staged_release


def test_a_python_older_than_3_11_is_refused_before_anything_is_built(
    tmp_path: Path, wheelhouse_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_dir = tmp_path / "opt" / "mastercontrol"
    staged_release(tmp_path, install_dir, wheelhouse_cache, monkeypatch)
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 1\necho "Python 3.9.2"\n')
    old.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MCTL_SYSTEMD"] = "no"

    done = bootstrap(install_dir, "install", RELEASE, "3", str(old), env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"{old} is not Python 3.11 or later" in done.stderr
    for made in ("current", "venvs", "deps", f"releases/{RELEASE}/.installed"):
        assert not (install_dir / made).exists(), made

    done = bootstrap(install_dir, "install", "../evil", "3", str(old), env=env)
    assert done.returncode == 2 and "invalid release id: ../evil" in done.stderr
    assert not (install_dir / "current").exists()
