"""Suite-wide pytest settings and the `daemon` fixture.

With MCTL_REQUIRE_ALL=1 (CI sets it) a test skipped because the machine lacks a component
(sshd, chromium, mandoc, systemd-analyze, supervisord...) fails instead, so a green CI run means
everything really ran.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Daemon

REQUIRE_ALL = os.environ.get("MCTL_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped, but MCTL_REQUIRE_ALL=1 forbids skips: {reason}"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A real mastercontrold under tmp_path; whatever it started is gone afterwards."""
    d = Daemon(tmp_path)
    try:
        yield d
    finally:
        d.cleanup()
