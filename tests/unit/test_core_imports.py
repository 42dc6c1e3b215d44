"""The core imports only the stdlib plus yaml, croniter and psutil; bottle, waitress and fabric
stay in their own packages. Checked on the source (ast), so nothing is imported to check it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mastercontrol"
CORE = ["config", "engine", "daemon", "store", "ipc", "errors.py"]
CORE_THIRD_PARTY = {"yaml", "croniter", "psutil"}
CONFINED = {"bottle": "api", "waitress": "api", "fabric": "deploy", "invoke": "deploy"}


def modules(*parts: str) -> list[Path]:
    found: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n != "mastercontrol"}


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def test_the_core_modules_exist() -> None:
    # Guards the walk below against checking nothing after a rename.
    assert PACKAGE.joinpath("config", "load.py").is_file()
    assert len(modules(*CORE)) >= 8


@pytest.mark.parametrize("path", modules(*CORE), ids=rel)
def test_core_module_imports_only_stdlib_yaml_croniter_psutil(path: Path) -> None:
    extra = third_party(top_level_imports(path)) - CORE_THIRD_PARTY
    assert not extra, f"{rel(path)} imports {sorted(extra)}"


@pytest.mark.parametrize("path", modules("."), ids=rel)
def test_web_and_deploy_libraries_stay_in_their_packages(path: Path) -> None:
    package = path.relative_to(PACKAGE).parts[0]
    for name in top_level_imports(path):
        home = CONFINED.get(name)
        assert home is None or package == home, f"{rel(path)} imports {name} (only in {home}/)"


def test_the_walker_sees_imports() -> None:
    # A test must be able to fail: the walker finds a third-party import where there is one.
    source = PACKAGE / "config" / "schema.py"
    assert "croniter" in third_party(top_level_imports(PACKAGE / "config" / "checks.py"))
    assert "mastercontrol" in top_level_imports(source)
    assert third_party({"os", "bottle", "mastercontrol"}) == {"bottle"}
