"""The fault-injection suite runs a real mastercontrold (the `daemon` fixture of
tests/conftest.py); every test under tests/faults is marked `faults` (declared in
pyproject.toml)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
