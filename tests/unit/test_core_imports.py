"""The layering of mastercontrol's packages, checked on the source (ast): nothing is imported.

Three rules, each a table:
- THIRD_PARTY: the core packages import the standard library and only the third-party packages
  STYLE.md allows where they are used (pyyaml where YAML is read, croniter where schedules are
  computed, psutil where metrics are sampled).
- CONFINED: Bottle and Waitress appear only in api/, Fabric only in deploy/.
- FORBIDDEN: arrows between packages that must not exist. An arrow is followed through the
  modules in between (child -> engine -> store is child importing store), and every import
  counts: local, function-level and `if TYPE_CHECKING:` ones alike.

The walk covers whatever is on disk, so packages that do not exist yet (ipc/, api/, fleet/,
deploy/) fall under the tables as soon as their first file appears. Every rule is shown to fail
on a small tree written to tmp_path that breaks it.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the directory that holds mastercontrol/
TOP = "mastercontrol"

# The core: stdlib-first packages (top-level modules such as errors.py count as packages).
CORE = (
    "config", "engine", "store", "daemon", "child", "ipc", "ctl", "errors", "logfile", "release",
)  # fmt: skip
THIRD_PARTY: dict[str, frozenset[str]] = {
    "config": frozenset({"yaml", "croniter"}),  # reads YAML, computes cron schedules
    "daemon": frozenset({"psutil"}),  # samples metrics
}
CONFINED = {
    "bottle": "api",
    "waitress": "api",
    "fabric": "deploy",
    "invoke": "deploy",
    "paramiko": "deploy",
}

ANY = "*"  # as an importer: every package but the imported one
# (importer, imported, why). `imported` is one of our packages or an outside module.
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("daemon", "api", "the master names internal services by module string"),
    ("daemon", "fleet", "the master names internal services by module string"),
    ("daemon", "deploy", "deploys run on the control host, never in the master"),
    ("deploy", "daemon", "the deployer reaches clients over SSH and HTTP, never the master"),
    ("deploy", "api", "the deployer speaks HTTP to the APIs; it does not import them"),
    ("deploy", "child", "the deployer runs on the control host, not in a workload"),
    ("deploy", "ctl", "bootstrap.sh runs the client's mastercontrol-ctl; nothing imports it"),
    ("api", "daemon", "network services reach the master only through IPC"),
    ("api", "child", "network services reach the master only through IPC"),
    ("fleet", "daemon", "fleet logic reaches the master only through IPC"),
    ("fleet", "child", "fleet logic reaches the master only through IPC"),
    ("ctl", "daemon", "ctl talks IPC; `logs` reads files via logfile, `run` uses child"),
    (ANY, "ctl", "ctl is the program at the top, not a library"),
    ("config", "engine", "config is below the engine: the engine reads config's models"),
    ("child", "store", "the child never touches the master's database"),
    ("child", "daemon", "code after the fork does not depend on the master's shell"),
    ("child", "sqlite3", "the child never touches the master's database"),
    ("child", "psutil", "the child does not pay for psutil"),
    ("child", "bottle", "web code is api's and runs in its own child"),
    ("child", "waitress", "web code is api's and runs in its own child"),
)

ARROW_IDS = [f"{importer}-not-{imported}" for importer, imported, _ in FORBIDDEN]


# --- the walker --------------------------------------------------------------------------------


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module under root/mastercontrol."""
    found: dict[str, Path] = {}
    for path in sorted((root / TOP).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def package_of(module: str) -> str:
    """'mastercontrol.child.spawn' -> 'child', 'mastercontrol' -> '', 'os.path' -> 'os'."""
    parts = module.split(".")
    if parts[0] != TOP:
        return parts[0]
    return parts[1] if len(parts) > 1 else ""


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """Every module `module` imports: ours by full dotted name (with the packages whose
    __init__ that loads), others by top-level name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            # `from pkg import mod` imports pkg.mod when that is a module of ours.
            names.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    result: set[str] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != TOP:
            result.add(parts[0])
            continue
        # Importing a.b.c runs a/__init__ and a/b/__init__ first.
        result.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    result.discard(module)
    return {n for n in result if not n.startswith(TOP) or n in known}


def import_graph(root: Path) -> dict[str, set[str]]:
    files = module_files(root)
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n.split(".")[0] != TOP}


def path_to(graph: dict[str, set[str]], start: str, target: str) -> list[str] | None:
    """The shortest import chain from module `start` into package (or outside module) `target`,
    through our own modules only; None if there is none."""
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt in parent:
                continue
            parent[nxt] = node
            if package_of(nxt) == target:
                chain = [nxt]
                while (back := parent[chain[-1]]) is not None:
                    chain.append(back)
                return chain[::-1]
            if nxt.startswith(TOP):
                queue.append(nxt)
    return None


def arrow_violations(root: Path, importer: str, imported: str) -> list[str]:
    graph = import_graph(root)
    found: list[str] = []
    for module in sorted(graph):
        package = package_of(module)
        if package == imported or (importer != ANY and package != importer):
            continue
        if importer == ANY and not package:
            continue  # mastercontrol/__init__.py: the version, nothing else
        chain = path_to(graph, module, imported)
        if chain is not None:
            found.append(" -> ".join(chain))
    return found


def third_party_violations(root: Path) -> list[str]:
    found: list[str] = []
    for module, names in sorted(import_graph(root).items()):
        package = package_of(module)
        if package in CORE:
            extra = third_party(names) - THIRD_PARTY.get(package, frozenset())
            if extra:
                found.append(f"{module} imports {sorted(extra)}")
        for name in names:
            home = CONFINED.get(name)
            if home is not None and package != home:
                found.append(f"{module} imports {name} (only in {home}/)")
    return found


# --- the real tree -----------------------------------------------------------------------------


def test_the_walk_sees_the_core() -> None:
    # Guards every check below against passing by checking nothing after a rename.
    graph = import_graph(ROOT)
    for package in ("config", "engine", "store", "daemon", "child", "ctl"):
        assert any(package_of(m) == package for m in graph), package
    assert "mastercontrol.child.limits" in graph["mastercontrol.child.spawn"]
    assert "croniter" in graph["mastercontrol.config.cron"]
    assert "mastercontrol.logfile" in graph["mastercontrol.ctl.main"]  # a local import


def test_core_packages_import_only_the_allowed_third_party_packages() -> None:
    assert third_party_violations(ROOT) == []


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN, ids=ARROW_IDS)
def test_no_forbidden_arrow(importer: str, imported: str, why: str) -> None:
    assert arrow_violations(ROOT, importer, imported) == [], why


# --- each rule can fail ------------------------------------------------------------------------


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"mastercontrol/__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            if parent.parts:
                (root / parent / "__init__.py").touch()
        path.write_text(text, encoding="utf-8")
    return root


def target_source(imported: str) -> tuple[str, dict[str, str]]:
    """An import statement that reaches `imported`, and the files it needs."""
    if imported in {"ctl", "daemon", "api", "fleet", "deploy", "store", "engine", "child"}:
        return f"from mastercontrol.{imported} import target\n", {
            f"mastercontrol/{imported}/target.py": ""
        }
    return f"import {imported}\n", {}


@pytest.mark.parametrize(("importer", "imported", "why"), FORBIDDEN, ids=ARROW_IDS)
def test_each_forbidden_arrow_is_caught_even_through_a_module_between(
    tmp_path: Path, importer: str, imported: str, why: str
) -> None:
    source = "config" if importer == ANY and imported != "config" else importer
    statement, extra = target_source(imported)
    # source/a.py -> errors.py (allowed everywhere) -> the forbidden target.
    files = {
        f"mastercontrol/{source}/a.py": "import typing\nfrom mastercontrol import errors\n",
        "mastercontrol/errors.py": statement,
        **extra,
    }
    root = write_tree(tmp_path, files)
    found = arrow_violations(root, importer, imported)
    assert found and found[0].startswith(f"mastercontrol.{source}.a -> mastercontrol.errors")
    # And the same tree without the arrow is clean: the rule is not a blanket refusal.
    (root / "mastercontrol" / "errors.py").write_text("import os\n", encoding="utf-8")
    assert arrow_violations(root, importer, imported) == []


def test_relative_and_function_level_imports_are_arrows(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "mastercontrol/child/a.py": "def f():\n    from ..store import db\n",
            "mastercontrol/store/db.py": "",
            "mastercontrol/ctl/b.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from mastercontrol.daemon import loop\n",
            "mastercontrol/daemon/loop.py": "",
        },
    )
    assert arrow_violations(root, "child", "store") == [
        "mastercontrol.child.a -> mastercontrol.store"
    ]
    assert arrow_violations(root, "ctl", "daemon") == [
        "mastercontrol.ctl.b -> mastercontrol.daemon"
    ]


def test_a_third_party_import_outside_its_place_is_caught(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "mastercontrol/config/a.py": "import yaml\nimport croniter\n",  # allowed
            "mastercontrol/ctl/b.py": "import psutil\n",  # psutil is the daemon's
            "mastercontrol/ipc/c.py": "import requests\n",  # not a dependency at all
            "mastercontrol/fleet/d.py": "import bottle\n",  # bottle is api's
            "mastercontrol/api/e.py": "import bottle\nimport waitress\n",  # allowed
        },
    )
    assert third_party_violations(root) == [
        "mastercontrol.ctl.b imports ['psutil']",
        "mastercontrol.fleet.d imports bottle (only in api/)",
        "mastercontrol.ipc.c imports ['requests']",
    ]
