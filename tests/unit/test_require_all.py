"""CI's MCTL_REQUIRE_ALL=1 turns a skip (a component missing on the machine) into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_skipping_test(require_all: bool) -> subprocess.CompletedProcess[str]:
    # Written under tests/ so that the suite's conftest.py applies to it, like to any test.
    path = REPO / "tests" / "unit" / f"test_tmp_skip_{uuid.uuid4().hex}.py"
    path.write_text(
        "import pytest\n\n\ndef test_needs_chromium():\n    pytest.skip('no chromium')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MCTL_REQUIRE_ALL"}
    if require_all:
        env["MCTL_REQUIRE_ALL"] = "1"
    try:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        path.unlink()


def test_a_skip_fails_when_every_component_is_required() -> None:
    result = run_skipping_test(require_all=True)
    assert result.returncode == 1, result.stdout
    assert "MCTL_REQUIRE_ALL=1 forbids skips: Skipped: no chromium" in result.stdout


def test_a_skip_is_a_skip_on_a_developer_machine() -> None:
    result = run_skipping_test(require_all=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
