"""mastercontrol/deploy/wheel.py: the bootstrap's pip-less install of the project's wheel, on
wheels written here (the real wheel is installed by every deploy test, tests/deploy)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mastercontrol.deploy import wheel

REPO = Path(__file__).resolve().parents[2]


def make_wheel(path: Path, files: dict[str, str], purelib: bool = True) -> Path:
    info = "demo-1.0.dist-info"
    body = {
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: {str(purelib).lower()}\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n",
        f"{info}/RECORD": "",
        **files,
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in body.items():
            zf.writestr(name, text)
    return path


def site_of(prefix: Path) -> Path:
    return Path(sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})["purelib"])


def test_a_wheel_is_laid_out_as_pip_would_and_its_console_script_runs(tmp_path: Path) -> None:
    whl = make_wheel(
        tmp_path / "demo-1.0-py3-none-any.whl",
        {
            "demo/__init__.py": "",
            "demo/cli.py": "import sys\n\ndef main():\n    print('hello', sys.argv[1:])\n",
            "demo-1.0.dist-info/entry_points.txt": "[console_scripts]\nDemo-Tool = demo.cli:main\n",
            "demo-1.0.data/data/share/man/man1/demo.1": ".TH DEMO 1\n",
            "demo-1.0.data/scripts/plain": "#!python\nprint('plain')\n",
        },
    )
    prefix = tmp_path / "venv"
    written = wheel.install(whl, prefix, sys.executable)
    site = site_of(prefix)
    assert (site / "demo" / "cli.py").is_file()
    assert (prefix / "share" / "man" / "man1" / "demo.1").read_text() == ".TH DEMO 1\n"
    assert (site / "demo-1.0.dist-info" / "INSTALLER").read_text() == "mastercontrol-bootstrap\n"
    tool, plain = prefix / "bin" / "Demo-Tool", prefix / "bin" / "plain"
    assert tool in written and plain in written
    assert plain.read_text().splitlines()[0] == f"#!{sys.executable}"
    env = {**os.environ, "PYTHONPATH": str(site)}
    for script, out in ((tool, "hello ['x']"), (plain, "plain")):
        assert os.access(script, os.X_OK)
        done = subprocess.run([str(script), "x"], capture_output=True, text=True, env=env,
                              timeout=60, check=False)  # fmt: skip
        assert (done.returncode, done.stdout.strip()) == (0, out), done.stderr


@pytest.mark.parametrize(
    ("files", "purelib", "message"),
    [
        ({"../evil.py": ""}, True, "unsafe path in the wheel: ../evil.py"),
        ({"demo-1.0.data/headers/x.h": ""}, True, "unsupported file in the wheel"),
        ({"demo/__init__.py": ""}, False, "is not a pure-Python wheel"),
    ],
)
def test_what_it_cannot_install_is_refused_with_the_reason(
    tmp_path: Path, files: dict[str, str], purelib: bool, message: str
) -> None:
    whl = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, purelib)
    with pytest.raises(wheel.WheelError, match=message.replace(".", r"\.")):
        wheel.install(whl, tmp_path / "venv", sys.executable)
    assert not (tmp_path / "evil.py").exists()


def test_the_module_says_what_went_wrong_and_exits_non_zero(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-wheel.whl"
    bogus.write_text("no zip here")
    for argv, code, text in (([], 2, "usage:"), ([str(bogus)], 1, "not-a-wheel.whl")):
        done = subprocess.run([sys.executable, "-m", "mastercontrol.deploy.wheel", *argv],
                              capture_output=True, text=True, timeout=60, cwd=REPO,
                              check=False)  # fmt: skip
        assert done.returncode == code and text in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
