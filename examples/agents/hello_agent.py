"""Example agent: print a greeting with a timestamp and exit 0 (run on a cron schedule)."""

from __future__ import annotations

from datetime import datetime


def run(greeting: str = "Hello from Master Control") -> None:
    print(f"{datetime.now().astimezone().isoformat(timespec='seconds')} {greeting}", flush=True)
