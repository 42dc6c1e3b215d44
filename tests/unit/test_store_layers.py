"""The store's own layering: db.py at the bottom, migrations and queries above it, open.py on top,
and no function-level import anywhere in the package to hide a circle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mastercontrol.store

STORE = Path(mastercontrol.store.__file__).parent

# module -> the store modules it may import
ALLOWED = {
    "db": set(),
    "migrations": {"db"},
    "prune": {"db"},
    "queries": {"db", "prune"},
    "open": {"db", "migrations", "queries"},
    "identity": {"queries"},
}


def _store_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("mastercontrol.store."):
                found.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mastercontrol.store."):
                    found.add(alias.name.rsplit(".", 1)[1])
    return found


def _nested_imports(tree: ast.Module) -> list[int]:
    top = set(map(id, tree.body))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top
    ]


def _tree(name: str) -> ast.Module:
    return ast.parse((STORE / f"{name}.py").read_text())


def test_every_store_module_has_a_place_in_the_table() -> None:
    modules = {p.stem for p in STORE.glob("*.py")} - {"__init__"}
    assert modules == set(ALLOWED)


def test_store_modules_import_only_downwards() -> None:
    wrong = {
        name: sorted(_store_imports(_tree(name)) - allowed)
        for name, allowed in ALLOWED.items()
        if _store_imports(_tree(name)) - allowed
    }
    assert wrong == {}


def test_no_store_module_imports_inside_a_function() -> None:
    nested = {name: _nested_imports(_tree(name)) for name in ALLOWED}
    assert {name: lines for name, lines in nested.items() if lines} == {}


def test_the_layer_check_sees_a_wrong_arrow() -> None:
    # db importing queries is exactly the circle this package used to have.
    tree = ast.parse("from mastercontrol.store.queries import Store\n")
    assert _store_imports(tree) - ALLOWED["db"] == {"queries"}
    nested = ast.parse("def f():\n    from mastercontrol.store.db import transaction\n")
    assert _nested_imports(nested) == [2]


# Statements are written in capitals in this code base; "release" in prose is not one.
_TRANSACTION_SQL = re.compile(
    r"""["'](BEGIN|COMMIT|ROLLBACK)(?=[\s"'])|["'](SAVEPOINT|RELEASE)\s|wal_checkpoint|"""
    r"""\.(commit|rollback)\(\)"""
)
PACKAGE = STORE.parent


def _transaction_statements(text: str) -> list[str]:
    return [m.group(0) for m in _TRANSACTION_SQL.finditer(text)]


def test_every_transaction_statement_of_the_package_is_in_store_db() -> None:
    found = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != STORE / "db.py" and (hits := _transaction_statements(path.read_text()))
    }
    assert found == {}
    assert _transaction_statements((STORE / "db.py").read_text())  # the check sees them


def test_the_transaction_check_sees_a_hand_written_commit() -> None:
    assert _transaction_statements('conn.execute("COMMIT")\nconn.commit()\n') == [
        '"COMMIT',
        ".commit()",
    ]
