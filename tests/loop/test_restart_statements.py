"""How many SQL statements one restart of a service costs, and that each still records all.

A restart (exit, then the next run at once: restart_delay 0, start_seconds 0) happens inside
the loop's per-wake batch; its statements are the master's CPU per start that issue 12
measures. The count is a regression guard (not a timing): every run row and every state event
an operator reads must still be there, in the same order, with the pid on the run row.
"""

from __future__ import annotations

from pathlib import Path

from mastercontrol.store.queries import Store
from tests.loop.fakes import Rig, make_rig, workload

# end_run; EXITED, START, UP (one UPDATE + one event INSERT each); the run row with its pid
# and the run count (INSERT + UPDATE).
STATEMENTS_PER_RESTART = 9


def _traced(store: Store) -> list[str]:
    seen: list[str] = []
    store.connection.set_trace_callback(seen.append)
    return seen


def _restart_once(rig: Rig) -> list[str]:
    (child,) = rig.world.live("svc")
    seen = _traced(rig.store)
    try:
        with rig.store.batch():
            child.code = 0
            rig.life.reap_all()
    finally:
        rig.store.connection.set_trace_callback(None)
    return [s for s in seen if s not in ("BEGIN IMMEDIATE", "COMMIT")]


def test_a_service_restart_costs_nine_statements_and_records_everything(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"svc": workload("svc", restart_delay=0, start_seconds=0)})
    assert rig.state("svc") == "RUNNING"
    _restart_once(rig)  # the first restart creates nothing the later ones need
    before = rig.store.recent_runs("svc", limit=10)
    statements = _restart_once(rig)
    assert len(statements) == STATEMENTS_PER_RESTART, statements

    runs = rig.store.recent_runs("svc", limit=10)
    assert len(runs) == len(before) + 1
    new, ended = runs[0], runs[1]
    assert ended.id == before[0].id and ended.ended_at is not None and ended.exit_code == 0
    assert ended.reason == "exit"
    assert new.ended_at is None and new.pid == rig.world.live("svc")[0].pid
    row = rig.store.workload_row("svc")
    assert row is not None and row.state == "RUNNING" and row.pid == new.pid
    assert row.runs_total == 3 and row.runs_started == 3
    events = rig.store.connection.execute(
        "SELECT old_state, new_state FROM events WHERE workload = 'svc' ORDER BY id DESC LIMIT 3"
    ).fetchall()
    assert events[::-1] == [("RUNNING", "EXITED"), ("EXITED", "STARTING"), ("STARTING", "RUNNING")]
