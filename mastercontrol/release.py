"""Which release of Master Control this process runs: for heartbeats and the client API, and
for the daemon, which keeps FATAL across a restart only within one release.

The deploy layout puts each release's venv at `install_dir/releases/<id>/venv` with a `RELEASE`
file beside it; `MCTL_RELEASE` overrides it (tests, hand-made installs).

Imports only the standard library; must not import daemon/, child/, api/, bottle or waitress.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

RELEASE_ENV = "MCTL_RELEASE"
RELEASE_FILE = "RELEASE"
_MAX_RELEASE_CHARS = 200  # a release id is short; a stray big file must not bloat every report


def release_file(prefix: str | None = None) -> Path:
    """The `RELEASE` file beside the running venv (`sys.prefix` unless given)."""
    return Path(prefix if prefix is not None else sys.prefix).parent / RELEASE_FILE


def current_release(prefix: str | None = None) -> str | None:
    """`MCTL_RELEASE` if set, else the text of the `RELEASE` file, else None."""
    value = os.environ.get(RELEASE_ENV, "").strip()
    if not value:
        try:
            with release_file(prefix).open(encoding="utf-8", errors="replace") as f:
                value = f.read(_MAX_RELEASE_CHARS + 1).strip()
        except OSError:
            return None
    return value[:_MAX_RELEASE_CHARS] or None
