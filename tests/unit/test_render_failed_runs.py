"""ctl/render.py: failed runs in `list` and `status` (pure formatting)."""

from __future__ import annotations

from typing import Any

from mastercontrol.ctl.render import info_of, status_block, workload_table

NOW = 1_800_000_000.0


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "job",
        "type": "script",
        "run_mode": "n_times",
        "state": "COMPLETED",
        "pid": None,
        "runs": 1,
        "max_runs": 1,
        "restarts": 0,
        "failed_runs": 0,
        "last_failure_reason": None,
        "last_exit": None,
    }
    base.update(fields)
    return base


def test_a_completed_script_with_a_failed_run_says_so_and_why() -> None:
    w = row(failed_runs=1, last_failure_reason="timeout")
    assert info_of(w, NOW) == "1/1 runs done (1 failed: timeout)"
    assert workload_table([w], NOW).splitlines()[1].endswith("1/1 runs done (1 failed: timeout)")


def test_a_clean_batch_shows_no_failure_note() -> None:
    assert info_of(row(runs=2, max_runs=2), NOW) == "2/2 runs done"


def test_an_agent_waiting_for_its_tick_shows_its_failed_runs() -> None:
    w = row(type="agent", run_mode="schedule", state="SCHEDULED", next_run_at=NOW + 60)
    w.update(failed_runs=3, last_failure_reason="memory")
    assert info_of(w, NOW).endswith("(in 1m00s) (3 failed: memory)")


def test_a_service_shows_its_failures_through_its_state_not_a_note() -> None:
    w = row(type="service", run_mode="forever", state="RUNNING", uptime_seconds=5)
    w.update(failed_runs=4, last_failure_reason="signal")
    assert info_of(w, NOW) == "uptime 5s"


def test_status_shows_the_failed_runs_and_the_last_exit_reason() -> None:
    last = {"text": "timed out (SIGKILL)", "reason": "timeout", "at": NOW - 5}
    text = status_block(row(failed_runs=1, last_failure_reason="timeout", last_exit=last), NOW)
    assert "last exit:" in text and "timed out (SIGKILL) (reason timeout)" in text
    assert "failed runs:" in text and "1 failed: timeout" in text
