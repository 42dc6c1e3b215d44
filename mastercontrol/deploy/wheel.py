"""Installing the project's own wheel into a release's venv on a client, without pip.

contrib/bootstrap.sh runs this module from the wheel itself (`PYTHONPATH=<wheel> python -m
mastercontrol.deploy.wheel <wheel>`, with the venv's python) once the venv's dependency layer is
in place: pip spends ~2 s of a client's CPU on this one wheel (its start-up, measured here on
an x86 core), this is a zip extraction of ~150 files. It handles what a pure-Python wheel
(`Root-Is-Purelib: true`) holds, as the wheel format (PEP 427, PEP 491) lays it out: the package
and its `.dist-info` into site-packages, `<name>.data/{purelib,platlib}` there too,
`<name>.data/data` under the venv's prefix, `<name>.data/scripts` into bin/, and a script in bin/
per `console_scripts` entry point. Anything else (a platform wheel, headers, a path leaving its
directory) is refused with a message, and the bootstrap's install fails before any switch.

Imports only the standard library (it runs before any dependency is importable).
"""

from __future__ import annotations

import configparser
import os
import sys
import sysconfig
import zipfile
from pathlib import Path, PurePosixPath

INSTALLER = "mastercontrol-bootstrap"

_SCRIPT = """#!{python}
import sys
from {module} import {head}
if __name__ == '__main__':
    sys.exit({call}())
"""


class WheelError(Exception):
    """The wheel cannot be installed by this module (message says why)."""


def _inside(base: Path, rel: PurePosixPath) -> Path:
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise WheelError(f"unsafe path in the wheel: {rel}")
    return base.joinpath(*rel.parts)


def _dist_info(names: list[str]) -> str:
    found = {n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    if len(found) != 1:
        raise WheelError(f"expected one .dist-info directory, found {sorted(found)}")
    return found.pop()


class _CaseKept(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # script names keep their case


def _entry_points(text: str) -> dict[str, tuple[str, str]]:
    """console_scripts as {script name: (module, attribute path)}."""
    parser = _CaseKept(delimiters=("=",), interpolation=None)
    parser.read_string(text)
    if not parser.has_section("console_scripts"):
        return {}
    out: dict[str, tuple[str, str]] = {}
    for name, value in parser.items("console_scripts"):
        target = value.split("[", 1)[0].strip()
        module, _, attr = target.partition(":")
        if not module or not attr or "/" in name:
            raise WheelError(f"bad console_scripts entry {name} = {value}")
        out[name] = (module.strip(), attr.strip())
    return out


def install(wheel: Path, prefix: Path, python: str) -> list[Path]:
    """Install `wheel` into the venv at `prefix` (whose interpreter is `python`); the files
    written, scripts included."""
    paths = sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})
    site, bin_dir = Path(paths["purelib"]), Path(paths["scripts"])
    written: list[Path] = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = _dist_info(names)
        meta = zf.read(f"{info}/WHEEL").decode()
        if "Root-Is-Purelib: true" not in meta:
            raise WheelError(f"{wheel.name} is not a pure-Python wheel")
        data = info.removesuffix(".dist-info") + ".data"
        where = {"purelib": site, "platlib": site, "data": prefix, "scripts": bin_dir}
        for name in names:
            if name.endswith("/"):
                continue
            rel = PurePosixPath(name)
            if rel.parts[0] == data:
                if len(rel.parts) < 3 or rel.parts[1] not in where:
                    raise WheelError(f"unsupported file in the wheel: {name}")
                dest = _inside(where[rel.parts[1]], PurePosixPath(*rel.parts[2:]))
            else:
                dest = _inside(site, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            body = zf.read(name)
            script = rel.parts[0] == data and rel.parts[1] == "scripts"
            if script and body.startswith(b"#!python"):
                body = b"#!" + python.encode() + body[len(b"#!python") :]
            dest.write_bytes(body)
            if script:
                dest.chmod(0o755)
            written.append(dest)
        names_set = set(names)
        entry = f"{info}/entry_points.txt"
        scripts = _entry_points(zf.read(entry).decode()) if entry in names_set else {}
    for name, (module, attr) in sorted(scripts.items()):
        head = attr.split(".", 1)[0]
        dest = bin_dir / name
        bin_dir.mkdir(parents=True, exist_ok=True)
        dest.write_text(_SCRIPT.format(python=python, module=module, head=head, call=attr))
        dest.chmod(0o755)
        written.append(dest)
    (site / info / "INSTALLER").write_text(INSTALLER + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mastercontrol.deploy.wheel WHEEL", file=sys.stderr)
        return 2
    try:
        install(Path(args[0]), Path(sys.prefix), os.path.join(sys.prefix, "bin", "python"))
    except (OSError, WheelError, zipfile.BadZipFile, KeyError, configparser.Error) as exc:
        print(f"installing {args[0]} into {sys.prefix}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
