"""How big the state database grows under a `* * * * * *` agent, with and without pruning.

Drives the real `Store` (a real sqlite file, WAL, synchronous=FULL) through simulated seconds of
an agent that runs on every tick: per tick the writes the daemon makes (the tick's wake:
SCHEDULED -> STARTING, the run row, its pid, STARTING -> RUNNING; the exit's wake: the run's end,
RUNNING -> EXITED -> SCHEDULED, the last tick), each wake one batch, and every 30 simulated
seconds the housekeeping's `Store.prune` with the daemon's retention settings. Prints the file
sizes (database and WAL) over time and how long each pruning pass took (real time).
`.venv/bin/python bench/history_growth.py [--seconds N] [--max-runs N] [--days D]`.
Imports the standard library and mastercontrol's store only.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `mastercontrol` importable
    sys.path.insert(0, str(ROOT))

from mastercontrol.store.open import open_store  # noqa: E402
from mastercontrol.store.queries import Store  # noqa: E402

START_WALL = 1_800_000_000.0
HOUSEKEEPING = 30  # simulated seconds between pruning passes, as daemon/loop.py
REPORT_EVERY = 600  # simulated seconds between two size lines


@dataclass
class Outcome:
    sizes: list[tuple[int, int, int, int]] = field(default_factory=list)  # (t, db, wal, runs)
    prune_ms: list[float] = field(default_factory=list)
    runs: int = 0
    events: int = 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _count(db: Path) -> tuple[int, int]:
    """Rows in runs and events, read through a second connection as an operator would."""
    conn = sqlite3.connect(db)
    try:
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()
    return int(runs), int(events)


def _tick(store: Store, t: float) -> None:
    with store.batch():  # the tick's wake
        store.record_transition("agent", "SCHEDULED", "STARTING", "tick", t)
        run_id = store.begin_run("agent", t, durable=False)
        store.set_run_pid(run_id, 4242)
        store.record_transition("agent", "STARTING", "RUNNING", "up", t, pid=4242)
    with store.batch():  # the exit's wake
        store.end_run(run_id, t + 0.2, 0, None, "exit", "exit status 0")
        store.record_transition("agent", "RUNNING", "EXITED", "exited", t + 0.2, "exit status 0")
        store.record_transition("agent", "EXITED", "SCHEDULED", "wait_tick", t + 0.2)
        store.set_last_tick("agent", t)


def simulate(workdir: Path, seconds: int, prune: bool, max_runs: int, days: float) -> Outcome:
    db = workdir / ("pruned.db" if prune else "unpruned.db")
    store, _ = open_store(db, START_WALL)
    out = Outcome()
    try:
        with store.batch():
            store.record_transition("agent", None, "SCHEDULED", "wait_tick", START_WALL)
        for second in range(1, seconds + 1):
            now = START_WALL + second
            _tick(store, now)
            if prune and second % HOUSEKEEPING == 0:
                t0 = time.perf_counter()
                with store.batch():  # the housekeeping's wake
                    store.prune(now, days * 86400.0, max_runs)
                out.prune_ms.append((time.perf_counter() - t0) * 1000)
            if second % REPORT_EVERY == 0 or second == seconds:
                runs, _ = _count(db)
                wal = Path(f"{db}-wal")
                out.sizes.append((second, _size(db), _size(wal), runs))
        out.runs, out.events = _count(db)
    finally:
        store.close()
    return out


def _kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


def report(seconds: int, max_runs: int, days: float, pruned: Outcome, unpruned: Outcome) -> str:
    lines = [
        f"`* * * * * *` agent, {seconds} simulated seconds ({seconds} runs), housekeeping every "
        f"{HOUSEKEEPING} s; retention history_max_runs={max_runs}, history_days={days:g}",
        "",
        "| simulated time | db, pruned | wal, pruned | runs kept | db, never pruned | "
        "wal, never pruned | runs kept |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (t, db, wal, runs), (_, db2, wal2, runs2) in zip(pruned.sizes, unpruned.sizes, strict=True):
        lines.append(
            f"| {t // 60} min | {_kib(db)} | {_kib(wal)} | {runs} | {_kib(db2)} | "
            f"{_kib(wal2)} | {runs2} |"
        )
    ms = pruned.prune_ms
    tail = [s[1] for s in pruned.sizes if s[0] >= pruned.sizes[-1][0] - 1200]
    lines += [
        "",
        f"- At the end: pruned {pruned.runs} runs + {pruned.events} events; never pruned "
        f"{unpruned.runs} runs + {unpruned.events} events.",
        f"- Largest database file, pruned: {_kib(max(s[1] for s in pruned.sizes))} "
        f"(last 20 simulated minutes: {_kib(min(tail))} - {_kib(max(tail))}).",
        f"- One pruning pass ({len(ms)} passes): median {statistics.median(ms):.2f} ms, "
        f"max {max(ms):.2f} ms (real time, this machine, commit included).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=3600, help="simulated seconds (default 3600)")
    ap.add_argument("--max-runs", type=int, default=1000, help="history_max_runs (default 1000)")
    ap.add_argument("--days", type=float, default=30.0, help="history_days (default 30)")
    args = ap.parse_args(argv)
    if args.seconds < 1 or args.max_runs < 1 or args.days <= 0:
        ap.error("--seconds, --max-runs and --days must be positive")
    with tempfile.TemporaryDirectory(prefix="mcbench-history-") as tmp:
        workdir = Path(tmp)
        pruned = simulate(workdir, args.seconds, True, args.max_runs, args.days)
        unpruned = simulate(workdir, args.seconds, False, args.max_runs, args.days)
    print(report(args.seconds, args.max_runs, args.days, pruned, unpruned))
    return 0


if __name__ == "__main__":
    sys.exit(main())
