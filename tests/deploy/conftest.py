"""Fixtures of the deploy tests: per-run SSH keys, the wheelhouse built once per session, and a
fleet of clients behind real sshds (tests/deploy/fleet.py). Without sshd, ssh-keygen or rsync
the tests skip, which MCTL_REQUIRE_ALL=1 (CI) turns into failures."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mastercontrol.deploy import build
from tests.deploy.fleet import SSHD, Fleet, keygen
from tests.integration.harness import REPO


def _missing() -> list[str]:
    found = [] if os.access(SSHD, os.X_OK) else ["sshd (openssh-server)"]
    found += [t for t in ("ssh", "ssh-keygen", "rsync") if shutil.which(t) is None]
    if os.geteuid() != 0:
        found.append("root (sshd logins as root on loopback)")
    return found


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    missing = _missing()
    if missing:
        pytest.skip(f"deploy tests need: {', '.join(missing)} (.ci/packages)")
    d = tmp_path_factory.mktemp("keys")
    return {
        "user": keygen(d / "user_ed25519"),
        "host": keygen(d / "host_ed25519"),
        "other_host": keygen(d / "other_host_ed25519"),
    }


@pytest.fixture(scope="session")
def wheelhouse_cache(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]) -> Path:
    """Built once per session (pip wheel is the slow part); every deploy of the session reuses
    it through MCTL_WHEELHOUSE_CACHE."""
    cache = tmp_path_factory.mktemp("wheelhouse")
    os.environ[build.WHEELHOUSE_CACHE_ENV] = str(cache)
    try:
        build.wheelhouse(REPO, cache)
    finally:
        del os.environ[build.WHEELHOUSE_CACHE_ENV]
    return cache


@pytest.fixture
def fleet(tmp_path: Path, keys: dict[str, Path], wheelhouse_cache: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path, keys, wheelhouse_cache)
    try:
        yield f
    finally:
        f.stop()
