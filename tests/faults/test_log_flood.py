"""Twenty workloads pour hundreds of MB without a newline into the master: its memory stays
bounded and every log file rotates within its cap."""

from __future__ import annotations

import time

import psutil

from tests.faults.probes import ipc
from tests.integration.harness import Daemon, wait_for

FAULTS = "tests.faults.workloads"
WORKLOADS = 20
MEGABYTES = 20
LOG_MAX = 512 * 1024
BACKUPS = 2
MAX_LINE = 64 * 1024  # logfile.MAX_LINE: a line without newline is cut at this length
RSS_LIMIT = 150 * 1024 * 1024


def test_master_memory_and_log_files_stay_bounded_under_newline_free_floods(
    daemon: Daemon,
) -> None:
    names = [f"flood{i:02d}" for i in range(WORKLOADS)]
    for name in names:
        daemon.workload(
            name,
            "spew_no_newline",
            module=FAULTS,
            type="script",
            max_runs=1,
            log_max_bytes=LOG_MAX,
            log_backups=BACKUPS,
            params={"total_mb": MEGABYTES, "max_seconds": 30},
        )
    daemon.start()
    master = psutil.Process(daemon.pid)
    start_rss = master.memory_info().rss
    peak = start_rss
    end = time.monotonic() + 90
    remaining = set(names)
    while remaining and time.monotonic() < end:  # bounded in time; ~0.2 s per sample
        peak = max(peak, master.memory_info().rss)
        reply = ipc(daemon, "list")
        remaining -= {w["name"] for w in reply["result"]["workloads"] if w["state"] == "COMPLETED"}
        time.sleep(0.05)
    print(f"master RSS: start {start_rss >> 20} MB, peak {peak >> 20} MB")
    assert not remaining, f"still running after 90 s: {sorted(remaining)}"
    peak = max(peak, master.memory_info().rss)
    assert peak < RSS_LIMIT, f"master RSS peaked at {peak >> 20} MB (start {start_rss >> 20} MB)"

    cap = LOG_MAX + MAX_LINE + 64  # one record may overshoot: rotation happens between lines
    for name in names:
        files = sorted(daemon.log_dir.glob(f"{name}.log*"))
        assert [p.name for p in files] == [f"{name}.log", f"{name}.log.1", f"{name}.log.2"]
        assert all(p.stat().st_size <= cap for p in files), [(p, p.stat().st_size) for p in files]
        # Newline-free output still lands in the file as bounded lines, nothing is dropped.
        tail = files[0].read_bytes().splitlines()[-1]
        assert len(tail) <= MAX_LINE + 64
        assert ipc(daemon, "status", {"name": name})["result"]["log_dropped_bytes"] == 0
    wait_for(lambda: daemon.ctl("list").returncode == 0, what="daemon still answers")
