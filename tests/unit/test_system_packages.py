"""`make test` sets up the system packages itself: .ci/system-packages installs what
.ci/packages lists as root and names the missing ones (with the apt-get line) otherwise. Run
with stand-in dpkg-query/id/apt-get on PATH, so nothing is installed by the test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "system-packages"


def _shims(tmp_path: Path, uid: int, installed: set[str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ok = " ".join(sorted(installed))
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n"
        'pkg="$3"\n'
        f"for p in {ok}; do\n"
        '  [ "$p" = "$pkg" ] && { printf "install ok installed"; exit 0; }\n'
        "done\n"
        "exit 1\n"
    )
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {tmp_path}/apt.log\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return bin_dir


def _run(tmp_path: Path, uid: int, installed: set[str]) -> subprocess.CompletedProcess[str]:
    bin_dir = _shims(tmp_path, uid, installed)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def _listed() -> list[str]:
    lines = (ROOT / ".ci" / "packages").read_text().splitlines()
    return [w for line in lines for w in line.split("#")[0].split()]


def test_the_package_list_names_the_tools_the_suite_needs() -> None:
    assert {"mandoc", "man-db", "systemd", "procps", "make"} <= set(_listed())


def test_a_normal_user_is_told_what_is_missing_and_nothing_is_installed(tmp_path: Path) -> None:
    res = _run(tmp_path, 1000, installed=set(_listed()) - {"mandoc", "man-db"})
    assert res.returncode == 0
    assert "missing mandoc man-db" in res.stderr
    assert "sudo apt-get install mandoc man-db" in res.stderr
    assert not (tmp_path / "apt.log").exists()


def test_root_installs_exactly_the_missing_packages(tmp_path: Path) -> None:
    res = _run(tmp_path, 0, installed=set(_listed()) - {"mandoc", "man-db"})
    assert res.returncode == 0, res.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls[0].startswith("apt-get update")
    assert calls[1].split()[-2:] == ["mandoc", "man-db"]


def test_nothing_happens_when_everything_is_there(tmp_path: Path) -> None:
    res = _run(tmp_path, 0, installed=set(_listed()))
    assert res.returncode == 0
    assert res.stdout == res.stderr == ""
    assert not (tmp_path / "apt.log").exists()
