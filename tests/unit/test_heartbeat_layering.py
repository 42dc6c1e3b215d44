"""fleet/ (heartbeats, system metrics, the fleet DB) imports only the stdlib, psutil and the
package parts it may use: never daemon/, child/, api/, bottle or waitress. Checked on the
source with ast."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

FLEET = Path(__file__).resolve().parents[2] / "mastercontrol" / "fleet"
ALLOWED_THIRD_PARTY = {"psutil", "yaml"}  # yaml only through config.load
# store: the central's fleet DB (fleet/fleetstore.py) writes through store/db.py's one door.
ALLOWED_OWN = {
    "mastercontrol",
    "mastercontrol.fleet",
    "mastercontrol.config",
    "mastercontrol.ipc",
    "mastercontrol.store",
}
ALLOWED_OWN_MODULES = {"mastercontrol.errors", "mastercontrol.release"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def forbidden(names: set[str]) -> set[str]:
    bad: set[str] = set()
    for name in names:
        top = name.split(".")[0]
        if top == "mastercontrol":
            package = ".".join(name.split(".")[:2])
            if package not in ALLOWED_OWN and name not in ALLOWED_OWN_MODULES:
                bad.add(name)
        elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
            bad.add(name)
    return bad


def test_the_fleet_package_has_modules_to_check() -> None:
    assert len(list(FLEET.glob("*.py"))) >= 3


@pytest.mark.parametrize("path", sorted(FLEET.glob("*.py")), ids=lambda p: p.name)
def test_fleet_module_stays_out_of_the_daemon_and_the_web_stack(path: Path) -> None:
    assert not forbidden(imports(path)), f"{path.name} imports {sorted(forbidden(imports(path)))}"


def test_the_check_can_fail() -> None:
    assert forbidden({"mastercontrol.daemon.views", "bottle", "waitress.server"}) == {
        "mastercontrol.daemon.views",
        "bottle",
        "waitress.server",
    }
    assert not forbidden({"os", "psutil", "mastercontrol.ipc.client", "mastercontrol.errors"})
