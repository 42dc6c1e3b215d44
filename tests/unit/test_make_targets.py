"""Make targets that are not built yet fail loudly instead of exiting 0 having done nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOT_BUILT = ["setup", "setup-local", "deploy", "deploy-client", "deploy-dry-run", "deploy-sync"]


@pytest.mark.parametrize("target", NOT_BUILT)
def test_an_unbuilt_fleet_target_fails_and_says_so(target: str) -> None:
    res = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode != 0
    assert f"make {target}: not built yet" in res.stderr
