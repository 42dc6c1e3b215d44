"""Building a release on the control host: the wheelhouse (once per source state) and one staged
directory per client (shared files hard-linked), ready for rsync.

`<state_dir>/releases/<id>/<client>/` holds what lands in `install_dir/releases/<id>/` on that
client: wheelhouse/ (the project's wheel, its dependencies and pip, so the client installs with
no package index), config/ (its workload files and daemon.yaml), app/ (workload code), env (its
inventory `env:` as sh assignments), RELEASE, CODE (`code_id`: the code it runs, for the daemon's
FATAL), bootstrap.sh, WHEELHOUSE (the wheelhouse's hash: one venv per hash on the client) and
DEPS (the hash of the dependency wheels alone: one shared dependency layer per hash, so a release
that changes only the project's wheel installs just that wheel). The wheelhouse is cached under
a hash of the sources that go into the wheel (`MCTL_WHEELHOUSE_CACHE` moves the cache).

Imports only the standard library, pyyaml and config/; never fabric, the daemon or the API.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from mastercontrol.config.load import DAEMON_FILE, YAML_SUFFIXES
from mastercontrol.config.model import InventoryClient
from mastercontrol.deploy.layout import BOOTSTRAP, check_release_id
from mastercontrol.errors import DeployError
from mastercontrol.release import CODE_ENV, CODE_FILE, RELEASE_ENV

WHEELHOUSE_CACHE_ENV = "MCTL_WHEELHOUSE_CACHE"
# What goes into the wheel (setup.cfg's packages and data_files): a change rebuilds it.
_WHEEL_INPUTS = ("setup.cfg", "pyproject.toml", "mastercontrol", "man", "docs/openapi",
                 "contrib/systemd", "README.md")  # fmt: skip


def git_commit(root: Path) -> str | None:
    """The short commit of `root`'s checkout, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _files(root: Path) -> Iterable[Path]:
    for name in _WHEEL_INPUTS:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            )


def _hash_files(h: hashlib._Hash, root: Path, files: Iterable[Path]) -> None:
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")


def source_hash(root: Path) -> str:
    h = hashlib.sha256()
    _hash_files(h, root, _files(root))
    return h.hexdigest()[:16]


def code_id(wheels: Path, app: Path, env: dict[str, str]) -> str:
    """The code a client's release runs: its wheelhouse (named by its sources' hash), its app/
    tree and its inventory `env:`. Releases that differ only in workload files share it, so
    the daemon keeps their FATAL workloads FATAL (mastercontrol/release.py `current_code`)."""
    h = hashlib.sha256(wheels.name.encode() + b"\0" + env_text(env).encode() + b"\0")
    files = (p for p in app.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    _hash_files(h, app, sorted(files))
    return h.hexdigest()[:16]


def wheelhouse(root: Path, state_dir: Path) -> Path:
    """The cached wheelhouse of `root`'s current sources, built (pip wheel) if missing."""
    cache = Path(os.environ.get(WHEELHOUSE_CACHE_ENV) or state_dir / "wheelhouse")
    final = cache / source_hash(root)
    if (final / ".complete").is_file():
        return final
    tmp = cache / f".tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
           "--wheel-dir", str(tmp), str(root), "pip"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DeployError(f"building the wheelhouse failed:\n{done.stderr.strip()[-2000:]}")
    (tmp / ".complete").touch()
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


PROJECT_WHEEL = "mastercontrol-*.whl"


def deps_hash(wheels: Path) -> str:
    """The hash of the wheelhouse's dependency wheels: every wheel but the project's own and
    pip (which installs, and is not installed). Equal hashes mean equal dependency layers."""
    h = hashlib.sha256()
    own = set(wheels.glob(PROJECT_WHEEL)) | set(wheels.glob("pip-*.whl"))
    for path in sorted(p for p in wheels.glob("*.whl") if p not in own):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _link_tree(src: Path, dest: Path) -> None:
    """Copy `src` into `dest`, hard-linking files where the file system allows."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, copy_function=link, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", ".complete"))  # fmt: skip


def _workload_name(path: Path) -> str | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # shipped as it is: the client's validator reports it, before any switch
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def config_files(config_dir: Path, client: InventoryClient) -> dict[str, Path]:
    """The files of `client`'s config: the shared workload files (only its `workloads:` when
    it lists some) and then its own `<config_dir>/<name>/` files, which win by file name."""
    chosen: dict[str, Path] = {}
    if config_dir.is_dir():
        for path in sorted(config_dir.iterdir()):
            if not path.is_file() or not path.name.endswith(YAML_SUFFIXES):
                continue
            if client.workloads and path.name != DAEMON_FILE:
                name = _workload_name(path)
                if name is not None and name not in client.workloads:
                    continue
            chosen[path.name] = path
        own = config_dir / client.name
        if own.is_dir():
            chosen.update({p.name: p for p in sorted(own.iterdir()) if p.is_file()})
    return chosen


def env_text(env: dict[str, str]) -> str:
    """`KEY='value'` lines: read by sh (`set -a; . env`) and by systemd's EnvironmentFile."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))


def stage(
    root: Path,
    state_dir: Path,
    release_id: str,
    clients: Iterable[InventoryClient],
    config_dir: Path,
    app_dir: Path | None,
) -> Path:
    """Build release `release_id` for `clients` under `<state_dir>/releases/<id>/`."""
    check_release_id(release_id)
    wheels = wheelhouse(root, state_dir)
    deps = deps_hash(wheels)
    top = state_dir / "releases" / release_id
    bootstrap = root / "contrib" / BOOTSTRAP
    if not bootstrap.is_file():
        raise DeployError(f"{bootstrap} is missing")
    if app_dir is not None and not app_dir.is_dir():
        raise DeployError(f"deploy.app_dir {app_dir} is not a directory")
    for client in clients:
        dest = top / client.name
        shutil.rmtree(dest, ignore_errors=True)
        _link_tree(wheels, dest / "wheelhouse")
        (dest / "config").mkdir(parents=True)
        for name, path in config_files(config_dir, client).items():
            shutil.copy2(path, dest / "config" / name)
            (dest / "config" / name).chmod(0o600)  # daemon.yaml may hold the client's token
        if app_dir is not None:
            shutil.copytree(app_dir, dest / "app",
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        else:
            (dest / "app").mkdir()
        # MCTL_RELEASE, MCTL_CODE: the daemon's venv may be shared with other releases
        # (bootstrap.sh), so the release and its code are named here, not found beside the venv.
        code = code_id(wheels, dest / "app", client.env)
        env = {**client.env, RELEASE_ENV: release_id, CODE_ENV: code}
        (dest / "env").write_text(env_text(env), encoding="utf-8")
        (dest / "RELEASE").write_text(release_id + "\n", encoding="utf-8")
        (dest / CODE_FILE).write_text(code + "\n", encoding="utf-8")
        (dest / "WHEELHOUSE").write_text(wheels.name + "\n", encoding="utf-8")
        (dest / "DEPS").write_text(deps + "\n", encoding="utf-8")
        shutil.copy2(bootstrap, dest / BOOTSTRAP)
    return top


def staged(state_dir: Path, release_id: str, client: str) -> Path:
    """The staged directory of `client` in an already built release (DeployError if absent)."""
    path = state_dir / "releases" / check_release_id(release_id) / client
    if not (path / "RELEASE").is_file():
        raise DeployError(f"release {release_id} was not built here for {client} ({path})")
    return path


def built_releases(state_dir: Path) -> list[str]:
    top = state_dir / "releases"
    return sorted(p.name for p in top.iterdir() if p.is_dir()) if top.is_dir() else []
