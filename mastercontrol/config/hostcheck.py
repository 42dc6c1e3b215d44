"""Whether a valid workload can run on THIS host: its module, program, directory and accounts.

`load_config_dir` (so `validate`, the daemon at start and reload, `ctl run` and a config push)
asks these after a file's own settings are valid, so a typo in `module:` or `command:` is a
`FILE:LINE` problem instead of a traceback in the workload's log. Nothing here runs user code:
a module is looked up the way `import` would find it, one dotted part at a time with explicit
search paths (`importlib.util.find_spec("a.b")` would import, and so run, package `a`). The
search starts where the child's does: `working_dir` (or this process's directory) first, then
this interpreter's path. Accounts are looked up by config/accounts.py, as the child bootstrap
does. Imports only the standard library and config's accounts and yamlsource; never engine,
child or daemon.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from mastercontrol.config.accounts import lookup_group, lookup_user
from mastercontrol.config.yamlsource import Problem


def host_problems(values: Mapping[str, Any], lines: Mapping[str, int]) -> list[Problem]:
    """Problems of one workload's validated settings (`values`, keyed like the schema) here."""
    problems: list[Problem] = []

    def add(name: str, message: str) -> None:
        problems.append(Problem(lines[name], name, message))

    working_dir = values.get("working_dir")
    if working_dir is not None and not os.path.isdir(working_dir):
        add("working_dir", f"{working_dir}: no such directory")
    start = working_dir or os.getcwd()
    if "module" in values:
        why = missing_module(values["module"], start)
        if why:
            add("module", why)
    if "command" in values:
        path_var = values.get("env", {}).get("PATH", os.environ.get("PATH", os.defpath))
        why = missing_program(values["command"][0], path_var, start)
        if why:
            add("command", why)
    for name, why in account_problems(values.get("user"), values.get("group")):
        add(name, why)
    return problems


def missing_module(name: str, first: str) -> str | None:
    """Why `import name` would fail in a child that puts `first` at the front of sys.path, or
    None if it would find the module. Runs no module code."""
    if name in sys.modules:
        return None  # loaded here already (a fork shares this process's modules): os.path
    parts = name.split(".")
    spec = _find_top(parts[0], first)
    if spec is None:
        return f"no module named {parts[0]!r} in {first} or on the Python path"
    locations = _paths(spec.submodule_search_locations)
    for i in range(1, len(parts)):
        parent, fullname = ".".join(parts[:i]), ".".join(parts[: i + 1])
        loaded = sys.modules.get(parent)
        if loaded is not None:
            locations = _paths(getattr(loaded, "__path__", None))
        if locations is None:
            return f"{parent!r} is a module, not a package: it has no {parts[i]!r}"
        found, locations = _find_in(parts[i], locations)
        if not found:
            return f"no module named {fullname!r} (package {parent!r} has no {parts[i]!r})"
    return None


def _paths(locations: Iterable[str] | None) -> list[str] | None:
    """A package's directories; None for a plain module. A namespace package's _NamespacePath
    would recompute itself from its parent MODULE, never imported here: take the directories it
    was found with."""
    if locations is None:
        return None
    return list(getattr(locations, "_path", locations))


def _find_in(part: str, directories: list[str]) -> tuple[bool, list[str] | None]:
    """Look for `part` in a package's directories as the path finder does (a package directory
    before a module file; directories without __init__ add up to a namespace package).
    Returns (found, the directories of the package found, or None for a module)."""
    suffixes = importlib.machinery.all_suffixes()
    portions: list[str] = []
    for directory in directories:
        package = os.path.join(directory, part)
        if os.path.isdir(package):
            if any(os.path.isfile(os.path.join(package, "__init__" + s)) for s in suffixes):
                return True, [package]
            portions.append(package)
        elif any(os.path.isfile(os.path.join(directory, part + s)) for s in suffixes):
            return True, None
    return bool(portions), portions or None


def _find_top(name: str, first: str) -> importlib.machinery.ModuleSpec | None:
    if name in sys.modules:
        module = sys.modules[name]
        return getattr(module, "__spec__", None) or importlib.machinery.ModuleSpec(name, None)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        # Finders that only answer for top-level names are asked as import asks them; the path
        # finder gets the child's sys.path (working dir first).
        path = [first, *sys.path] if finder is importlib.machinery.PathFinder else None
        spec: importlib.machinery.ModuleSpec | None = find(name, path)
        if spec is not None:
            return spec
    return None


def missing_program(program: str, path_var: str, cwd: str) -> str | None:
    """Why exec of `program` from `cwd` with PATH `path_var` would fail, or None."""
    if "/" in program:
        candidate = os.path.join(cwd, program)
        if not os.path.isfile(candidate):
            return f"{program!r}: no such program" + (
                "" if program.startswith("/") else f" in {cwd}"
            )
        if not os.access(candidate, os.X_OK):
            return f"{program!r}: not executable"
        return None
    # Relative PATH entries (and an empty one) mean the workload's own directory.
    search = os.pathsep.join(os.path.join(cwd, d) for d in path_var.split(os.pathsep))
    if shutil.which(program, path=search) is None:
        return f"{program!r} not found on PATH ({path_var})"
    return None


def account_problems(user: str | None, group: str | None) -> list[tuple[str, str]]:
    """(field, message) for a `user:`/`group:` that does not exist or cannot be taken."""
    found: list[tuple[str, str]] = []
    change = False
    for name, value, lookup, kind, own in (
        ("user", user, lookup_user, "user", os.geteuid()),
        ("group", group, lookup_group, "group", os.getegid()),
    ):
        if value is None:
            continue
        try:
            entry = lookup(value)
        except KeyError:
            found.append((name, f"no such {kind} {value!r} on this host"))
            continue
        change = change or entry[2] != own  # pw_uid / gr_gid
    if change and os.geteuid() != 0:
        field = "user" if user is not None else "group"
        found.append((field, f"needs the daemon to run as root (it runs as uid {os.geteuid()})"))
    return found
