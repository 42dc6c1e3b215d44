"""`logs -f`: print lines appended to a log file, following it across rotation (like tail -F).

Rotation renames `<name>.log` away and starts a new file: we notice a new inode (or a shorter
file) at the path, finish the old file and continue at the start of the new one. Polls the file
a few times a second; the CLI is a separate process, so this never touches the master loop.
Imports only the standard library.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

POLL_SECONDS = 0.2


def _open(path: Path, at_end: bool) -> BinaryIO | None:
    try:
        # O_NOFOLLOW: never print what a planted symlink points at.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        f = open(fd, "rb")  # noqa: SIM115 - kept open across iterations on purpose
    except OSError:
        return None
    if at_end:
        f.seek(0, os.SEEK_END)
    return f


def follow(
    path: Path,
    out: Callable[[str], None],
    stop: Callable[[], bool] = lambda: False,
    poll: float = POLL_SECONDS,
) -> None:
    """Print new complete lines from `path` until `stop()` says so (or Ctrl-C)."""
    f = _open(path, at_end=True)
    partial = b""
    while not stop():
        chunk = f.read(65536) if f is not None else b""
        if chunk:
            partial += chunk
            *lines, partial = partial.split(b"\n")
            for line in lines:
                out(line.decode("utf-8", "replace"))
            continue
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if f is None:
            if st is not None:
                f = _open(path, at_end=False)
                continue
        elif st is not None:
            cur = os.fstat(f.fileno())
            if st.st_ino != cur.st_ino or st.st_size < f.tell():
                # Rotated (new file) or truncated: drain the old one, then start over.
                rest = f.read()
                if rest:
                    partial += rest
                    *lines, partial = partial.split(b"\n")
                    for line in lines:
                        out(line.decode("utf-8", "replace"))
                f.close()
                f = _open(path, at_end=False)
                continue
        time.sleep(poll)
    if f is not None:
        f.close()
