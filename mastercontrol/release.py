"""Which release of Master Control this process runs (for heartbeats and the client API), and
which code it runs (for the daemon, which keeps FATAL across a restart only while neither the
workload's config nor the code changed).

The deploy layout puts each release's venv at `install_dir/releases/<id>/venv` with a `RELEASE`
file beside it; `MCTL_RELEASE` overrides it (tests, hand-made installs). The code a release
runs is named by `MCTL_CODE` (or a `CODE` file beside the venv): the deployer's digest of its
wheels, its app/ tree and the client's `env:`, so two releases of the same code (a deploy that
changed only workload files) share it. Without it the release id stands for the code.

Imports only the standard library; must not import daemon/, child/, api/, bottle or waitress.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RELEASE_ENV = "MCTL_RELEASE"
RELEASE_FILE = "RELEASE"
CODE_ENV = "MCTL_CODE"
CODE_FILE = "CODE"
_MAX_RELEASE_CHARS = 200  # a release id is short; a stray big file must not bloat every report


def release_file(prefix: str | None = None, name: str = RELEASE_FILE) -> Path:
    """The `RELEASE` (or `name`) file beside the running venv (`sys.prefix` unless given)."""
    return Path(prefix if prefix is not None else sys.prefix).parent / name


def _named(env: str, name: str, prefix: str | None) -> str | None:
    """`env` if set, else the text of the file `name` beside the venv, else None."""
    value = os.environ.get(env, "").strip()
    if not value:
        try:
            with release_file(prefix, name).open(encoding="utf-8", errors="replace") as f:
                value = f.read(_MAX_RELEASE_CHARS + 1).strip()
        except OSError:
            return None
    return value[:_MAX_RELEASE_CHARS] or None


def current_release(prefix: str | None = None) -> str | None:
    """`MCTL_RELEASE` if set, else the text of the `RELEASE` file, else None."""
    return _named(RELEASE_ENV, RELEASE_FILE, prefix)


def current_code(prefix: str | None = None) -> str | None:
    """`MCTL_CODE` if set, else the `CODE` file, else the release (which then stands for it)."""
    return _named(CODE_ENV, CODE_FILE, prefix) or current_release(prefix)
