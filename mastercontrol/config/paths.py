"""Where the daemon and the CLI find their config dir, state database, socket and logs.

Precedence, per path: explicit argument (a command-line option) > MCTL_* environment variable >
the directory systemd passes (ConfigurationDirectory=, StateDirectory=, RuntimeDirectory=,
LogsDirectory=) > defaults: FHS paths as root, XDG base directories otherwise. Nothing is
created here. Imports only the standard library.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

APP = "mastercontrol"
DB_NAME = "state.db"
SOCKET_NAME = "mastercontrol.sock"
# The daemon's own log is <log-dir>/mastercontrold.log, beside the workloads' NAME.log files, so
# no workload may be named this.
DAEMON_LOG_NAME = "mastercontrold"


class Paths(NamedTuple):  # not a dataclass: `mastercontrol-ctl` starts ~10 ms sooner without it
    config_dir: Path
    db_path: Path
    socket_path: Path
    log_dir: Path


def _systemd_dir(environ: Mapping[str, str], name: str) -> Path | None:
    # systemd joins several directories with ':' when the unit lists more than one.
    value = environ.get(name, "").split(":")[0]
    return Path(value) if value else None


def _xdg(environ: Mapping[str, str], name: str, fallback: str) -> Path:
    value = environ.get(name, "")
    # The XDG spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home, fallback)


def _defaults(environ: Mapping[str, str], is_root: bool) -> Paths:
    if is_root:
        return Paths(
            config_dir=Path("/etc", APP),
            db_path=Path("/var/lib", APP, DB_NAME),
            socket_path=Path("/run", APP, SOCKET_NAME),
            log_dir=Path("/var/log", APP),
        )
    state = _xdg(environ, "XDG_STATE_HOME", ".local/state") / APP
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    runtime_dir = Path(runtime, APP) if runtime and os.path.isabs(runtime) else state
    return Paths(
        config_dir=_xdg(environ, "XDG_CONFIG_HOME", ".config") / APP,
        db_path=state / DB_NAME,
        socket_path=runtime_dir / SOCKET_NAME,
        log_dir=state / "log",
    )


def resolve_paths(
    config_dir: str | os.PathLike[str] | None = None,
    db_path: str | os.PathLike[str] | None = None,
    socket_path: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    is_root: bool | None = None,
) -> Paths:
    """Resolve the four paths; `is_root` defaults to whether the effective uid is 0."""
    if is_root is None:
        is_root = os.geteuid() == 0
    default = _defaults(environ, is_root)
    state_dir = _systemd_dir(environ, "STATE_DIRECTORY")
    runtime_dir = _systemd_dir(environ, "RUNTIME_DIRECTORY")
    systemd = Paths(
        config_dir=_systemd_dir(environ, "CONFIGURATION_DIRECTORY") or default.config_dir,
        db_path=state_dir / DB_NAME if state_dir else default.db_path,
        socket_path=runtime_dir / SOCKET_NAME if runtime_dir else default.socket_path,
        log_dir=_systemd_dir(environ, "LOGS_DIRECTORY") or default.log_dir,
    )

    def pick(explicit: str | os.PathLike[str] | None, env_name: str, fallback: Path) -> Path:
        if explicit is not None:
            return Path(explicit)
        if environ.get(env_name):
            return Path(environ[env_name])
        return fallback

    return Paths(
        config_dir=pick(config_dir, "MCTL_CONFIG_DIR", systemd.config_dir),
        db_path=pick(db_path, "MCTL_DB_PATH", systemd.db_path),
        socket_path=pick(socket_path, "MCTL_SOCKET_PATH", systemd.socket_path),
        log_dir=pick(log_dir, "MCTL_LOG_DIR", systemd.log_dir),
    )


def add_path_options(parser: argparse.ArgumentParser) -> None:
    """The four path options shared by mastercontrold and mastercontrol-ctl."""
    parser.add_argument("--config-dir", metavar="DIR", help="workload YAML files and daemon.yaml")
    parser.add_argument("--db-path", metavar="FILE", help="the sqlite state database")
    parser.add_argument("--socket-path", metavar="FILE", help="the IPC Unix socket")
    parser.add_argument("--log-dir", metavar="DIR", help="workload logs and mastercontrold.log")


def paths_from_args(args: argparse.Namespace) -> Paths:
    """The paths the shared options (and the environment) name."""
    return resolve_paths(
        config_dir=args.config_dir,
        db_path=args.db_path,
        socket_path=args.socket_path,
        log_dir=args.log_dir,
    )
