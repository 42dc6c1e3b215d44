"""A state database that is garbage, truncated or damaged inside never keeps the daemon from
starting: it is moved aside with one clear log line and a fresh one started; the daemon is
degraded and holds counted scripts (their counts went with the old file) until the operator
accepts, while services run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.faults.probes import integrity, ipc, run_rows
from tests.integration.harness import Daemon, wait_for


def _garbage(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


def _truncated(db: Path) -> None:
    # Cut mid-page, well inside the tables: the header still promises the missing pages.
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2 + 100)


def _damaged_pages(db: Path) -> None:
    # A valid header, but every page after the first overwritten: only quick_check finds it.
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = b"\xa5" * (len(data) - page)
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncated, _damaged_pages], ids=lambda f: f.__name__)
def test_damaged_state_db_is_moved_aside_and_counted_scripts_are_held(
    daemon: Daemon, tmp_path: Path, damage: object
) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload("batch", "count_run", type="script", max_runs=2, params={"marker": str(marker)})
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    daemon.wait_state("batch", "COMPLETED")
    daemon.wait_state("svc", "RUNNING")
    assert daemon.stop() == 0
    assert len(marker.read_text().split()) == 2
    db = daemon.db_path
    assert db.stat().st_size > 3 * 4096  # enough pages for the damage to land in tables
    original_size = db.stat().st_size
    assert callable(damage)
    damage(db)

    daemon.start()
    # The count went with the old file: the COMPLETED script must not silently run again.
    daemon.wait_state("svc", "RUNNING")
    degraded = ipc(daemon, "ping")["result"]["degraded"]
    assert degraded["held"] == ["batch"] and "moved it to" in degraded["reason"], degraded
    assert daemon.status("batch")["held"] is True
    assert len(marker.read_text().split()) == 2
    assert daemon.stop() == 0

    # The operator accepts the fresh database: the script starts its count from 0.
    daemon.ctl("up", "--detach", "--accept-lost-state")
    daemon.wait_state("batch", "COMPLETED")
    assert len(marker.read_text().split()) == 4
    assert len(run_rows(db)) == 4  # two fresh script runs, the service in each start
    assert integrity(db) == ["ok"]

    log_text = (daemon.log_dir / "mastercontrold.log").read_text()
    moved = [line for line in log_text.splitlines() if "moved it to" in line]
    assert len(moved) == 1, log_text
    assert str(db) in moved[0]
    match = re.search(r"moved it to (\S+?\.corrupt-\S+?)[ ,]", moved[0])
    assert match, moved[0]
    aside = Path(match.group(1))
    assert aside.parent == db.parent
    assert aside.exists() and aside.stat().st_size in (original_size, original_size // 2 + 100)

    # A second restart finds a healthy db: nothing more is moved aside, nothing is held.
    daemon.ctl("down")
    daemon.start()
    wait_for(lambda: daemon.status("svc")["state"] == "RUNNING", what="svc running again")
    log_text = (daemon.log_dir / "mastercontrold.log").read_text()
    assert sum("moved it to" in line for line in log_text.splitlines()) == 1
    assert ipc(daemon, "ping")["result"]["degraded"] is None
    copies = [p for p in db.parent.glob("*.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert copies == [aside]
