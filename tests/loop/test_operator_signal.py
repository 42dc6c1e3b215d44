"""The operator's `signal` and `stop` of a finished script, as scripted histories through the
Supervisor with a fake spawner: what is sent, and that no state or record changes."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from mastercontrol.errors import IPCError
from mastercontrol.ipc.protocol import ErrorCode
from tests.loop.fakes import make_rig, workload


def event_count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def test_signal_goes_to_the_process_group_once_and_changes_nothing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"svc": workload("svc", start_seconds=1)})
    rig.advance(1)
    pid = rig.sup.workloads["svc"].pid
    assert pid is not None
    before, events = list(rig.world.signals), event_count(rig.db)
    reply = rig.sup.signal("svc", signal.SIGHUP)
    assert rig.world.signals == [*before, (pid, signal.SIGHUP)]
    assert reply == {
        "name": "svc",
        "state": "RUNNING",
        "pid": pid,
        "signal": "SIGHUP",
        "message": "SIGHUP sent",
    }
    assert rig.state("svc") == "RUNNING" and event_count(rig.db) == events


def test_signal_to_a_workload_without_a_process_is_not_running(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"svc": workload("svc")})
    rig.sup.stop("svc")
    rig.life.reap_all()
    sent = list(rig.world.signals)
    with pytest.raises(IPCError) as exc:
        rig.sup.signal("svc", signal.SIGHUP)
    assert exc.value.code == ErrorCode.NOT_RUNNING
    assert rig.world.signals == sent and rig.state("svc") == "STOPPED"


def test_stopping_a_completed_script_records_nothing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"batch": workload("batch", kind="script", max_runs=1)})
    rig.exit("batch", 0)
    assert rig.state("batch") == "COMPLETED"
    events = event_count(rig.db)
    assert rig.sup.stop("batch")["message"] == "already completed"
    assert rig.state("batch") == "COMPLETED" and event_count(rig.db) == events
    assert "batch" not in rig.store.operator_stopped_names()
