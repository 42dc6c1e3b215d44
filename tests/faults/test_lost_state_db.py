"""The run count is sacred: a state database that was deleted, replaced or vanished under a
running daemon never makes a counted script run again silently. Between starts the daemon is
degraded and holds it until the operator decides; while running it writes the open database
back, so the count and an operator stop survive a restart."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from tests.integration.harness import Daemon, wait_for
from tests.notify_listener import NotifyListener


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _daemon_view(daemon: Daemon) -> dict[str, Any]:
    out = daemon.ctl("list", "--json")
    data: dict[str, Any] = json.loads(out.stdout)["daemon"]
    return data


def _log(daemon: Daemon) -> str:
    return (daemon.log_dir / "mastercontrold.log").read_text()


def _runs_started(db: Path, name: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT runs_started FROM workloads WHERE name = ?", (name,)).fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else 0


def _completed_batch(daemon: Daemon, marker: Path) -> None:
    daemon.workload("batch", "count_run", type="script", max_runs=2, params={"marker": str(marker)})
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    daemon.wait_state("batch", "COMPLETED")
    daemon.wait_state("svc", "RUNNING")
    assert daemon.stop() == 0
    assert len(_lines(marker)) == 2


def _remove_db(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def test_deleted_db_is_not_a_first_start_counted_script_is_held_until_reset(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    _completed_batch(daemon, marker)
    _remove_db(daemon.db_path)

    daemon.start()
    daemon.wait_state("svc", "RUNNING")  # services keep running normally
    view = _daemon_view(daemon)
    assert view["degraded"] is not None, view
    assert "deleted" in view["degraded"]["reason"]
    assert view["degraded"]["held"] == ["batch"]
    assert "DEGRADED" in view["status"]  # what sd_notify STATUS= carries
    batch = daemon.status("batch")
    assert batch["held"] is True and batch["state"] == "STOPPED"
    assert batch["degraded"]["held"] == ["batch"]
    table = daemon.ctl("list")
    assert table.returncode == 0 and "DEGRADED" in table.stdout and "held" in table.stdout
    assert "DEGRADED" in daemon.ctl("status", "svc").stdout
    refused = daemon.ctl("start", "batch", check=False)
    assert refused.returncode == 1 and "reset batch" in refused.stderr
    assert len(_lines(marker)) == 2  # not re-run
    assert sum("DEGRADED" in line for line in _log(daemon).splitlines()) == 1

    # Still degraded after a restart: only the operator ends it.
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    assert _daemon_view(daemon)["degraded"]["held"] == ["batch"]
    assert len(_lines(marker)) == 2

    out = daemon.ctl("reset", "batch")
    assert "run count reset" in out.stdout
    daemon.wait_state("batch", "COMPLETED")
    assert len(_lines(marker)) == 4  # the operator chose: a fresh count of 2
    assert _daemon_view(daemon)["degraded"] is None  # nothing held is left
    assert daemon.stop() == 0
    daemon.start()
    daemon.wait_state("batch", "COMPLETED")
    assert _daemon_view(daemon)["degraded"] is None
    assert len(_lines(marker)) == 4


def test_a_degraded_daemon_tells_systemd_in_its_notify_status(
    daemon: Daemon, tmp_path: Path
) -> None:
    _completed_batch(daemon, tmp_path / "runs.txt")
    _remove_db(daemon.db_path)
    with NotifyListener() as listener:
        daemon.start(env=listener.environ())
        ready = listener.wait_for("READY=1")
        # `systemctl status mastercontrol` shows this line: the operator sees it there too.
        assert ready["STATUS"].startswith("DEGRADED (state database "), ready
        assert "deleted" in ready["STATUS"] or "lost" in ready["STATUS"], ready
        daemon.ctl("reset", "batch")
        daemon.wait_state("batch", "COMPLETED")
        seen = len(listener.messages)
        daemon.ctl("reload")  # a reload re-sends READY with the current STATUS
        wait_for(
            lambda: (
                listener.collect(0.5) is not None
                and any("READY=1" in m for m in listener.messages[seen:])
            ),
            what="READY=1 after the reload",
        )
        after = [m for m in listener.messages[seen:] if "READY=1" in m]
        assert "DEGRADED" not in after[-1], after  # nothing is held any more
        assert daemon.stop() == 0


def test_replaced_db_is_degraded_and_accept_lost_state_releases_everything(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    _completed_batch(daemon, marker)
    # Another daemon's database (same workloads, but a fresh history) put in its place.
    other = Daemon(tmp_path / "other")
    other.workload("svc", "sleep_forever")
    try:
        other.start()
        other.wait_state("svc", "RUNNING")
        assert other.stop() == 0
    finally:
        other.cleanup()
    _remove_db(daemon.db_path)
    shutil.copy(other.db_path, daemon.db_path)

    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    view = _daemon_view(daemon)
    assert view["degraded"] is not None and "replaced" in view["degraded"]["reason"], view
    assert view["degraded"]["held"] == ["batch"]
    assert len(_lines(marker)) == 2
    assert daemon.stop() == 0

    daemon.start(args=("--accept-lost-state",))
    daemon.wait_state("batch", "COMPLETED")
    assert _daemon_view(daemon)["degraded"] is None
    assert len(_lines(marker)) == 4  # counted from what the accepted database says: 0
    assert "lost state accepted" in _log(daemon)


def test_state_db_deleted_while_running_keeps_count_and_operator_stop(
    daemon: Daemon, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    daemon.workload(
        "batch",
        "count_run",
        type="script",
        max_runs=40,
        params={"marker": str(marker), "seconds": 0.2},
    )
    daemon.workload("svc", "sleep_forever")
    daemon.start()
    daemon.wait_state("svc", "RUNNING")
    daemon.ctl("stop", "svc")
    wait_for(lambda: len(_lines(marker)) >= 5, what="a few batch runs")

    daemon.db_path.unlink()  # only the main file, as a careless `rm state.db` does
    wait_for(
        lambda: "deleted while the daemon was running" in _log(daemon),
        what="the daemon to notice the deleted state database",
    )
    assert daemon.db_path.exists()
    wait_for(lambda: len(_lines(marker)) >= 12, what="more batch runs after the restore")
    assert daemon.stop() == 0
    done = len(_lines(marker))
    assert done < 40
    assert _runs_started(daemon.db_path, "batch") == done

    daemon.start()
    assert _daemon_view(daemon)["degraded"] is None  # nothing was lost
    svc = daemon.status("svc")
    assert svc["state"] == "STOPPED" and svc["operator_stopped"] is True
    assert daemon.status("batch")["runs"] >= done
    daemon.wait_state("batch", "COMPLETED", timeout=60)
    assert len(_lines(marker)) == 40  # neither lost nor repeated
