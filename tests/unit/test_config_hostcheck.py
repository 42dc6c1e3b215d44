"""config/hostcheck.py: a module is found the way import would find it, without running it;
a program the way exec would; accounts through the passwd and group databases."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mastercontrol.config.hostcheck import account_problems, missing_module, missing_program


def test_module_in_a_regular_package_is_found_without_importing_it(tmp_path: Path) -> None:
    pkg = tmp_path / "hc_pkg_a"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise SystemExit('imported!')\n")
    (pkg / "job.py").write_text("")
    assert missing_module("hc_pkg_a.job", str(tmp_path)) is None
    assert "hc_pkg_a" not in sys.modules
    assert "no module named 'hc_pkg_a.nope'" in (
        missing_module("hc_pkg_a.nope", str(tmp_path)) or ""
    )


def test_namespace_package_and_plain_module(tmp_path: Path) -> None:
    (tmp_path / "hc_ns" / "deeper").mkdir(parents=True)
    (tmp_path / "hc_ns" / "deeper" / "leaf.py").write_text("")
    (tmp_path / "hc_plain.py").write_text("")
    assert missing_module("hc_ns.deeper.leaf", str(tmp_path)) is None
    assert missing_module("hc_plain", str(tmp_path)) is None
    why = missing_module("hc_plain.sub", str(tmp_path))
    assert why is not None and "'hc_plain' is a module, not a package" in why


def test_modules_on_the_interpreter_path_and_already_loaded(tmp_path: Path) -> None:
    assert missing_module("json.decoder", str(tmp_path)) is None
    assert missing_module("os.path", str(tmp_path)) is None  # loaded: a fork shares it
    assert missing_module("examples.agents.hello_agent", os.getcwd()) is None
    why = missing_module("no_such_top_hc", str(tmp_path))
    assert why == f"no module named 'no_such_top_hc' in {tmp_path} or on the Python path"


def test_program_on_path_relative_and_not_executable(tmp_path: Path) -> None:
    assert missing_program("sh", os.environ.get("PATH", os.defpath), str(tmp_path)) is None
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    assert missing_program("./run.sh", "/usr/bin", str(tmp_path)) == "'./run.sh': not executable"
    script.chmod(0o755)
    assert missing_program("./run.sh", "/usr/bin", str(tmp_path)) is None
    assert missing_program("run.sh", "bin:.", str(tmp_path)) is None  # relative PATH entry
    assert missing_program("/no/such/prog", "/usr/bin", str(tmp_path)) == (
        "'/no/such/prog': no such program"
    )


def test_accounts_must_exist() -> None:
    assert account_problems("root", "root") == []
    assert account_problems("0", "0") == []
    assert account_problems("no_such_user_hc", None) == [
        ("user", "no such user 'no_such_user_hc' on this host")
    ]
    assert account_problems(None, "no_such_group_hc") == [
        ("group", "no such group 'no_such_group_hc' on this host")
    ]
