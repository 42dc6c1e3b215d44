"""Example service: print a tick every few seconds until SIGTERM, then exit 0 cleanly."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from types import FrameType


def run(interval: float = 5.0) -> None:
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()  # only record; the loop below notices at once because wait() returns

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    count = 0
    while not stop.is_set():
        count += 1
        now = datetime.now().astimezone().isoformat(timespec="seconds")
        # flush: stdout is a pipe to the daemon, so without it ticks would sit in a buffer.
        print(f"{now} tick {count}", flush=True)
        stop.wait(interval)
    print(f"ticker stopping after {count} ticks", flush=True)
