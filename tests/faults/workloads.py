"""Workload functions for the fault suite (run inside a real mastercontrold's children)."""

from __future__ import annotations

import sys
import time


def tick_printer(interval: float = 0.05, size: int = 200) -> None:
    """Print one line every `interval` seconds, forever: output keeps arriving during a fault."""
    i = 0
    while True:
        print(f"{i:08d} " + "t" * size, flush=True)
        i += 1
        time.sleep(interval)


def spew_no_newline(total_mb: int = 20, max_seconds: float = 20.0) -> None:
    """Write `total_mb` MB without a single newline (or stop at `max_seconds`), then exit."""
    chunk = b"z" * 65536
    out = sys.stdout.buffer
    end = time.monotonic() + max_seconds
    for _ in range(total_mb * 16):
        out.write(chunk)
        if time.monotonic() > end:
            break
    out.flush()
