"""Scripted histories through the Supervisor with a fake spawner and clock: every run-mode rule
without a real process or a second of real waiting."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from mastercontrol.config.model import HealthCheck
from mastercontrol.engine.exitstatus import ExitReason
from mastercontrol.engine.timers import TimerKey, TimerKind
from mastercontrol.store.open import open_store
from tests.loop.fakes import Rig, make_rig, workload


def event_triggers(rig: Rig, name: str) -> list[str]:
    conn = sqlite3.connect(rig.db)
    try:
        rows = conn.execute("SELECT trigger FROM events WHERE workload = ? ORDER BY id", (name,))
        return [r[0] for r in rows]
    finally:
        conn.close()


def test_service_becomes_running_after_start_seconds_and_restarts_after_restart_delay(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"svc": workload("svc", start_seconds=2, restart_delay=3, restart_delay_max=60)})
    assert rig.state("svc") == "STARTING"
    rig.advance(2)
    assert rig.state("svc") == "RUNNING"
    rig.advance(100)
    rig.exit("svc", 1)  # a crash after a long, healthy run: restart_delay, not doubled
    assert rig.state("svc") == "BACKOFF"
    assert rig.timers.deadline(TimerKey(TimerKind.RETRY, "svc")) == rig.clock.monotonic() + 3
    rig.advance(2.9)
    assert rig.world.runs("svc") == 1
    rig.advance(0.1)
    assert rig.state("svc") == "STARTING"
    assert rig.world.runs("svc") == 2
    assert rig.sup.workloads["svc"].restarts == 1
    assert event_triggers(rig, "svc")[-3:] == ["exited", "wait_retry", "retry_due"]


def test_restart_delay_zero_restarts_a_run_that_stayed_up_at_once(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"svc": workload("svc", start_seconds=0, restart_delay=0)})
    assert rig.state("svc") == "RUNNING"
    rig.exit("svc", -9)
    assert rig.state("svc") == "RUNNING" and rig.world.runs("svc") == 2
    assert "wait_retry" not in event_triggers(rig, "svc")


def test_a_retry_out_of_fatal_is_one_try_and_a_try_that_stays_up_resets(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    cfg = workload("svc", restart_delay=1, restart_delay_max=1, max_retries=1, fatal_retry_delay=60)
    rig.life.boot({"svc": cfg})
    rig.exit("svc", 1)
    rig.advance(1)
    rig.exit("svc", 1)
    assert rig.state("svc") == "FATAL" and rig.world.runs("svc") == 2
    for runs in (3, 4):
        rig.advance(60)
        assert rig.state("svc") == "STARTING" and rig.world.runs("svc") == runs
        rig.exit("svc", 1)  # the slow retry fails quickly too: FATAL again, no burst
        assert rig.state("svc") == "FATAL"
    rig.advance(60)
    rig.advance(1)  # this try stays up for start_seconds
    assert rig.state("svc") == "RUNNING"
    rig.exit("svc", 1)
    rig.advance(1)
    rig.exit("svc", 1)  # quick failure 1 of a new count: BACKOFF, not FATAL
    assert rig.state("svc") == "BACKOFF"
    rig.advance(1)
    rig.exit("svc", 1)
    assert rig.state("svc") == "FATAL"


def test_a_health_checked_run_counts_as_up_only_once_a_check_passed(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    check = HealthCheck(command=("true",), interval=1, failures=1)
    cfg = workload("svc", health_check=check, restart_delay=1, max_retries=1, fatal_retry_delay=0)
    rig.life.boot({"svc": cfg})

    def unhealthy() -> None:
        rig.sup.stop_for_limit("svc", ExitReason.UNHEALTHY)  # SIGTERM ends the fake child
        rig.life.reap_all()

    rig.advance(1)  # RUNNING after start_seconds, but no check has passed
    assert rig.state("svc") == "RUNNING"
    unhealthy()
    assert rig.state("svc") == "BACKOFF"  # a quick failure: never healthy
    rig.advance(1)
    rig.advance(1)
    assert rig.state("svc") == "RUNNING"
    unhealthy()
    assert rig.state("svc") == "FATAL"  # the same FATAL rule as quick exits
    rig.sup.start("svc")
    rig.advance(1)
    rig.sup.note_healthy("svc", rig.world.live("svc")[0].pid)
    unhealthy()  # it was healthy: restart_delay only, the count starts over
    assert rig.state("svc") == "BACKOFF" and rig.sup.workloads["svc"].failures == 0


def test_quick_failures_back_off_exponentially_then_go_fatal(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    cfg = workload("svc", restart_delay=1, restart_delay_max=4, max_retries=3, fatal_retry_delay=60)
    rig.life.boot({"svc": cfg})
    delays = []
    for _ in range(3):
        rig.exit("svc", 1)  # dies before start_seconds: a quick failure
        assert rig.state("svc") == "BACKOFF"
        deadline = rig.timers.deadline(TimerKey(TimerKind.RETRY, "svc"))
        assert deadline is not None
        delays.append(deadline - rig.clock.monotonic())
        rig.advance(delays[-1])
        assert rig.state("svc") == "STARTING"
    assert delays == [1, 2, 4]
    rig.exit("svc", 1)
    assert rig.state("svc") == "FATAL"
    assert rig.world.runs("svc") == 4
    rig.advance(59)
    assert rig.world.runs("svc") == 4  # the slow retry is not due yet
    rig.advance(1)
    assert rig.state("svc") == "STARTING" and rig.world.runs("svc") == 5


def test_restart_delay_zero_restarts_immediately(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"svc": workload("svc", restart_delay=0, max_retries=10)})
    rig.exit("svc", 1)
    rig.fire()
    assert rig.state("svc") == "STARTING" and rig.world.runs("svc") == 2


def test_script_runs_max_runs_then_completes_and_a_new_daemon_does_not_rerun_it(
    tmp_path: Path,
) -> None:
    rig = make_rig(tmp_path)
    cfg = workload("batch", "script", max_runs=3)
    rig.life.boot({"batch": cfg})
    for _ in range(3):
        assert rig.state("batch") == "RUNNING"
        rig.exit("batch", 0)
    assert rig.state("batch") == "COMPLETED"
    assert rig.world.runs("batch") == 3
    rig.store.close()

    again = make_rig(tmp_path)  # same db file: a daemon restart
    again.life.boot({"batch": cfg})
    assert again.state("batch") == "COMPLETED"
    assert again.world.runs("batch") == 0
    again.sup.start("batch")  # an operator start of a COMPLETED script: a new batch
    assert again.state("batch") == "RUNNING" and again.sup.workloads["batch"].runs == 1


def test_run_interrupted_by_daemon_death_counts_and_is_not_repeated(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    cfg = workload("batch", "script", max_runs=2)
    rig.life.boot({"batch": cfg})
    rig.exit("batch", 0)
    assert rig.world.runs("batch") == 2  # the second run is going when the daemon "dies"
    rig.store.close()

    again = make_rig(tmp_path)
    again.life.boot({"batch": cfg})
    assert again.state("batch") == "COMPLETED"
    assert again.world.runs("batch") == 0
    # The dead daemon's open run was closed, and its process group got a SIGKILL.
    assert (rig.world.children[1].pid, signal.SIGKILL) in again.world.signals


def test_agent_runs_on_each_tick_and_a_tick_during_a_run_is_skipped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"agent": workload("agent", "agent", schedule="* * * * *")})
    assert rig.state("agent") == "SCHEDULED"
    rig.advance(60)
    assert rig.state("agent") == "RUNNING" and rig.world.runs("agent") == 1
    rig.advance(60)  # still running at the next tick
    assert rig.world.runs("agent") == 1
    assert rig.sup.workloads["agent"].skipped_ticks == 1
    assert "tick_skipped" in event_triggers(rig, "agent")
    rig.exit("agent", 0)
    assert rig.state("agent") == "SCHEDULED"
    rig.advance(60)
    assert rig.world.runs("agent") == 2


def test_wall_clock_jump_forward_gives_one_run_not_a_burst(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.life.boot({"agent": workload("agent", "agent", schedule="* * * * *")})
    rig.clock.jump_wall(3 * 3600)  # NTP steps the clock three hours on
    rig.advance(60)
    assert rig.world.runs("agent") == 1
    rig.exit("agent", 0)
    rig.advance(1)
    assert rig.world.runs("agent") == 1


def test_missed_ticks_follow_catch_up_after_downtime(tmp_path: Path) -> None:
    for policy, expected in (("skip", 0), ("once", 1)):
        rig = make_rig(tmp_path, f"{policy}.db")
        cfg = workload("agent", "agent", schedule="* * * * *", catch_up=policy)
        rig.life.boot({"agent": cfg})
        rig.advance(60)
        rig.exit("agent", 0)
        rig.store.close()
        later = make_rig(tmp_path, f"{policy}.db")
        later.clock.advance(rig.clock.wall() - later.clock.wall() + 3600)  # down for an hour
        later.life.boot({"agent": cfg})
        assert later.world.runs("agent") == expected, policy


def test_timeout_sends_stop_signal_then_sigkill_and_records_timeout(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.exit_on = {signal.SIGKILL: -signal.SIGKILL}  # it ignores SIGTERM
    rig.life.boot({"job": workload("job", "script", max_runs=1, timeout=5, stop_timeout=2)})
    pid = rig.world.children[0].pid
    rig.advance(5)
    assert rig.state("job") == "STOPPING"
    assert (pid, signal.SIGTERM) in rig.world.signals
    rig.advance(2)
    assert (pid, signal.SIGKILL) in rig.world.signals
    rig.life.reap_all()
    assert rig.state("job") == "COMPLETED"
    last = rig.sup.workloads["job"].last_exit
    assert last is not None and last.reason == "timeout"


def test_operator_stop_is_remembered_and_start_clears_it(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    cfg = workload("svc")
    rig.life.boot({"svc": cfg})
    rig.sup.stop("svc")
    rig.life.reap_all()
    assert rig.state("svc") == "STOPPED"
    rig.store.close()
    again = make_rig(tmp_path)
    again.life.boot({"svc": cfg})
    assert again.state("svc") == "STOPPED" and again.world.runs("svc") == 0
    again.sup.start("svc")
    assert again.state("svc") == "STARTING"
    assert "svc" not in again.store.operator_stopped_names()


def test_reload_restarts_changed_keeps_unchanged_and_removes_dropped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    keep, change, drop = workload("keep"), workload("change"), workload("drop")
    rig.life.boot({"keep": keep, "change": change, "drop": drop})
    kept_child = rig.world.live("keep")[0]
    plan = rig.sup.apply(
        {"keep": keep, "change": workload("change", tags=("new",)), "add": workload("add")}
    )
    assert (plan.add, plan.remove, plan.change, plan.unchanged) == (
        ("add",),
        ("drop",),
        ("change",),
        ("keep",),
    )
    rig.life.reap_all()
    assert rig.world.live("keep") == [kept_child]
    assert "drop" not in rig.sup.workloads and not rig.world.live("drop")
    assert rig.sup.workloads["change"].cfg.tags == ("new",)
    assert rig.world.runs("change") == 2 and len(rig.world.live("change")) == 1
    assert rig.state("add") == "STARTING"


def test_spawn_failure_backs_off_instead_of_crashing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.fail_spawns = 1
    rig.life.boot({"svc": workload("svc")})
    assert rig.state("svc") == "BACKOFF"
    rig.advance(1)
    assert rig.state("svc") == "STARTING"
    store, _ = open_store(rig.db, 0)
    reasons = [r.reason for r in store.recent_runs("svc")]
    store.close()
    assert reasons == [None, "spawn_failed"]


def test_a_stop_during_a_restart_leaves_the_workload_stopped(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.exit_on = {signal.SIGKILL: -signal.SIGKILL}  # it takes its time on SIGTERM
    rig.life.boot({"svc": workload("svc", stop_timeout=5)})
    rig.sup.restart("svc")
    assert rig.state("svc") == "STOPPING"
    rig.sup.stop("svc")  # the operator changes their mind before the old run is gone
    rig.advance(5)  # SIGKILL
    rig.life.reap_all()
    assert rig.state("svc") == "STOPPED"
    assert rig.world.runs("svc") == 1


def test_a_stop_during_a_reload_removal_still_removes_the_workload(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.world.exit_on = {signal.SIGKILL: -signal.SIGKILL}
    rig.life.boot({"svc": workload("svc", stop_timeout=5)})
    rig.sup.apply({})
    rig.sup.stop("svc")
    rig.advance(5)
    rig.life.reap_all()
    assert "svc" not in rig.sup.workloads


def test_a_retry_out_of_a_fatal_with_no_count_behind_it_is_one_try_too(tmp_path: Path) -> None:
    # FATAL reached some other way than a burst in this daemon (e.g. kept across a restart):
    # its slow retry is still one try.
    rig = make_rig(tmp_path)
    cfg = workload("svc", restart_delay=1, max_retries=3, fatal_retry_delay=60)
    rig.life.boot({"svc": cfg})
    for _ in range(3):
        rig.exit("svc", 1)
        rig.fire()
        rig.advance(8)
    rig.exit("svc", 1)
    assert rig.state("svc") == "FATAL"
    rig.sup.workloads["svc"].failures = 0
    rig.advance(60)
    rig.exit("svc", 1)
    assert rig.state("svc") == "FATAL"
