"""Path resolution: argument > MCTL_* > systemd directories > root / XDG defaults."""

from __future__ import annotations

from pathlib import Path

from mastercontrol.config.paths import Paths, resolve_paths

SYSTEMD = {
    "CONFIGURATION_DIRECTORY": "/etc/sd-conf",
    "STATE_DIRECTORY": "/var/lib/sd-state:/var/lib/other",
    "RUNTIME_DIRECTORY": "/run/sd-run",
    "LOGS_DIRECTORY": "/var/log/sd-logs",
}
MCTL = {
    "MCTL_CONFIG_DIR": "/env/conf",
    "MCTL_DB_PATH": "/env/state.db",
    "MCTL_SOCKET_PATH": "/env/mc.sock",
    "MCTL_LOG_DIR": "/env/log",
}


def test_root_defaults_are_fhs_paths() -> None:
    assert resolve_paths(environ={}, is_root=True) == Paths(
        Path("/etc/mastercontrol"),
        Path("/var/lib/mastercontrol/state.db"),
        Path("/run/mastercontrol/mastercontrol.sock"),
        Path("/var/log/mastercontrol"),
    )


def test_user_defaults_follow_xdg() -> None:
    env = {
        "HOME": "/home/u",
        "XDG_CONFIG_HOME": "/x/config",
        "XDG_STATE_HOME": "/x/state",
        "XDG_RUNTIME_DIR": "/run/user/1000",
    }
    assert resolve_paths(environ=env, is_root=False) == Paths(
        Path("/x/config/mastercontrol"),
        Path("/x/state/mastercontrol/state.db"),
        Path("/run/user/1000/mastercontrol/mastercontrol.sock"),
        Path("/x/state/mastercontrol/log"),
    )


def test_user_defaults_without_xdg_variables_use_home() -> None:
    # No XDG_RUNTIME_DIR (e.g. a cron job): the socket falls back to the state dir.
    # A relative XDG value is invalid per the spec and ignored.
    paths = resolve_paths(environ={"HOME": "/home/u", "XDG_CONFIG_HOME": "rel"}, is_root=False)
    assert paths == Paths(
        Path("/home/u/.config/mastercontrol"),
        Path("/home/u/.local/state/mastercontrol/state.db"),
        Path("/home/u/.local/state/mastercontrol/mastercontrol.sock"),
        Path("/home/u/.local/state/mastercontrol/log"),
    )


def test_systemd_directories_beat_defaults() -> None:
    assert resolve_paths(environ=SYSTEMD, is_root=True) == Paths(
        Path("/etc/sd-conf"),
        Path("/var/lib/sd-state/state.db"),
        Path("/run/sd-run/mastercontrol.sock"),
        Path("/var/log/sd-logs"),
    )


def test_mctl_environment_beats_systemd() -> None:
    assert resolve_paths(environ={**SYSTEMD, **MCTL}, is_root=True) == Paths(
        Path("/env/conf"), Path("/env/state.db"), Path("/env/mc.sock"), Path("/env/log")
    )


def test_explicit_arguments_beat_everything() -> None:
    paths = resolve_paths(
        config_dir="examples/configs",
        db_path=Path("var/state.db"),
        socket_path="var/mc.sock",
        log_dir="var/log",
        environ={**SYSTEMD, **MCTL},
        is_root=True,
    )
    assert paths == Paths(
        Path("examples/configs"), Path("var/state.db"), Path("var/mc.sock"), Path("var/log")
    )


def test_each_path_resolves_on_its_own() -> None:
    paths = resolve_paths(
        db_path="/arg/db", environ={"MCTL_LOG_DIR": "/env/log", **SYSTEMD}, is_root=True
    )
    assert paths == Paths(
        Path("/etc/sd-conf"), Path("/arg/db"), Path("/run/sd-run/mastercontrol.sock"),
        Path("/env/log"),
    )  # fmt: skip
