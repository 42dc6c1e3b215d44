"""Example script for run_mode n_times: print which run this is.

The count is kept in a small file so that each run prints the next number; the daemon itself
counts runs durably, this file only makes the output easy to follow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def run(count_file: str | None = None) -> None:
    path = Path(count_file or os.path.join(tempfile.gettempdir(), "mastercontrol-counter.txt"))
    try:
        count = int(path.read_text(encoding="utf-8").strip() or 0)
    except (FileNotFoundError, ValueError):
        count = 0
    count += 1
    path.write_text(f"{count}\n", encoding="utf-8")
    print(f"counter: run {count}", flush=True)
