"""Config push and rollback: replace workload files of the config dir, validated as a whole.

Owns every write the master makes into its config dir, for the IPC commands `put_config` and
`rollback_config`. A push is checked in three steps before anything changes: the file names
(only `<name>.yaml`/`.yml`, no separators, no dot-files, never daemon.yaml or inventory.yaml),
then the whole new set — the current files plus the pushed ones, minus unnamed workload files
when replacing — loaded by the same loader as `reload` from a staging copy inside the state dir
(YAML is only parsed: no workload module is imported, no user code runs). Only then are the
current workload files saved to `<state_dir>/config-previous/` (outside the config dir, so the
loader never sees them) and the new files written atomically (temp file, fsync, rename, fsync of
the directory). The caller then reloads. These are bounded local file operations (at most the
IPC request cap of data); they never touch the network. Imports the stdlib and the package's
config, errors and ipc modules only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mastercontrol.config.load import NOT_WORKLOAD_FILES, YAML_SUFFIXES
from mastercontrol.config.model import ConfigSet
from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import ErrorCode

PREVIOUS_DIR = "config-previous"
STAGING_DIR = "config-staging"
MAX_FILES = 1000  # files in one push
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,250}\.ya?ml")
FILE_MODE = 0o644  # of a new file, narrowed by the umask; a replaced file keeps its mode

LoadConfig = Callable[[Path], ConfigSet]
Reload = Callable[[], dict[str, Any]]  # the normal reload path: {"dry_run", "plan"}


def check_files(files: object) -> dict[str, bytes]:
    """The pushed {name: UTF-8 bytes} after checking every name and text; else bad_request."""
    if not isinstance(files, dict):
        raise IPCError(ErrorCode.BAD_REQUEST, "'files' must be an object of {name: yaml text}")
    if len(files) > MAX_FILES:
        raise IPCError(ErrorCode.BAD_REQUEST, f"at most {MAX_FILES} files in one push")
    encoded: dict[str, bytes] = {}
    for name, text in files.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in NOT_WORKLOAD_FILES:
            raise IPCError(
                ErrorCode.BAD_REQUEST,
                f"bad file name {name[:100]!r}: only <name>.yaml or <name>.yml (letters, digits, "
                "_ . -; no path, no leading dot), and not daemon.yaml or inventory.yaml",
            )
        if not isinstance(text, str):
            raise IPCError(ErrorCode.BAD_REQUEST, f"{name}: the file's text must be a string")
        try:
            encoded[name] = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") survives JSON, not UTF-8
            raise IPCError(
                ErrorCode.BAD_REQUEST, f"{name}: the text is not valid Unicode"
            ) from None
    return encoded


def workload_files(config_dir: Path) -> list[str]:
    """Names of the workload files in `config_dir`, as the loader picks them."""
    try:
        names = sorted(os.listdir(config_dir))
    except OSError as exc:
        raise IPCError(
            ErrorCode.INTERNAL, f"cannot list {config_dir}: {exc.strerror or exc}"
        ) from None
    return [
        n
        for n in names
        if n.endswith(YAML_SUFFIXES) and n not in NOT_WORKLOAD_FILES and (config_dir / n).is_file()
    ]


@dataclass(frozen=True)
class Change:
    """A validated change of the config dir: files to write, workload files to remove."""

    write: dict[str, bytes]
    remove: tuple[str, ...]


class ConfigPush:
    def __init__(self, config_dir: Path, state_dir: Path, load_config: LoadConfig) -> None:
        self.config_dir = config_dir
        self.state_dir = state_dir
        self.load_config = load_config

    @property
    def previous_dir(self) -> Path:
        return self.state_dir / PREVIOUS_DIR

    # ------------------------------------------------------------------ the two requests

    def push(self, files: object, replace: bool, reload: Reload) -> dict[str, Any]:
        """Validate, save the current set, write the pushed files, reload: `{"plan", "written",
        "removed"}`. Any IPCError before the writes means nothing on disk changed."""
        pushed = check_files(files)
        current = workload_files(self.config_dir)
        remove = tuple(n for n in current if n not in pushed) if replace else ()
        change = Change(pushed, remove)
        self.validate(change)
        try:
            self.save_previous()
        except OSError as exc:
            raise _write_error(self.previous_dir, exc) from None
        return self._apply_and_reload(change, reload)

    def rollback(self, reload: Reload) -> dict[str, Any]:
        """Restore the set saved by the last push (validated first) and reload."""
        if not self.previous_dir.is_dir():
            raise IPCError(
                ErrorCode.NO_PREVIOUS_CONFIG, "no saved config to roll back to (nothing pushed)"
            )
        try:
            saved = {
                n: (self.previous_dir / n).read_bytes() for n in workload_files(self.previous_dir)
            }
        except OSError as exc:
            raise IPCError(ErrorCode.INTERNAL, f"cannot read the saved config: {exc}") from None
        remove = tuple(n for n in workload_files(self.config_dir) if n not in saved)
        change = Change(saved, remove)
        self.validate(change)
        return self._apply_and_reload(change, reload)

    def _apply_and_reload(self, change: Change, reload: Reload) -> dict[str, Any]:
        try:
            files = self.apply(change)
        except OSError as exc:
            raise _write_error(self.config_dir, exc) from None
        return {"plan": reload()["plan"], **files}

    # ------------------------------------------------------------------ steps

    def validate(self, change: Change) -> None:
        """Load the config dir as it would be after `change`; IPCError invalid_config if any
        file of it has a problem. Nothing in the config dir is touched."""
        staging = self.state_dir / STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)  # a crash may have left one behind
        try:
            staging.mkdir(mode=0o700, parents=True)
            for name in os.listdir(self.config_dir):
                src = self.config_dir / name
                if name.endswith(YAML_SUFFIXES) and name not in change.remove and src.is_file():
                    with contextlib.suppress(OSError):  # unreadable: the loader says so below
                        shutil.copyfile(src, staging / name)
            for name, data in change.write.items():
                (staging / name).write_bytes(data)
            configs = self.load_config(staging)
        except OSError as exc:
            raise IPCError(
                ErrorCode.INTERNAL, f"cannot stage the new config in {staging}: {exc}"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if configs.problems:
            prefix = f"{staging}{os.sep}"
            problems = [
                {
                    "file": p.file.removeprefix(prefix),
                    "line": p.line,
                    "field": p.field,
                    "message": p.message,
                }
                for p in configs.located
            ]
            lines = [text.replace(prefix, "") for text in configs.problems]
            raise IPCError(
                ErrorCode.INVALID_CONFIG,
                "config rejected, nothing changed:\n" + "\n".join(lines),
                details={"problems": problems},
            )

    def save_previous(self) -> None:
        """Copy the current workload files to config-previous/ (replacing an older copy)."""
        fresh = self.state_dir / (PREVIOUS_DIR + ".new")
        old = self.state_dir / (PREVIOUS_DIR + ".old")
        for leftover in (fresh, old):
            shutil.rmtree(leftover, ignore_errors=True)
        fresh.mkdir(mode=0o700, parents=True)
        for name in workload_files(self.config_dir):
            src = self.config_dir / name
            write_atomic(fresh / name, src.read_bytes(), src.stat().st_mode & 0o7777)
        fsync_dir(fresh)
        if self.previous_dir.exists():
            os.rename(self.previous_dir, old)
        os.rename(fresh, self.previous_dir)
        fsync_dir(self.state_dir)
        shutil.rmtree(old, ignore_errors=True)

    def apply(self, change: Change) -> dict[str, list[str]]:
        """Write and remove what `change` says, each file atomically."""
        for name, data in change.write.items():
            path = self.config_dir / name
            try:
                mode: int | None = path.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = None  # a new file: 0644 narrowed by the daemon's umask
            write_atomic(path, data, mode)
        for name in change.remove:
            with contextlib.suppress(FileNotFoundError):
                (self.config_dir / name).unlink()
        fsync_dir(self.config_dir)
        return {"written": sorted(change.write), "removed": sorted(change.remove)}


def write_atomic(path: Path, data: bytes, mode: int | None) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never half.
    `mode`: exactly this mode (a replaced file keeps its own); None: FILE_MODE & ~umask."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    fd = os.open(tmp, flags, FILE_MODE if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)  # the umask must not narrow a replaced file's mode
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(where: Path, exc: OSError) -> IPCError:
    message = f"cannot write in {where}: {exc.strerror or exc}"
    if isinstance(exc, PermissionError):
        return IPCError(ErrorCode.PERMISSION_DENIED, message)
    return IPCError(ErrorCode.INTERNAL, message)
